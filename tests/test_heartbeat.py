"""Heartbeats (WIRE §3.6, §3.8) and pruning as real worker processes do it, in both directions:
our worker pruning others at start-up, and a Ruby-rules pruner leaving our live worker alone."""
from __future__ import annotations

import os
import re
import signal
import socket
import time

import gevent
import pytest
from gevent import monkey

from resque_compat.runtime.heartbeat import HeartbeatThread, beat, store_factory
from resque_compat.runtime.pruning import prune_dead_workers
from resque_compat.store.store import Store, connect
from resque_compat.wire.codec import parse_heartbeat
from resque_compat.wire.keys import Keys
from resque_compat.wire.queues import QueueList
from tests.conftest import REDIS_URL
from tests.test_pruning import (
    GONE,
    LOCK,
    dead_pid,
    failures,
    iso_ago,
    job_record,
    ps_command,
    register,
    spawn_titled,
    wait_for,
    worker_keys,
)

HOST = socket.gethostname()
HB = "resque:workers:heartbeat"
#: ``Time.at(t).iso8601``: whole seconds and a numeric offset, never ``Z`` (fixture 02).
ISO_OFFSET = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")
#: ``Time#to_s`` (``worker:<id>:started``).
TIME_TO_S = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}$")
TITLE = "resque-3.0.0:"

_os_thread_ident = monkey.get_original("_thread", "get_ident")
_os_native_id = monkey.get_original("_thread", "get_native_id")


def ids_for(n=3, queues="file_serve", pid=4242):
    return [f"{HOST}:{pid}:{queues}:{i}" for i in range(n)]


def wait_greenlet(predicate, timeout=5.0, what="condition"):
    """Poll a condition another OS thread changes, yielding to the hub between looks."""
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        gevent.sleep(0.005)


def close_to_redis_time(r, value, slack=2.0):
    when = parse_heartbeat(value)
    assert when is not None, value
    assert abs(r.time()[0] - when) <= slack, (value, r.time())


def quit_and_check_unregistered(r, w):
    """SIGQUIT once the title shows the work loop (signal handlers are installed by then), then
    check Ruby's unregister left no trace of any of the process's ids."""
    wait_for(lambda: ps_command(w.pid).startswith(TITLE), 10, "the worker's resque title")
    w.signal(signal.SIGQUIT)
    assert w.wait() == 0, w.output
    marker = f":{w.pid}:"
    assert [k for k in r.keys("*") if marker in k] == []
    assert [m for m in r.smembers("resque:workers") if marker in m] == []
    assert [f for f in r.hkeys(HB) if marker in f] == []


@pytest.fixture
def store(r):
    s = Store(connect(REDIS_URL), Keys("resque"))
    yield s
    s.redis.close()


class TracingFactory:
    """``store_factory`` that records which OS thread built the heartbeat's store."""

    def __init__(self, url=REDIS_URL):
        self.make = store_factory(url, "resque")
        self.idents = []
        self.native_ids = []

    def __call__(self):
        self.idents.append(_os_thread_ident())
        self.native_ids.append(_os_native_id())
        return self.make()


# -- beat() ---------------------------------------------------------------------------------------

class ShiftedTimeStore(Store):
    """The real store whose Redis TIME reads 400 days ahead: proves beats come from TIME."""

    SHIFT = 400 * 86400

    def server_time(self):
        return super().server_time() + self.SHIFT


def test_beat_writes_every_slot_from_redis_time(r):
    store = ShiftedTimeStore(connect(REDIS_URL), Keys("resque"))
    ids = ids_for()
    beat(store, ids, None)
    values = r.hgetall(HB)
    assert sorted(values) == ids
    for value in values.values():
        assert ISO_OFFSET.match(value), value
        assert abs(parse_heartbeat(value) - (r.time()[0] + ShiftedTimeStore.SHIFT)) <= 2
    assert r.smembers("resque:workers") == set()  # no started callback: no registration
    store.redis.close()


def test_beat_reregisters_only_missing_ids(r, store):
    ids = ids_for()
    register(r, ids[0])
    before = r.get(f"resque:worker:{ids[0]}:started")
    beat(store, ids, lambda: "2030-01-01 00:00:00 +0000")
    assert r.smembers("resque:workers") == set(ids)
    assert r.get(f"resque:worker:{ids[0]}:started") == before
    for wid in ids[1:]:
        assert r.get(f"resque:worker:{wid}:started") == "2030-01-01 00:00:00 +0000"


