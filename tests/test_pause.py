"""resque-pause: Python slots leave a paused queue alone, as Ruby workers with the plugin do.

Against fixtures/ruby-plugins/pause_01..04 (a real Ruby worker with resque-pause 0.3.0), with a
real ``resque-py work`` process, and a MONITOR of the test DB to see what each poll sends.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys

import gevent
import pytest
import redis

from resque_compat.store.store import Store
from resque_compat.wire.keys import Keys
from resque_compat.wire.records import worker_record_prefix
from tests.conftest import REDIS_DB, REDIS_HOST, REDIS_PORT, REDIS_URL, ROOT, wait_for
from tests.keyspace import PRUNING_LOCK as PRUNING
from tests.keyspace import dump, load_keys, normalize, normalized_plugin_fixture
from tests.keyspace import load_plugin_fixture as fixture

JOBS = os.path.join(ROOT, "tests", "plugin_jobs.py")


def ruby(name: str) -> dict:
    return normalized_plugin_fixture(fixture(name))


class Monitor:
    """MONITOR of the test DB, collected by a greenlet: [(client type, command words)]."""

    def __init__(self) -> None:
        self.client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB)
        self.seen = []
        self._ready = gevent.event.Event()
        self.greenlet = gevent.spawn(self._run)
        self._ready.wait(5)

    def _run(self) -> None:
        with self.client.monitor() as monitor:
            self._ready.set()
            while True:
                cmd = monitor.next_command()
                if int(cmd["db"]) == REDIS_DB:
                    self.seen.append((cmd["client_type"], shlex.split(cmd["command"])))

    def script_commands(self, since: int = 0, until: int = None):
        """The commands our reserve script ran (Redis marks them ``lua``), lower-cased."""
        return [[words[0].lower(), *words[1:]] for kind, words in self.seen[since:until] if kind == "lua"]

    def after(self, *words: str) -> int:
        """The position just after our own command ``words`` in the trace (waits for it): the
        trace lags behind Redis, so a count taken when we sent it could include older polls."""
        wanted = list(words)
        return wait_for(lambda: next((i + 1 for i, (_, w) in enumerate(self.seen) if w == wanted), None),
                        what=f"{words} in MONITOR")

    def polls(self, since: int = 0) -> int:
        return sum(1 for c in self.script_commands(since) if c[0] == "mget")

    def stop(self) -> None:
        self.greenlet.kill()
        self.client.close()


@pytest.fixture
def monitor(r):
    m = Monitor()
    yield m
    m.stop()


def ran(r):
    return r.lrange("test:ran", 0, -1)


def test_a_paused_queue_is_left_alone_until_unpaused_then_drained_in_order(r, start_worker, monitor):
    load_keys(r, fixture("pause_01_paused")["keys"])  # Ruby: 3 jobs, then pause(:pausable)
    worker = start_worker("QUEUE=pausable,other", require=JOBS)
    ids = worker.wait_registered(r)
    wait_for(lambda: r.get("resque:stat:processed") == "1", what="OtherJob to run")
    r.echo("OtherJob-ran")
    mark = monitor.after("ECHO", "OtherJob-ran")
    wait_for(lambda: monitor.polls(mark) >= 3, what="three more polls")
    assert ran(r) == ["OtherJob:o1"]
    r.delete("test:ran")
    assert normalize(dump(r), ids, drop=[PRUNING]) == ruby("pause_02_worker_skips_paused_queue")
    assert ["lpop", "resque:queue:pausable"] not in monitor.script_commands()

    # Ruby's global_pause, then unpause(:pausable): pause:all alone still stops everything.
    r.set("resque:pause:all", "true")
    r.delete("resque:pause:queue:pausable")
    mark = monitor.after("DEL", "resque:pause:queue:pausable")
    wait_for(lambda: monitor.polls(mark) >= 3, what="three polls under pause:all")
    assert [c for c in monitor.script_commands(mark) if c[0] == "lpop"] == []
    assert normalize(dump(r), ids, drop=[PRUNING]) == ruby("pause_03_global_pause")

    r.delete("resque:pause:all")  # Ruby's global_unpause
    wait_for(lambda: r.get("resque:stat:processed") == "3", what="both paused jobs to run")
    assert ran(r) == ["PausableJob:p1", "PausableJob:p2"]  # in their queued order
    r.delete("test:ran")
    assert normalize(dump(r), ids, drop=[PRUNING]) == ruby("pause_04_unpaused")


def test_a_job_whose_queue_was_paused_after_reserve_is_pushed_back_to_the_head(r, start_worker):
    fx = fixture("pause_05_pushed_back")
    r.rpush("resque:queue:midway", *fx["keys"]["resque:queue:midway"]["value"])  # Ruby's m1, m2
    r.sadd("resque:queues", "midway")
    worker = start_worker("QUEUE=midway", require=JOBS)
    ids = worker.wait_registered(r)
    wait_for(lambda: r.get("resque:stat:processed") == "1", what="m1 to be pushed back")
    assert ran(r) == []  # skipped, not failed
    assert normalize(dump(r), ids, drop=[PRUNING]) == ruby("pause_05_pushed_back")
    r.delete("resque:pause:queue:midway")  # Ruby's unpause(:midway)
    wait_for(lambda: r.get("resque:stat:processed") == "3", what="m1 then m2")
    assert ran(r) == ["MidwayJob:m1", "MidwayJob:m2"]
    r.delete("test:ran")
    assert normalize(dump(r), ids, drop=[PRUNING]) == ruby("pause_05b_pushed_back_then_unpaused")


def test_a_job_routed_to_another_queue_moves_to_its_paused_class_queue(r, resque, start_worker):
    r.set("resque:pause:queue:pausable", "true")  # Ruby's pause(:pausable)
    resque.enqueue_to("other", "PausableJob", "routed")
    worker = start_worker("QUEUE=other", require=JOBS)
    ids = worker.wait_registered(r)
    wait_for(lambda: r.get("resque:stat:processed") == "1", what="the push-back")
    assert ran(r) == []
    assert normalize(dump(r), ids, drop=[PRUNING]) == ruby("pause_06_enqueue_to_moved_to_class_queue")


def _trip_commands(store: Store, monitor: Monitor, free: int, queues, tag: str):
    ids = [f"host:1:q:{i}" for i in range(free)]
    store.redis.echo(f"{tag}-starts")
    store.finish_and_reserve([], ids, queues, [worker_record_prefix(q, "2026-12-07T05:30:01Z") for q in queues])
    store.redis.echo(f"{tag}-ends")
    return monitor.script_commands(monitor.after("ECHO", f"{tag}-starts"), monitor.after("ECHO", f"{tag}-ends"))


@pytest.mark.parametrize("free", [1, 16])
def test_a_paused_queue_costs_no_command_per_slot(r, monitor, free):
    store = Store(redis.Redis.from_url(REDIS_URL), Keys())
    r.rpush("resque:queue:pausable", '{"class":"PausableJob","args":["p1"]}')
    r.set("resque:pause:queue:pausable", "true")
    paused = _trip_commands(store, monitor, free, ["pausable", "other"], "paused")
    r.delete("resque:pause:queue:pausable", "resque:queue:pausable")
    unpaused = _trip_commands(store, monitor, free, ["pausable", "other"], "unpaused")
    mget = ["mget", "resque:pause:all", "resque:pause:queue:pausable", "resque:pause:queue:other"]
    assert paused == [["get", "resque:pause-all-workers"], mget, ["lpop", "resque:queue:other"]]
    assert unpaused == [["get", "resque:pause-all-workers"], mget, ["lpop", "resque:queue:pausable"],
                        ["lpop", "resque:queue:other"]]
    assert r.llen("resque:queue:pausable") == 0 and not r.keys("resque:worker:*")


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "resque_compat", "--redis", REDIS_URL, *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_pause_queue_and_resume_queue_write_the_plugins_key(r):
    out = _cli("pause-queue", "pausable")
    assert out.returncode == 0, out.stderr
    assert normalize(dump(r), []) == {"resque:pause:queue:pausable": {"type": "string", "value": "true"}}
    assert dump(r)["resque:pause:queue:pausable"] == fixture("pause_01_paused")["keys"]["resque:pause:queue:pausable"]
    assert r.ttl("resque:pause:queue:pausable") == -1  # no TTL, as Ruby's
    r.set("resque:pause:all", "true")
    out = _cli("resume-queue", "pausable")
    assert out.returncode == 0 and "pause:all is still set" in out.stdout, out
    assert r.keys("resque:pause:queue:*") == []
    assert _cli("pause-queue").returncode == 2  # NAME is required
