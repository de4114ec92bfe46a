"""Redis restarted, stalled or unreachable while a worker runs a job stream (issue 5 item 2).

The worker process must stay up, back off, reconnect, re-register every slot, and finish the
bookkeeping of jobs that completed during the outage exactly once. Restarts use a private
``redis-server``; stalls and cuts go through :class:`tests.faults.proxy.Proxy` in front of the
shared test DB. Jobs record themselves on the shared test DB directly, never through the fault.
"""
from __future__ import annotations

import json
import signal
import time

import pytest
import redis

from tests.conftest import REDIS_DB, REDIS_PORT, REDIS_URL
from tests.faults.harness import (
    FULL,
    PRIVATE_PORT,
    Stream,
    assert_clean_exit,
    job_id_of,
    make_stream,
    push_stream,
    scaled,
    settle,
    wait_until,
)
from tests.faults.proxy import Proxy

FIBERS = 20
WORDS = ["QUEUE=faults", f"FIBERS={FIBERS}", "INTERVAL=0.1", "RESQUE_HEARTBEAT_INTERVAL=1"]


def progress(control: redis.Redis) -> int:
    return control.scard("test:faults:started")


def all_settled(control: redis.Redis, store: redis.Redis, stream: Stream):
    """Every job of ``stream`` is done or has its failure entry."""
    def check() -> bool:
        if control.scard("test:faults:done") + store.llen("resque:failed") < len(stream.ids):
            return False  # cheap test first; the exact one reads every id
        ended = control.smembers("test:faults:done") | {
            job_id_of(json.loads(e)["payload"]) for e in store.lrange("resque:failed", 0, -1)}
        return set(stream.ids) <= ended
    return check


def quit_worker(w) -> None:
    w.signal(signal.SIGQUIT)
    assert w.wait(30) == 0, w.output[-3000:]


def assert_exact_stats(store: redis.Redis, ledger, stream: Stream) -> None:
    """No job handled twice and every completion recorded exactly once, outage or not."""
    assert not ledger.rerun and ledger.failed == stream.deliberate
    assert int(store.get("resque:stat:processed")) == ledger.completions + len(stream.deliberate)
    assert int(store.get("resque:stat:failed")) == len(stream.deliberate) == store.llen("resque:failed")


def registered_again(store: redis.Redis, ids) -> bool:
    """Every slot back in ``workers`` with its ``started`` key and a heartbeat (resque-web's view)."""
    beats = store.hgetall("resque:workers:heartbeat")
    return set(ids) <= store.smembers("resque:workers") and all(
        store.exists(f"resque:worker:{wid}:started") and wid in beats for wid in ids)


def restart_mid_stream(r, workers, private_redis, name: str, stream: Stream, args=()):
    """Run ``stream`` on a private Redis, SIGKILL that Redis a third of the way in and start it
    again on the same port (and directory). Returns (worker, its slot ids, the new client)."""
    store = private_redis(name, args).client()
    push_stream(store, stream)
    w = workers(WORDS, {"REDIS_URL": f"redis://127.0.0.1:{PRIVATE_PORT}/0", "TEST_CONTROL_REDIS_URL": REDIS_URL})
    ids = w.wait_registered(store, FIBERS)
    wait_until(lambda: progress(r) >= len(stream.ids) // 3, 60, "a third of the stream", w)
    for server in private_redis.started:
        server.kill()
    time.sleep(scaled(0.5, 5.0))
    return w, ids, private_redis(name, args).client()


@pytest.mark.timeout(300 if FULL else 90)
def test_redis_restarted_empty_mid_stream(r, workers, report, private_redis):
    """``--save ""``: the restart is empty, so jobs still queued are gone with Redis. Only jobs
    a worker took are ours to account for; the worker must re-register and take new work."""
    first = make_stream(scaled(600, 10000), "e", seed=1, fail_every=0)  # failure entries would vanish too
    w, ids, store = restart_mid_stream(r, workers, private_redis, "empty", first)
    wait_until(lambda: registered_again(store, ids), 15, "every slot to re-register", w)
    second = make_stream(scaled(300, 3000), "f", seed=2)
    push_stream(store, second)
    wait_until(all_settled(r, store, second), 120, "the stream after the restart", w)
    quit_worker(w)
    assert_clean_exit(store)

    ledger = settle(r, store, [first, second], dropped_if_never_started=True)
    report(ledger.line("Redis restarted empty", f"{ledger.completions} completions"))
    ledger.assert_sound()
    assert not ledger.rerun and ledger.failed == second.deliberate
    assert second.ids and set(second.ids) <= ledger.ok | ledger.failed


@pytest.mark.timeout(300 if FULL else 90)
def test_redis_restarted_with_its_data_mid_stream(r, workers, report, private_redis):
    """AOF with fsync always, SIGKILL, restart on the same port and dir: nothing may be lost
    and the stats must count every job exactly once."""
    stream = make_stream(scaled(600, 10000), "a", seed=3)
    w, ids, store = restart_mid_stream(r, workers, private_redis, "aof", stream,
                                       ["--appendonly", "yes", "--appendfsync", "always"])
    wait_until(all_settled(r, store, stream), 180, "the whole stream", w)
    assert registered_again(store, ids)
    quit_worker(w)
    assert_clean_exit(store)

    ledger = settle(r, store, [stream])
    report(ledger.line("Redis restarted with its data (AOF)", f"{ledger.completions} completions"))
    ledger.assert_sound()
    assert_exact_stats(store, ledger, stream)


def through_proxy(r, workers, report, name: str, begin: str, end: str, seconds: float) -> None:
    """Run a stream with the worker's Redis traffic through a proxy; a third of the way in,
    call ``proxy.<begin>()`` (pause or cut), and ``proxy.<end>()`` ``seconds`` later."""
    proxy = Proxy(REDIS_PORT)
    try:
        stream = make_stream(scaled(600, 10000), name[:1], seed=4)
        push_stream(r, stream)
        url = f"redis://127.0.0.1:{proxy.port}/{REDIS_DB}"
        w = workers(WORDS, {"REDIS_URL": url, "TEST_CONTROL_REDIS_URL": REDIS_URL})
        w.wait_registered(r, FIBERS)
        wait_until(lambda: progress(r) >= len(stream.ids) // 3, 60, "a third of the stream", w)
        getattr(proxy, begin)()
        during = progress(r)
        time.sleep(seconds)
        assert w.proc.poll() is None, "the worker died during the outage"
        stuck = progress(r) - during  # jobs start only after a round trip to Redis
        getattr(proxy, end)()
        wait_until(all_settled(r, r, stream), 180, "the whole stream", w)
        quit_worker(w)
    finally:
        proxy.close()
    assert_clean_exit(r)
    ledger = settle(r, r, [stream])
    report(ledger.line(f"{name} {seconds:g}s", f"{stuck} jobs started during it"))
    ledger.assert_sound()
    assert_exact_stats(r, ledger, stream)
    assert stuck <= FIBERS  # nothing new was taken while Redis could not be reached


@pytest.mark.timeout(300 if FULL else 90)
def test_redis_traffic_stalled_mid_stream(r, workers, report):
    through_proxy(r, workers, report, "Redis traffic stalled", "pause", "resume", scaled(1.5, 8.0))


@pytest.mark.timeout(300 if FULL else 90)
def test_redis_unreachable_mid_stream(r, workers, report):
    through_proxy(r, workers, report, "Redis unreachable", "cut", "restore", scaled(1.5, 30.0))
