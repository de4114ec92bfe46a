"""FIBERS=MIN..MAX: the autoscaling policy (pure), its hub-lag probe, and a real worker whose
registration in Redis matches its live slots at every moment while it grows and shrinks."""
from __future__ import annotations

import json
import re
import signal
import time

import gevent
import pytest
from gevent.event import Event

from resque_compat.errors import ConfigurationError
from resque_compat.runtime.autoscale import Autoscaler, Load, db_headroom, target_slots
from resque_compat.settings import Settings

# -- the policy ---------------------------------------------------------------------------------


@pytest.mark.parametrize("load, expected", [
    (Load(slots=2, busy=2), 4),          # every slot busy: double
    (Load(slots=8, busy=5), 10),         # above half busy: aim at half busy
    (Load(slots=16, busy=16), 20),       # capped at MAX
    (Load(slots=10, busy=5), 10),        # exactly half busy: keep (no flapping)
    (Load(slots=10, busy=3), 10),        # between 25 % and 50 %: keep
    (Load(slots=20, busy=0), 15),        # idle: a quarter at a time
    (Load(slots=3, busy=0), 2),          # at least one, never below MIN
    (Load(slots=2, busy=0), 2),          # at MIN already
    (Load(slots=20, busy=4), 15),        # quiet: shrink, but not below twice the busy count
    (Load(slots=16, busy=3), 12),
])
def test_policy_grows_when_busy_and_shrinks_when_idle(load, expected):
    assert target_slots(load, low=2, high=20) == expected


def test_policy_shrinks_when_the_hub_lags_even_if_every_slot_is_busy():
    lagging = Load(slots=20, busy=20, lag=0.2)
    assert target_slots(lagging, low=2, high=50) == 15
    assert target_slots(Load(slots=2, busy=2, lag=0.2), low=2, high=50) == 2  # never below MIN
    assert target_slots(Load(slots=20, busy=20, lag=0.01), low=2, high=50) == 40


def test_policy_does_not_grow_while_jobs_wait_for_a_mysql_connection():
    assert target_slots(Load(slots=20, busy=20, db_free=0), low=2, high=50) == 20
    assert target_slots(Load(slots=20, busy=20, db_free=-3), low=2, high=50) == 20
    assert target_slots(Load(slots=20, busy=20, db_free=1), low=2, high=50) == 40
    # a full pool never stops shrinking
    assert target_slots(Load(slots=20, busy=0, db_free=-3), low=2, high=50) == 15


def test_policy_stays_within_bounds_for_any_input():
    for slots in range(1, 40):
        for busy in range(0, slots + 1):
            for lag in (0.0, 1.0):
                for db_free in (None, 0, 5):
                    got = target_slots(Load(slots, busy, lag, db_free), low=3, high=30)
                    assert 3 <= got <= 30, (slots, busy, lag, db_free, got)


def test_db_headroom_reads_the_pool_stats():
    assert db_headroom({"size": 0, "in_use": 0, "waiting": 0}) is None  # no DATABASE_URL
    assert db_headroom({"size": 20, "in_use": 5, "waiting": 0}) == 15
    assert db_headroom({"size": 20, "in_use": 20, "waiting": 4}) == -4


def test_fibers_range_setting():
    s = Settings.load(["QUEUE=a", "FIBERS=10..200"], environ={})
    assert (s.fibers_min, s.fibers, s.autoscale) == (10, 200, True)
    # a higher source with a plain number wins over a range from the environment, bounds and all
    s = Settings.load(["QUEUE=a", "FIBERS=7"], environ={"FIBERS": "2..20"})
    assert (s.fibers_min, s.fibers, s.autoscale) == (None, 7, False)
    assert Settings.load(["FIBERS=5..5"], environ={}).autoscale is False
    for bad in ("20..2", "0..5", "x..5", "5.."):
        with pytest.raises(ConfigurationError, match="FIBERS"):
            Settings.load([f"FIBERS={bad}"], environ={})


# -- the probe: real hub lag, measured in this (patched) process ----------------------------------

