"""``Worker.work_one_job`` in-process on the real Redis: one job's whole outcome (WIRE §6.7).

A Worker, its Fetcher and a Store on the test DB, no subprocess. With INTERVAL=0 the fetcher
hands a slot None once the queue is empty, so ``work_one_job()`` returning False is the event
that says every ended job was recorded (its ``done_working`` rides the trip that found nothing).
"""
from __future__ import annotations

import json

import gevent
import pytest
from gevent.event import Event

from resque_compat import hooks, job
from resque_compat.errors import DontPerform, JobKilled
from resque_compat.runtime.fetcher import Fetcher
from resque_compat.runtime.worker import Worker
from resque_compat.store.store import Store, connect
from resque_compat.wire.keys import Keys
from resque_compat.wire.queues import QueueList
from tests.conftest import REDIS_URL

WID = "testhost:4242:critical:0"
K = Keys("resque")
RECORDS = []  # what the jobs below saw while they ran
STORE = {}    # what the jobs reach: the slot's "store" and "worker", and "busy" (set when Busy starts)


@job("JobPath::Ok", queue="critical")
def ok(*args):
    RECORDS.append(("ran", list(args)))


@job("JobPath::Fail", queue="critical")
def fail(*args):
    raise RuntimeError(f"failed with {args!r}")


@job("JobPath::Slow", queue="critical")
def slow(seconds):
    gevent.sleep(seconds)


@job("JobPath::Peek", queue="critical")
def peek():
    RECORDS.append(("record", STORE["store"].redis.get(K.worker(WID))))


@job("JobPath::Busy", queue="critical")
def busy():
    STORE["busy"].set()
    gevent.sleep(30)


@job("JobPath::KillMeLater", queue="critical")
def kill_me_later():
    """USR1 picks this busy slot; the kill lands a hub turn later, after the body returned."""
    assert STORE["worker"].kill_job(JobKilled(4242))
    RECORDS.append(("ran", ["kill me later"]))


@job("JobPath::Skipped", queue="critical")
def skipped(reason):
    RECORDS.append(("ran", [reason]))


@hooks.before_perform(skipped)
def refuse(reason):
    RECORDS.append(("refused", [reason]))
    raise DontPerform(reason)


class Recorder:
    """The metrics interface the worker calls per job (the recorder itself is tested in
    test_metrics.py); here only which outcome it was told."""

    def __init__(self):
        self.ended = []

    def job_ended(self, job, started, ended, failed):
        assert ended >= started
        self.ended.append((job.class_name, failed))


@pytest.fixture
def slot(r):
    RECORDS.clear()
    store = STORE["store"] = Store(connect(REDIS_URL, max_connections=2), K)
    fetcher = Fetcher(store, QueueList(["critical"]), interval=0, min_interval=0, max_interval=0,
                      backoff_interval=0, poll_cap=0)
    loop = gevent.spawn(fetcher.run)
    worker = STORE["worker"] = Worker(WID, fetcher, job_timeout=0.0, metrics=Recorder())
    yield worker
    fetcher.close()
    loop.get(timeout=5)
    store.redis.connection_pool.disconnect()


def push(r, *items):
    r.sadd(K.queues, "critical")
    r.rpush(K.queue("critical"), *items)


def work_all(worker):
    """Run jobs until the queue is empty; returns how many ran."""
    count = 0
    while worker.work_one_job():
        count += 1
    return count


def failures(r):
    return [json.loads(e) for e in r.lrange(K.failed, 0, -1)]


def test_a_job_that_succeeds_is_counted_and_its_record_removed(r, slot):
    push(r, '{"class":"JobPath::Ok","args":[1,"two"]}')
    assert work_all(slot) == 1
    assert RECORDS == [("ran", [1, "two"])]
    assert r.get(K.processed) == "1" and r.get(K.worker_processed(WID)) == "1"
    assert not r.exists(K.failed, K.failed_count, K.worker(WID))
    assert (slot.processed, slot.failed, slot.job) == (1, 0, None)
    assert slot.metrics.ended == [("JobPath::Ok", False)]


def test_the_worker_record_holds_the_payload_while_the_job_runs(r, slot):
    push(r, '{"class":"JobPath::Peek","args":[]}')
    assert work_all(slot) == 1
    [(what, record)] = RECORDS
    assert what == "record" and record.endswith(b',"payload":{"class":"JobPath::Peek","args":[]}}')
    assert json.loads(record)["queue"] == "critical"
    assert not r.exists(K.worker(WID))


