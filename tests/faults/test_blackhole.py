"""Redis' packets silently dropped while a worker runs a job stream (issue 14, requirement 2).

Nothing is refused and nothing answers: requests go unacknowledged until our timeouts end the
wait (store/timeouts.py). Two cases, each on private redis-servers (6392-6394) whose port
nftables blackholes on loopback (tests/faults/blackhole.py):

* the network heals after ``outage`` seconds: the worker must resume by itself within
  :func:`resume_bound` (the longest back-off, one connect and one read timeout: 20 s, twice the
  read timeout, at the defaults), its heartbeats must resume, /healthz must say "Redis
  unreachable since ..." and then ready, nothing lost, nothing counted twice;
* the master's address stays black for good while Sentinel promotes its replica on another port:
  the worker must move there and finish the stream.

``make faults``: a 20 s outage under a 10,000-job stream at the default bounds (5 s connect,
10 s read). ``make test``: a 5 s outage at 1 s / 2 s bounds (set in the URL's query), so the
same timeouts fire in a few seconds.
"""
from __future__ import annotations

import re
import socket
import time

import pytest
import redis

from resque_compat.runtime.fetcher import MAX_REDIS_BACKOFF
from resque_compat.store.timeouts import DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT
from resque_compat.wire import codec
from tests.conftest import REDIS_URL
from tests.faults.blackhole import blackhole  # noqa: F401  (fixture)
from tests.faults.harness import FULL, assert_clean_exit, make_stream, push_stream, scaled, settle, wait_until
from tests.faults.test_redis_outages import (
    FIBERS,
    WORDS,
    all_settled,
    assert_exact_stats,
    progress,
    quit_worker,
)
from tests.redis_servers import RedisServer, free_port, redis_servers  # noqa: F401  (fixture)
from tests.test_metrics import http_get, scrape

MASTER_PORT, REPLICA_PORT, SENTINEL_PORT = 6392, 6393, 6394
#: The loopback address the replica connects from: the hole spares it, so replication survives.
REPLICA_SOURCE = "127.0.0.2"
SERVICE = "faultnet"
OUTAGE = scaled(5.0, 20.0)
#: (connect, read) bounds: the defaults at full scale, smaller in make test.
BOUNDS = scaled((1.0, 2.0), (DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT))
QUERY = "" if FULL else f"socket_connect_timeout={BOUNDS[0]:g}&socket_timeout={BOUNDS[1]:g}"


def resume_bound() -> float:
    """After the network heals, the fetcher may be in its longest back-off, then needs one
    connect and one reply: 5 + 5 + 10 = 20 s at the defaults."""
    return MAX_REDIS_BACKOFF + BOUNDS[0] + BOUNDS[1]


def start_server(redis_servers, name: str, port: int, args=(), **kwargs) -> RedisServer:  # noqa: F811
    with socket.socket() as probe:  # never mistake someone else's server for ours
        assert probe.connect_ex(("127.0.0.1", port)) != 0, f"port {port} is in use; stop whatever listens there"
    server = redis_servers(name, list(args), port=port, **kwargs)
    server.wait_ready(server.client)
    return server


def first(predicate, timeout: float, what: str, w) -> float:
    """Wait for ``predicate``; returns the time it first held."""
    wait_until(predicate, timeout, what, w)
    return time.time()


def healthz(port: int, starts: str):
    return lambda: (lambda s: s if s[1].startswith(starts) else None)(http_get(port, "/healthz"))


def beats_after(store: redis.Redis, ids, when: float):
    """Every id has a heartbeat stamped at or after ``when`` (Redis TIME, whole seconds)."""
    def check() -> bool:
        beats = store.hgetall("resque:workers:heartbeat")
        return all((codec.parse_heartbeat(beats.get(i, "")) or 0) >= int(when) for i in ids)
    return check