def _run_scaler(hog: bool) -> list:
    changes = []
    scaler = Autoscaler(2, 40, busy=lambda: 10, slots=lambda: 10,
                        grow=lambda n: changes.append(+n), shrink=lambda n: changes.append(-n),
                        check_interval=0.2)
    done = Event()

    def hog_the_hub():  # a CPU-bound job: 60 ms without yielding, over and over
        while not done.is_set():
            end = time.perf_counter() + 0.06
            while time.perf_counter() < end:
                pass
            gevent.sleep(0)

    g = gevent.spawn(scaler.run)
    h = gevent.spawn(hog_the_hub) if hog else None
    gevent.sleep(0.7)
    done.set()
    scaler.stop()
    g.join(2)
    if h is not None:
        h.join(2)
    return changes, scaler.last


def test_probe_measures_hub_lag_and_the_loop_applies_the_policy():
    changes, last = _run_scaler(hog=False)
    assert changes and all(c == +10 for c in changes), changes  # 10 of 10 busy: grow to 20
    assert last.lag < 0.05
    changes, last = _run_scaler(hog=True)
    assert changes and all(c < 0 for c in changes), changes       # lagging: shrink
    assert last.lag > 0.05, last


# -- a real worker ------------------------------------------------------------------------------

def _registration(r, pid):
    """workers members, heartbeat fields and started keys of ``pid``, read in one MULTI."""
    pipe = r.pipeline(transaction=True)
    pipe.smembers("resque:workers")
    pipe.hkeys("resque:workers:heartbeat")
    pipe.keys("resque:worker:*:started")
    members, beats, started = pipe.execute()
    mine = lambda ids: {i for i in ids if f":{pid}:" in i}  # noqa: E731
    return (mine(members), mine(beats),
            mine(k[len("resque:worker:"):-len(":started")] for k in started))


def _watch(r, pid, until, timeout, seen):
    """Sample the registration until ``until(ids)``; every sample must be consistent."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        members, beats, started = _registration(r, pid)
        assert members == beats == started, (members ^ beats, members ^ started)
        assert all(i.startswith(f"{i.split(':')[0]}:{pid}:critical:") for i in members)
        seen.append(len(members))
        if until(members):
            return members
        time.sleep(0.01)
    raise AssertionError(f"condition not reached in {timeout}s; counts seen: {seen[-20:]}")


def test_worker_grows_under_a_burst_and_shrinks_back_with_truthful_registration(r, start_worker):
    worker = start_worker("QUEUE=critical", "FIBERS=2..20", "INTERVAL=0.1",
                          env={"RESQUE_HEARTBEAT_INTERVAL": "0.2"})  # beats race the changes
    worker.wait_registered(r, 2)
    seen: list = []
    first = _watch(r, worker.pid, lambda ids: True, 1, seen)
    assert {i.rsplit(":", 1)[1] for i in first} == {"0", "1"}

    jobs = 40
    for n in range(jobs):
        r.rpush("resque:queue:critical", json.dumps({"class": "SleepJob", "args": [1.5, n]}))
    r.sadd("resque:queues", "critical")
    grown = _watch(r, worker.pid, lambda ids: len(ids) == 20, 15, seen)
    assert {int(i.rsplit(":", 1)[1]) for i in grown} == set(range(20))
    assert max(seen) == 20 and min(seen) >= 2

    shrunk = _watch(r, worker.pid, lambda ids: len(ids) == 2, 20, seen)
    assert r.llen("test:finished") == jobs          # shrinking waited for every job
    assert int(r.get("resque:stat:processed")) == jobs
    assert r.llen("resque:failed") == 0
    # the counts fell in steps (a quarter at a time), and never below MIN
    falling = seen[seen.index(20):]
    assert len(set(falling)) >= 4 and min(falling) == 2
    # per-slot keys exist only for live slots: a retired slot's stats went with it
    live = {i.rsplit(":", 1)[1] for i in shrunk}
    for key in r.keys(f"resque:*:{worker.pid}:*"):
        assert re.search(f":{worker.pid}:critical:(\\d+)", key).group(1) in live, key
    # jobs still run on the survivors, and another burst grows it again
    r.rpush("resque:queue:critical", json.dumps({"class": "SleepJob", "args": [1.0, "again"]}))
    r.rpush("resque:queue:critical", json.dumps({"class": "SleepJob", "args": [1.0, "again2"]}))
    _watch(r, worker.pid, lambda ids: len(ids) > 2, 5, seen)

    worker.signal(signal.SIGQUIT)
    assert worker.wait(20) == 0, worker.output
    assert r.llen("test:finished") == jobs + 2
    assert _registration(r, worker.pid) == (set(), set(), set())
    assert r.keys(f"*:{worker.pid}:*") == []
