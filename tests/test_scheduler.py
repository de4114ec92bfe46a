"""Delayed jobs on resque-scheduler's keys: the bytes Ruby writes (fixtures 08b, 09, 09b), the
client API, and the real ``resque-py scheduler`` process: release, leader lock, crash safety."""
from __future__ import annotations

import datetime as dt
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from resque_compat import activejob
from resque_compat.errors import NoQueueError
from resque_compat.scheduler.delayed import DelayedQueue, UnreleasableItem, released_job
from resque_compat.scheduler.leader import Delayed, Scheduler
from resque_compat.wire import codec
from resque_compat.wire.keys import Keys
from tests import delayed_jobs  # noqa: F401  registers DelayedJob (queue critical) here too
from tests.conftest import REDIS_URL, ROOT, wait_for
from tests.keyspace import dump, load_fixture

JOBS = os.path.join(ROOT, "tests", "delayed_jobs.py")
UTC = dt.timezone.utc
K = Keys()
LOCK = K.scheduler_master_lock()


def at(clock: float):
    return lambda: clock


class SchedulerProcess:
    """A real ``python -m resque_compat scheduler`` on the test DB; its log lines are collected."""

    def __init__(self, *words, env=None):
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("RESQUE_SCHEDULER", "DELAYED_"))}
        full_env.update({"REDIS_URL": REDIS_URL, "PYTHONUNBUFFERED": "1"}, **(env or {}))
        self.proc = subprocess.Popen([sys.executable, "-m", "resque_compat", "scheduler", *words, "-r", JOBS],
                                     env=full_env, cwd=ROOT, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def lock_value(self):
        return f"{socket.gethostname()}:{self.proc.pid}"

    def wait_for_line(self, pattern, timeout=10.0):
        deadline = time.time() + timeout
        while not any(re.search(pattern, line) for line in self.lines):
            if self.proc.poll() is not None or time.time() > deadline:
                pytest.fail(f"no log line {pattern!r} (exit code {self.proc.poll()}):\n" + "\n".join(self.lines))
            time.sleep(0.01)

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def start_scheduler(r):
    procs = []

    def start(*words, env=None):
        proc = SchedulerProcess(*words, env=env)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.kill()


# -- byte identity with Ruby ---------------------------------------------------------------------

def test_fixture_09_rebuilt_from_python_is_byte_identical(r, resque):
    fx = load_fixture("09_delayed.json")
    delayed = Delayed(resque, clock=at(1795780926.4))  # Ruby's now; enqueue_in(60) -> 1795780986
    assert delayed.enqueue_in(60, "DelayedJob", 1) is True
    delayed.enqueue_at(dt.datetime(2030, 1, 1, tzinfo=UTC), "DelayedJob", "at", {"k": "v"})
    delayed.enqueue_at(dt.datetime(2030, 1, 1, tzinfo=UTC), "DelayedJob", "at-2")
    delayed.enqueue_at(dt.datetime(2031, 1, 1, tzinfo=UTC), delayed_jobs.delayed_job, "at", {"k": "v"})
    delayed.enqueue_in_with_queue("low", 120, "DelayedJob", 2)
    delayed.enqueue_at(dt.datetime(2030, 1, 1, 0, 0, 0, 750000, tzinfo=UTC), "DelayedJob", "fractional")
    assert dump(r) == fx["keys"]


def test_fixture_08b_activejob_items_rebuilt_from_python_are_byte_identical(r, resque):
    fx = load_fixture("08b_activejob_scheduled.json")
    first = codec.decode(fx["keys"]["resque:delayed:1795780985"]["value"][0])
    delayed = Delayed(resque, clock=at(1795780925.1))
    # Rails passes a Float epoch: set(wait: 60) at 1795780925.62 -> delayed:1795780985.
    delayed.enqueue_at_with_queue("critical", 1795780985.62, activejob.JOB_WRAPPER, first["args"][0])
    second = activejob.job_data("AjJob", ["at", 1], queue="critical", job_id="fc6518ff-d277-40a6-a306-bb0d57acc3f8",
                                enqueued_at="2026-11-27T12:02:05Z", locale="en", timezone="UTC")
    delayed.enqueue_at_with_queue("critical", dt.datetime(2030, 1, 1, tzinfo=UTC), activejob.JOB_WRAPPER, second)
    assert dump(r) == fx["keys"]


@pytest.mark.parametrize("name", ["08b_activejob_scheduled.json", "09_delayed.json", "09b_delayed_released.json"])
def test_every_scheduler_key_ruby_wrote_is_one_keys_py_builds(name):
    fx = load_fixture(name)
    keys = fx["keys"]
    schedule = [int(ts) for ts, score in keys[K.delayed_queue_schedule]["value"] if ts == score]
    assert len(schedule) == len(keys[K.delayed_queue_schedule]["value"])  # member == score
    built = {K.queues, K.delayed_queue_schedule, LOCK} | {K.delayed(ts) for ts in schedule}
    for ts in schedule:
        for item in keys[K.delayed(ts)]["value"]:
            built.add(K.timestamps(item))
            assert K.strip(K.delayed(ts)) in keys[K.timestamps(item)]["value"]  # no namespace
    built.update(K.queue(q) for q in keys.get(K.queues, {}).get("value", []))
    assert set(keys) <= built, set(keys) - built
    assert LOCK == "resque:resque:resque_scheduler_master_lock"
    assert Keys("myns").scheduler_master_lock("pfx") == "myns:myns:pfx:resque_scheduler_master_lock"


# -- the client API ------------------------------------------------------------------------------

def test_resque_client_api_reads_and_removes_what_it_delayed(r, resque):
    when = dt.datetime(2030, 1, 1, tzinfo=UTC)
    assert resque.enqueue_at(when, "DelayedJob", "a", {"k": 1.0}) is True
    resque.enqueue_at(when + dt.timedelta(days=1), "DelayedJob", "a", {"k": 1.0})
    resque.enqueue_at_with_queue("low", when, "DelayedJob", "b")
    resque.enqueue_in_with_queue("low", 3600, "Py::Only", 7)
    assert resque.delayed_queue_size() == 4
    assert resque.delayed.delayed_queue_schedule_size() == 3
    assert resque.delayed_timestamp_peek(when, 0, 1) == [
        {"class": "DelayedJob", "args": ["a", {"k": 1.0}], "queue": "critical"}]
    assert [i["args"] for i in resque.delayed_timestamp_peek(1893456000, 0, 10)] == [["a", {"k": 1.0}], ["b"]]
    assert resque.delayed.delayed_timestamp_size(when) == 2
    # Ruby's remove_delayed matches the exact item bytes, wherever they are due.
    assert resque.remove_delayed("DelayedJob", "a", {"k": 1}) == 0  # 1 is not 1.0 on the wire
    assert resque.remove_delayed(delayed_jobs.delayed_job, "a", {"k": 1.0}) == 2
    assert not r.exists(K.timestamps('{"class":"DelayedJob","args":["a",{"k":1.0}],"queue":"critical"}'))
    assert resque.remove_delayed("DelayedJob", "b") == 0  # its item has queue "low"
    assert resque.remove_delayed("DelayedJob", "b", queue="low") == 1
    assert resque.delayed_queue_size() == 1
    assert not r.exists(K.queues)  # delaying touches no queue until the release


def test_a_time_already_passed_enqueues_at_once_as_ruby(r, resque):
    assert resque.enqueue_at(time.time() - 1, "DelayedJob", 1) is True
    resque.enqueue_at_with_queue("low", dt.datetime(2001, 1, 1, tzinfo=UTC), "Py::Only", "x")
    assert r.lrange(K.queue("critical"), 0, -1) == ['{"class":"DelayedJob","args":[1]}']
    assert r.lrange(K.queue("low"), 0, -1) == ['{"class":"Py::Only","args":["x"]}']
    assert r.smembers(K.queues) == {"critical", "low"}
    assert not r.exists(K.delayed_queue_schedule)


def test_a_queue_is_required_as_in_ruby(r, resque):
    with pytest.raises(NoQueueError, match="enqueue_at_with_queue"):
        resque.enqueue_in(60, "Py::Unregistered", 1)
    with pytest.raises(TypeError, match="datetime"):
        resque.enqueue_at(dt.date(2030, 1, 1), "DelayedJob")
    assert r.keys("*") == []


# -- releasing, in process -----------------------------------------------------------------------

def push_raw(r, ts, item):
    """An item exactly as another writer (Ruby, a fixture) left it."""
    r.rpush(K.delayed(ts), item)
    r.sadd(K.timestamps(item), K.strip(K.delayed(ts)))
    r.zadd(K.delayed_queue_schedule, {str(ts): ts})


def test_release_follows_enqueue_from_config(r, resque):
    push_raw(r, 100, '{"class":"DelayedJob","args":[1,1.0e+20,"é"],"queue":"low"}')
    push_raw(r, 100, '{"class":"DelayedJob","args":{"h":1}}')       # no queue: the @job's; a hash arg
    push_raw(r, 101, '{"class":"Py::Only","queue":""}')              # "" is a queue name in Ruby
    push_raw(r, 102, '{"class":"Py::Nobody","args":[1]}')            # no queue anywhere
    push_raw(r, 102, 'not json')
    push_raw(r, 2 ** 40, '{"class":"DelayedJob","args":["later"],"queue":"low"}')
    scheduler = Scheduler(resque.redis, K, batch_size=1, clock=at(200))
    assert scheduler.tick() == 5
    assert r.lrange(K.queue("low"), 0, -1) == ['{"class":"DelayedJob","args":[1,1.0e+20,"é"]}']
    assert r.lrange(K.queue("critical"), 0, -1) == ['{"class":"DelayedJob","args":[{"h":1}]}']
    assert r.lrange(K.queue(""), 0, -1) == ['{"class":"Py::Only","args":[]}']
    failures = [codec.decode(f) for f in r.lrange(K.failed, 0, -1)]
    assert [(f["exception"], f["payload"]) for f in failures] == [
        ("Resque::NoQueueError", '{"class":"Py::Nobody","args":[1]}'),
        ("Resque::Helpers::DecodeException", "not json")]
    assert "no queue for Py::Nobody" in failures[0]["error"] and failures[0]["backtrace"] == []
    # Only the future item is left, with its index; everything released is gone.
    assert sorted(r.keys("*")) == sorted([K.delayed(2 ** 40), K.delayed_queue_schedule, K.queues, K.failed,
                                          K.queue("low"), K.queue("critical"), K.queue(""), LOCK,
                                          K.timestamps('{"class":"DelayedJob","args":["later"],"queue":"low"}')])
    assert r.zrange(K.delayed_queue_schedule, 0, -1) == [str(2 ** 40)]
    assert r.get(LOCK) == scheduler.lock_value and 170 < r.ttl(LOCK) <= 180


def test_a_batch_changed_under_us_moves_nothing(r, resque, monkeypatch):
    push_raw(r, 100, '{"class":"DelayedJob","args":[1],"queue":"low"}')
    queue = DelayedQueue(resque.redis, K)
    stale = [b'{"class":"DelayedJob","args":[0],"queue":"low"}']
    monkeypatch.setattr(queue, "items", lambda ts, start=0, count=-1: stale)
    before = dump(r)
    assert queue.release_batch(100, 10, failure=lambda raw, exc: "") == -1
    assert dump(r) == before


def test_released_job_rules():
    def nowhere(name):
        return None

    assert released_job(b'{"class":"A","args":null,"queue":"q"}', nowhere) == ("q", '{"class":"A","args":[]}')
    assert released_job(b'{"class":"A","args":5,"queue":"q"}', nowhere) == ("q", '{"class":"A","args":[5]}')
    assert released_job(b'{"queue":"q","args":[1],"class":"A","x":1}', nowhere) == ("q", '{"class":"A","args":[1]}')
    with pytest.raises(UnreleasableItem, match="class"):
        released_job(b'[1]', nowhere)


# -- the resque-py scheduler process -------------------------------------------------------------

def test_fixture_09b_a_real_scheduler_releases_what_is_due(r, resque, start_scheduler):
    resque.enqueue_at(time.time() + 1, "DelayedJob", "due")
    resque.enqueue_at(dt.datetime(2030, 1, 1, tzinfo=UTC), "DelayedJob", "not yet")
    scheduler = start_scheduler("RESQUE_SCHEDULER_INTERVAL=0.1")
    wait_for(lambda: r.llen(K.queue("critical")), 10, "the due job on queue:critical")
    expected = load_fixture("09b_delayed_released.json")["keys"]
    expected[LOCK] = {"type": "string", "value": scheduler.lock_value, "ttl": 180}
    got = dump(r, with_ttl=True)
    assert 175 <= got[LOCK].pop("ttl") <= 180
    expected[LOCK].pop("ttl")
    assert got == expected
    assert scheduler.stop(signal.SIGTERM) == 0
    del expected[LOCK]  # a graceful stop gives the lock up
    assert dump(r) == expected


def test_fixture_08b_rails_set_wait_is_released_and_run_by_python(r, start_scheduler, start_worker):
    fx = load_fixture("08b_activejob_scheduled.json")
    for key, entry in fx["keys"].items():  # Ruby's keys exactly; delayed:1795780985 is now past
        {"list": lambda k, v: r.rpush(k, *v), "set": lambda k, v: r.sadd(k, *v),
         "zset": lambda k, v: r.zadd(k, {m: float(s) for m, s in v})}[entry["type"]](key, entry["value"])
    item = fx["keys"][K.delayed(1795780985)]["value"][0]
    scheduler = start_scheduler("RESQUE_SCHEDULER_INTERVAL=0.1")
    wait_for(lambda: r.llen(K.queue("critical")), 10, "the released ActiveJob payload")
    # Ruby drops the "queue" key and keeps the rest: compare with the fixture's own text.
    assert item.endswith(',"queue":"critical"}')
    assert r.lrange(K.queue("critical"), 0, -1) == [item[: -len(',"queue":"critical"}')] + "}"]
    assert r.exists(K.delayed(1893456000)) and not r.exists(K.delayed(1795780985))
    scheduler.stop()
    worker = start_worker("QUEUE=critical", "INTERVAL=0", require=os.path.join(ROOT, "tests", "delayed_aj_jobs.py"))
    assert worker.wait() == 0, worker.output
    assert r.lrange("test:ran", 0, -1) == [
        "AjJob:" + repr([['héllo ✓ "q"', 42, {"sym_key": 1, "str_key": [1, 2.5, None], "nested": {"a": True}}],
                         {"kw": "later"}])]
    assert r.llen(K.failed) == 0


def test_a_lock_held_by_another_scheduler_stops_ours_until_it_is_free(r, resque, start_scheduler):
    push_raw(r, 100, '{"class":"DelayedJob","args":["x"],"queue":"critical"}')
    r.set(LOCK, "rubyhost:4242", ex=180)  # a Ruby resque-scheduler leads
    scheduler = start_scheduler("RESQUE_SCHEDULER_INTERVAL=0.05", "VVERBOSE=1")
    scheduler.wait_for_line(r"held by rubyhost:4242")
    wait_for(lambda: sum("not the leader" in line for line in scheduler.lines) >= 3, 10,
             "three more polls")  # it kept polling, and still moved nothing
    assert r.llen(K.queue("critical")) == 0 and r.llen(K.delayed(100)) == 1
    assert r.get(LOCK) == "rubyhost:4242" and r.ttl(LOCK) > 170  # never extended by us
    r.delete(LOCK)  # the Ruby scheduler stopped (or its lock expired)
    wait_for(lambda: r.llen(K.queue("critical")), 10, "the release once the lock is ours")
    scheduler.wait_for_line(r"is the leader")
    assert r.get(LOCK) == scheduler.lock_value
    r.set(LOCK, "rubyhost:4343", ex=180)  # our lock expired and Ruby took over: not ours to delete
    assert scheduler.stop(signal.SIGINT) == 0
    assert r.get(LOCK) == "rubyhost:4343"


def test_kill_9_mid_release_neither_loses_nor_duplicates_a_delayed_job(r, resque, start_scheduler):
    """3,000 due timestamps of 2 jobs each, released one job per script call, while the
    scheduler is killed with SIGKILL at random moments (each restart first waits out the dead
    leader's lock, as Ruby's 180 s TTL would)."""
    rng = random.Random(6)
    total, kills = 6000, []
    pipe = resque.redis.pipeline(transaction=False)
    for i in range(total):
        ts = 1000 + i // 2
        item = delayed_item_text(i, "critical" if i % 3 else "low")
        pipe.rpush(K.delayed(ts), item)
        pipe.sadd(K.timestamps(item), K.strip(K.delayed(ts)))
        pipe.zadd(K.delayed_queue_schedule, {str(ts): ts})
    pipe.execute()

    def released():
        return r.llen(K.queue("critical")) + r.llen(K.queue("low"))

    for _ in range(6):
        before = released()
        scheduler = start_scheduler("RESQUE_SCHEDULER_INTERVAL=0.05", "DELAYED_REQUEUE_BATCH_SIZE=1")
        wait_for(lambda: released() > before, 15, "the scheduler to start releasing")
        time.sleep(rng.uniform(0.0, 0.15))  # a random point in the run, not a synchronisation
        scheduler.kill()
        kills.append(released())
        r.delete(LOCK)
    print("released at each kill:", kills)
    assert len([n for n in kills if 0 < n < total]) >= 4, f"too few kills landed mid-run: {kills}"
    scheduler = start_scheduler("RESQUE_SCHEDULER_INTERVAL=0.05")
    wait_for(lambda: not r.exists(K.delayed_queue_schedule), 30, "every timestamp released")
    scheduler.stop()
    jobs = r.lrange(K.queue("critical"), 0, -1) + r.lrange(K.queue("low"), 0, -1)
    assert len(jobs) == total
    assert sorted(codec.decode(j)["args"][0] for j in jobs) == list(range(total))
    assert r.lrange(K.queue("low"), 0, 2) == [f'{{"class":"DelayedJob","args":[{i}]}}' for i in (0, 3, 6)]
    assert r.keys(K.pattern("delayed*")) == [] and r.keys(K.pattern("timestamps:*")) == []


def delayed_item_text(i, queue):
    return f'{{"class":"DelayedJob","args":[{i}],"queue":"{queue}"}}'