def test_a_failing_job_writes_rubys_failure_entry_and_both_stats(r, slot):
    push(r, '{"class":"JobPath::Fail","args":["x"]}')
    assert work_all(slot) == 1
    [entry] = failures(r)
    assert list(entry) == ["failed_at", "payload", "exception", "error", "backtrace", "worker", "queue"]
    assert entry["payload"] == {"class": "JobPath::Fail", "args": ["x"]}
    assert (entry["exception"], entry["error"]) == ("RuntimeError", "failed with ('x',)")
    assert entry["backtrace"][0].endswith("in `fail'")
    assert not any("/resque_compat/" in line for line in entry["backtrace"])
    assert (entry["worker"], entry["queue"]) == (WID, "critical")
    assert r.get(K.processed) == r.get(K.failed_count) == "1"
    assert r.get(K.worker_processed(WID)) == r.get(K.worker_failed(WID)) == "1"
    assert (slot.processed, slot.failed) == (1, 1)
    assert slot.metrics.ended == [("JobPath::Fail", True)]


def test_dont_perform_skips_the_job_without_a_failure_but_counts_it(r, slot):
    push(r, '{"class":"JobPath::Skipped","args":["closed"]}')
    assert work_all(slot) == 1
    assert RECORDS == [("refused", ["closed"])]
    assert r.get(K.processed) == "1" and not r.exists(K.failed, K.failed_count)
    assert slot.metrics.ended == [("JobPath::Skipped", False)]


@pytest.mark.parametrize("raw, exception, words", [
    ("garbage{", "PayloadError", "not valid JSON"),
    ('{"class":"JobPath::Ok","args":5}', "PayloadError", '"args"'),
    ('{"class":"Not::Registered","args":[]}', "JobNotRegistered", "@job('Not::Registered')"),
])
def test_bad_payloads_and_unknown_classes_are_failures_and_the_slot_goes_on(r, slot, raw, exception, words):
    push(r, raw, '{"class":"JobPath::Ok","args":["after"]}')
    assert work_all(slot) == 2
    [entry] = failures(r)
    assert entry["exception"] == exception and words in entry["error"]
    assert entry["payload"] == (json.loads(raw) if raw.startswith("{") else raw)
    assert RECORDS == [("ran", ["after"])]
    assert r.get(K.processed) == "2" and r.get(K.failed_count) == "1"


def test_job_timeout_stops_the_job_and_records_it(r, slot):
    slot.job_timeout = 0.05
    push(r, '{"class":"JobPath::Slow","args":[30]}')
    assert work_all(slot) == 1
    [entry] = failures(r)
    assert entry["exception"] == "JobTimeout" and "0.05s time limit" in entry["error"]
    assert r.get(K.processed) == r.get(K.failed_count) == "1"


def test_a_kill_stops_the_job_the_slot_runs(r, slot):
    push(r, '{"class":"JobPath::Busy","args":[]}', '{"class":"JobPath::Ok","args":["after"]}')
    STORE["busy"] = Event()
    slot.greenlet = gevent.spawn(slot.work)
    assert STORE["busy"].wait(5)
    assert slot.kill_job(JobKilled(4242))
    slot.greenlet.get(timeout=5)  # the slot went on, ran the next job and found the queue empty
    [entry] = failures(r)
    assert (entry["exception"], entry["backtrace"]) == ("Resque::DirtyExit", [])
    assert entry["error"] == "Child process received unhandled signal pid 4242 SIGKILL (signal 9)"
    assert RECORDS == [("ran", ["after"])]
    assert r.get(K.processed) == "2" and not r.exists(K.failed_count)  # DirtyExit: never counted
    assert not slot.kill_job(JobKilled(4242))  # no job: nothing to kill


def test_a_kill_landing_after_its_job_ended_leaves_the_slot_and_the_next_job_alone(r, slot):
    """The kill lands while the slot already waits for its next job. Landing there used to
    abandon the slot's waiting entry, so the job the next trip recorded for it never ran (1 of
    10,000 lost under USR1 x10); now the landing sees the job it was meant for has ended."""
    push(r, '{"class":"JobPath::KillMeLater","args":[]}', '{"class":"JobPath::Ok","args":["next"]}')
    slot.greenlet = gevent.spawn(slot.work)
    slot.greenlet.get(timeout=5)
    assert RECORDS == [("ran", ["kill me later"]), ("ran", ["next"])]
    assert r.get(K.processed) == "2" and not r.exists(K.failed, K.failed_count, K.queue("critical"))
    assert (slot.processed, slot.failed) == (2, 0)