# -- HeartbeatThread ------------------------------------------------------------------------------

def test_thread_runs_in_its_own_os_thread_and_stops_promptly(r):
    factory = TracingFactory()
    ids = ids_for()
    hb = HeartbeatThread(factory, ids, 30.0, lambda: "x")
    hb.start()
    wait_greenlet(lambda: hb.beats >= 1, what="the first beat")
    assert sorted(r.hkeys(HB)) == ids
    assert factory.idents and factory.idents[0] != _os_thread_ident()
    t0 = time.monotonic()
    hb.stop()  # the thread is waiting out a 30 s interval: stop must wake it
    assert time.monotonic() - t0 < 1.0
    tid = factory.native_ids[0]
    wait_for(lambda: not os.path.exists(f"/proc/self/task/{tid}"), 2, "the heartbeat thread to exit")
    hb.stop()  # a second stop is harmless


def test_thread_keeps_beating_while_the_hub_is_starved(r):
    """A job that never yields holds the hub; the OS thread must beat anyway (WIRE §3.8)."""
    hb = HeartbeatThread(TracingFactory(), ids_for(1), 0.05, lambda: "x")
    hb.start()
    try:
        wait_greenlet(lambda: hb.beats >= 1, what="the first beat")
        before = hb.beats
        end = time.perf_counter() + 0.6
        while time.perf_counter() < end:  # no gevent switch in here
            pass
        assert hb.beats - before >= 3
    finally:
        hb.stop()


def test_thread_reregisters_only_after_the_runner_registered(r):
    ids = ids_for()
    hb = HeartbeatThread(TracingFactory(), ids, 0.05, lambda: "2030-01-01 00:00:00 +0000")
    hb.start()
    try:
        wait_greenlet(lambda: hb.beats >= 2, what="two beats")
        assert r.smembers("resque:workers") == set()  # start-up: the runner registers, not us
        hb.registered = True
        wait_greenlet(lambda: r.smembers("resque:workers") == set(ids), what="re-registration")
        assert all(r.get(f"resque:worker:{w}:started") == "2030-01-01 00:00:00 +0000" for w in ids)
    finally:
        hb.stop()


def test_thread_survives_an_unreachable_redis_and_still_stops(r):
    hb = HeartbeatThread(TracingFactory("redis://127.0.0.1:1/0"), ids_for(1), 30.0, lambda: "x")
    hb.start()
    gevent.sleep(0)  # let the thread start its first (failing) beat
    t0 = time.monotonic()
    hb.stop()
    assert time.monotonic() - t0 < 3.0
    assert hb.beats == 0


def test_stop_before_start_is_a_no_op():
    HeartbeatThread(TracingFactory(), ids_for(1), 1.0, lambda: "x").stop()


# -- real worker processes ------------------------------------------------------------------------

@pytest.fixture
def titled():
    """A live foreign process whose argv Ruby's ps grep recognises."""
    proc = spawn_titled("resque-3.0.0: Waiting for file_serve")
    yield str(proc.pid)
    proc.kill()
    proc.wait()


def test_worker_prunes_at_startup_and_survives_a_star_pruner(r, store, start_worker, titled):
    dead = f"{HOST}:{dead_pid()}:file_serve"
    live = f"{HOST}:{titled}:file_serve"
    register(r, dead, heartbeat=iso_ago(r, 0), job=job_record("file_serve", "DeadJob", 1), stats=True)
    register(r, live, heartbeat=iso_ago(r, 0), job=job_record("file_serve", "LiveJob", 2))
    live_before = worker_keys(r, live)

    w = start_worker("QUEUE=file_serve", "FIBERS=3")
    ids = w.wait_registered(r, 3)

    # (1) our start-up pruning: Ruby's rules, Ruby's entry
    assert ids == [f"{HOST}:{w.pid}:file_serve:{i}" for i in range(3)]
    assert worker_keys(r, dead) == GONE
    assert worker_keys(r, live) == live_before
    [entry] = failures(r)
    assert (entry["exception"], entry["error"], entry["worker"], entry["queue"], entry["payload"]) == (
        "Resque::DirtyExit", "Job still being processed", dead, "file_serve",
        {"class": "DeadJob", "args": [1]})
    assert r.get("resque:stat:failed") is None
    assert r.get(LOCK) == ids[0]
    assert 55 <= r.ttl(LOCK) <= 60  # EX heartbeat interval (60), as fixture 02

    # (2) a Ruby-rules pruner with '*' on this host: our slots match ps and have fresh beats
    wait_for(lambda: ps_command(w.pid).startswith(TITLE), 10, "the worker's resque title")
    other_dead = f"{HOST}:{dead_pid()}:elsewhere"
    register(r, other_dead)
    r.delete(LOCK)
    pruned = prune_dead_workers(store, f"{HOST}:{os.getpid()}:*", QueueList(["*"]), HOST,
                                prune_interval=300, lock_ttl=60, now=time.time)
    assert pruned == [other_dead]  # it did prune, but not us
    for wid in ids:
        assert r.sismember("resque:workers", wid)
        assert r.hget(HB, wid)
    assert worker_keys(r, live) == live_before

    quit_and_check_unregistered(r, w)