@pytest.mark.timeout(400 if FULL else 150)
@pytest.mark.parametrize("dropped", ["both ways", "replies only"])
def test_redis_blackholed_mid_stream_then_healed(r, workers, report, redis_servers, blackhole, dropped):  # noqa: F811
    """"replies only": Redis still runs what it receives, so a reserve trip that timed out has
    taken jobs: they must be read back from ``worker:<id>`` and run, neither lost nor run twice."""
    server = start_server(redis_servers, "blackholed", MASTER_PORT)
    store = server.client()
    stream = make_stream(scaled(1500, 10000), "b", seed=14)
    push_stream(store, stream)
    metrics_port = free_port()
    w = workers(WORDS + ["METRICS_INTERVAL=0.5"], {
        "REDIS_URL": f"redis://127.0.0.1:{MASTER_PORT}/0" + (f"?{QUERY}" if QUERY else ""),
        "TEST_CONTROL_REDIS_URL": REDIS_URL, "METRICS_PORT": str(metrics_port), "METRICS_BIND": "127.0.0.1"})
    ids = w.wait_registered(store, FIBERS)
    wait_until(lambda: progress(r) >= len(stream.ids) // 3, 60, "a third of the stream", w)

    hole = blackhole(MASTER_PORT, replies_only=dropped == "replies only")
    hole.drop()
    dropped_at, during = time.time(), progress(r)
    # Noticed after one read or connect bound: the outage lasts at least that long, however loaded the machine.
    _, body = wait_until(healthz(metrics_port, "Redis unreachable since "), OUTAGE + resume_bound(),
                         "/healthz to say why", w)
    assert re.match(r"Redis unreachable since \S+Z \(\d+s\): .*(timed out|no reply)", body), body
    unready_at = time.time()
    time.sleep(max(0.0, dropped_at + OUTAGE - time.time()))
    stuck = progress(r) - during  # nothing new can start while Redis cannot be reached
    hole.heal()
    healed_at, at_heal = time.time(), progress(r)

    bound = resume_bound()
    resumed_at = first(lambda: progress(r) > at_heal, bound + 30, "the worker to take jobs again", w)
    ready_at = first(healthz(metrics_port, "ready"), bound + 30, "/healthz to say ready again", w)
    beat_at = first(beats_after(store, ids, healed_at), bound + 30, "every slot's heartbeat", w)
    try:
        wait_until(all_settled(r, store, stream), scaled(60, 240), "the whole stream", w)
    except AssertionError as exc:  # wait_until killed the worker and shows its output
        raise AssertionError(f"{settle(r, store, [stream]).line('unsettled')}\n{exc}") from None
    counts = scrape(metrics_port)
    timeouts = {what: int(counts.get(("resque_redis_timeouts_total", (("what", what),)), 0))
                for what in ("connect", "tls", "read", "write")}
    reconnects = int(counts[("resque_redis_reconnects_total", ())])
    quit_worker(w)
    assert_clean_exit(store)

    ledger = settle(r, store, [stream])
    recovered = sum(int(n) for n in re.findall(r"recovered (\d+) job\(s\) reserved", w.output))
    report(ledger.line(
        f"Redis blackholed {OUTAGE:g}s, {dropped} (bounds {BOUNDS[0]:g}s/{BOUNDS[1]:g}s)",
        f"{stuck} jobs started during it; /healthz unready {unready_at - dropped_at:.1f}s after the drop; "
        f"after the heal: jobs again in {resumed_at - healed_at:.1f}s (bound {bound:g}s), ready in "
        f"{ready_at - healed_at:.1f}s, heartbeats in {beat_at - healed_at:.1f}s; timeouts {timeouts}, "
        f"reconnects {reconnects}, jobs read back from worker:<id> {recovered}"))
    ledger.assert_sound()
    assert_exact_stats(store, ledger, stream)
    assert stuck <= FIBERS
    assert resumed_at - healed_at <= bound and ready_at - healed_at <= bound + 1
    assert timeouts["read"] >= 1 and reconnects >= 1


def sentinel_config() -> str:
    # Quorum 1: this one Sentinel may fail over alone; small timings for seconds on loopback.
    return (f"port {SENTINEL_PORT}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {MASTER_PORT} 1\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 4000\n")


def master_port_by_sentinel(sentinel: redis.Redis) -> int:
    return int(sentinel.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)[1])


@pytest.mark.timeout(400 if FULL else 150)
def test_old_master_address_black_for_good_worker_moves_through_sentinel(r, workers, report, redis_servers,  # noqa: F811
                                                                         blackhole):  # noqa: F811
    # The master takes replicas from 127.0.0.2 too (protected mode would refuse it); it still
    # listens on 127.0.0.1 only.
    master = start_server(redis_servers, "master", MASTER_PORT, ["--protected-mode", "no"])
    replica = start_server(redis_servers, "replica", REPLICA_PORT, [
        "--replicaof", "127.0.0.1", str(MASTER_PORT), "--bind-source-addr", REPLICA_SOURCE,
        "--replica-announce-ip", "127.0.0.1"])
    wait_until(lambda: replica.client().info("replication").get("master_link_status") == "up", 20,
               "the replica to sync")
    sentinel = start_server(redis_servers, "sentinel", SENTINEL_PORT, config=sentinel_config(), sentinel=True)
    wait_until(lambda: int(dict(zip(*[iter(sentinel.client().execute_command("SENTINEL", "MASTER", SERVICE))] * 2))
                           ["num-slaves"]) >= 1, 20, "the Sentinel to find the replica")
    store, new_store = master.client(), replica.client()
    stream = make_stream(scaled(1500, 10000), "s", seed=15)
    push_stream(store, stream)
    assert store.execute_command("WAIT", 1, 5000) == 1
    url = f"redis+sentinel://127.0.0.1:{SENTINEL_PORT}/{SERVICE}/0" + (f"?{QUERY}" if QUERY else "")
    w = workers(WORDS, {"REDIS_URL": url, "TEST_CONTROL_REDIS_URL": REDIS_URL})
    ids = w.wait_registered(store, FIBERS)
    wait_until(lambda: progress(r) >= len(stream.ids) // 3, 60, "a third of the stream", w)

    blackhole(MASTER_PORT, spare=REPLICA_SOURCE).drop()  # for good: healed only after the test
    dropped_at, at_drop = time.time(), progress(r)
    promoted_at = first(lambda: master_port_by_sentinel(sentinel.client()) == REPLICA_PORT, 60,
                        "the Sentinel to promote the replica", w)
    moved_at = first(lambda: progress(r) > at_drop + FIBERS, 60, "the worker to take jobs on the new master", w)
    beat_at = first(beats_after(new_store, ids, promoted_at), 60, "every slot's heartbeat on the new master", w)
    wait_until(all_settled(r, new_store, stream), 300, "the whole stream", w)
    quit_worker(w)
    assert_clean_exit(new_store)

    ledger = settle(r, new_store, [stream])
    report(ledger.line(
        f"master address black for good, Sentinel failover (bounds {BOUNDS[0]:g}s/{BOUNDS[1]:g}s)",
        f"promoted {promoted_at - dropped_at:.1f}s after the drop; jobs on the new master "
        f"{moved_at - dropped_at:.1f}s after it, heartbeats {beat_at - dropped_at:.1f}s"))
    ledger.assert_sound()
    assert_exact_stats(new_store, ledger, stream)  # the replica had every write: the hole spared it
    assert moved_at - promoted_at <= resume_bound()