def test_worker_heartbeats_every_slot_and_reregisters_a_removed_one(r, start_worker):
    w = start_worker("QUEUE=file_serve", "FIBERS=3", "RESQUE_HEARTBEAT_INTERVAL=0.2")
    ids = w.wait_registered(r, 3)
    beats = r.hgetall(HB)
    assert sorted(beats) == ids
    for wid in ids:
        assert ISO_OFFSET.match(beats[wid]), beats[wid]
        close_to_redis_time(r, beats[wid])
        assert TIME_TO_S.match(r.get(f"resque:worker:{wid}:started"))

    # the values are refreshed (second resolution, so a change comes within ~1.2 s)
    first = beats[ids[0]]
    wait_for(lambda: r.hget(HB, ids[0]) != first, 5, "a refreshed heartbeat")
    close_to_redis_time(r, r.hget(HB, ids[0]))

    # an operator's Resque.remove_worker(id): Ruby's six unregister commands for one slot
    gone = ids[1]
    pipe = r.pipeline(transaction=False)
    pipe.srem("resque:workers", gone)
    pipe.delete(f"resque:worker:{gone}", f"resque:worker:{gone}:started",
                f"resque:stat:processed:{gone}", f"resque:stat:failed:{gone}")
    pipe.hdel(HB, gone)
    pipe.execute()
    wait_for(lambda: r.sismember("resque:workers", gone) and r.get(f"resque:worker:{gone}:started")
             and r.hget(HB, gone), 5, "the removed slot to be re-registered")
    assert TIME_TO_S.match(r.get(f"resque:worker:{gone}:started"))
    assert set(w.wait_registered(r, 3)) == set(ids)

    quit_and_check_unregistered(r, w)


def test_cpu_bound_job_does_not_stop_heartbeats(r, start_worker):
    r.sadd("resque:queues", "critical")
    r.rpush("resque:queue:critical", '{"class":"CpuJob","args":[2.0]}')
    w = start_worker("QUEUE=critical", "RESQUE_HEARTBEAT_INTERVAL=0.2")
    [wid] = w.wait_registered(r)
    assert r.blpop(["test:started"], timeout=15)
    before = r.hget(HB, wid)
    assert before

    def changed_while_running():
        current = r.hget(HB, wid)  # read the beat first, then whether the job had finished
        finished = r.llen("test:finished")
        if current != before:
            return ("during", current) if not finished else ("after", current)
        return ("after", current) if finished else None

    when, value = wait_for(changed_while_running, 10, "a heartbeat or the end of the job")
    assert when == "during", "the heartbeat did not change while the CPU-bound job ran"
    close_to_redis_time(r, value)
    assert r.blpop(["test:finished"], timeout=10)
    quit_and_check_unregistered(r, w)


def test_heartbeat_and_started_use_the_process_time_zone(r, start_worker):
    """Fixture 12: under TZ=Asia/Kolkata Ruby writes ``...+05:30`` and ``... +0530``."""
    w = start_worker("QUEUE=file_serve", env={"TZ": "Asia/Kolkata"})
    [wid] = w.wait_registered(r)
    value = wait_for(lambda: r.hget(HB, wid), 5, "the heartbeat")
    assert ISO_OFFSET.match(value) and value.endswith("+05:30"), value
    close_to_redis_time(r, value)
    assert r.get(f"resque:worker:{wid}:started").endswith(" +0530")
    quit_and_check_unregistered(r, w)
