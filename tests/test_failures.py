"""Failure backends and failure operations against Ruby's own bytes.

* Backends end to end: real ``resque-py work`` processes run fixture 10's scenario under each
  FAILURE_BACKEND; the keyspace must be Ruby's (ids and times normalised, backtraces masked).
* ``multiple``: the callback sees each failure after it is in Redis; one that raises is logged.
* Operations (WIRE §4.5): requeue from the fixtures' "before" state must give the fixtures'
  "after" keyspace byte for byte (05, 10b, 12b); the rest run as one contract on both layouts.
"""
from __future__ import annotations

import calendar
import json
import re
import time

import pytest
import redis

from resque_compat.errors import ConfigurationError, NoQueueError
from resque_compat.failures import (
    BadFailureEntry,
    FailureLookupError,
    FailureNotFound,
    Failures,
    notifier_for,
)
from resque_compat.store.store import Store
from resque_compat.wire import codec
from resque_compat.wire.keys import Keys
from tests.conftest import REDIS_URL
from tests.keyspace import dump, load_fixture, load_keys, normalize

FAIL_JOB_ERROR = "Bööm – ünïcödé failure ✗ \"quoted\" 日本語 😀"
BACKTRACE = re.compile(r'"backtrace":\[(?:"(?:[^"\\]|\\.)*",?)*\]')


def ruby_job(cls, *args):
    return codec.encode_job(cls, args)


def push(r, queue, item):
    r.sadd("resque:queues", queue)
    r.rpush("resque:queue:" + queue, item)


def mask_backtraces(keys):
    """Ruby's frames are Ruby's and ours are Python's: compare every other byte exactly."""
    def fix(value):
        if isinstance(value, list):
            return [fix(v) for v in value]
        return BACKTRACE.sub('"backtrace":["<frames>"]', value) if isinstance(value, str) else value
    return {k: {"type": v["type"], "value": fix(v["value"])} for k, v in keys.items()}


def utc_epoch(text):
    """``2026/11/27 12:01:37`` (UTC) as epoch seconds: the clock a fixture's requeue ran at."""
    return calendar.timegm(time.strptime(text, "%Y/%m/%d %H:%M:%S"))


@pytest.fixture
def raw_client(r):
    """Bytes in, bytes out, as the package's own clients are."""
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    client.close()


@pytest.fixture
def local_tz(monkeypatch):
    """Run part of a test in another local time zone (Ruby's %Z comes from TZ)."""
    def use(zone):
        monkeypatch.setenv("TZ", zone)
        time.tzset()
    yield use
    monkeypatch.undo()
    time.tzset()


# -- backends, end to end with real workers (fixture 10) ----------------------------------------

def fixture_10_as(backend):
    """Fixture 10 as each backend lays it out: Ruby's redis_multi_queue capture itself, or the
    same entries in one ``failed`` list in processing order (critical first) for redis/multiple."""
    fx = load_fixture("10_failed_multi_queue.json")
    keys = dict(fx["keys"])
    if backend != "redis_multi_queue":
        entries = keys.pop("resque:critical_failed")["value"] + keys.pop("resque:low_failed")["value"]
        del keys["resque:failed_queues"]
        keys["resque:failed"] = {"type": "list", "value": entries}
    return mask_backtraces(normalize(keys, [fx["worker_id"]]))


@pytest.mark.parametrize("backend", ["redis_multi_queue", "redis", "multiple"])
def test_worker_failures_land_where_each_backend_puts_them_like_fixture_10(r, run_worker, backend):
    push(r, "critical", ruby_job("FailJob", "multi", 1))
    push(r, "low", ruby_job("FailJob", "multi-low", 2))
    env = {"RESQUE_PY_FAILURE_BACKEND" if backend == "multiple" else "FAILURE_BACKEND": backend}
    if backend == "multiple":
        env["FAILURE_CALLBACK"] = "tests.failure_callbacks:record"
    w = run_worker("QUEUES=critical,low", "INTERVAL=0", env=env)
    assert w.code == 0, w.output
    r.delete("resque:pruning_dead_workers_in_progress", "test:callback")  # as the capture did
    wid = json.loads(r.lrange("resque:critical_failed" if backend == "redis_multi_queue"
                              else "resque:failed", 0, 0)[0])["worker"]
    assert mask_backtraces(normalize(dump(r), [wid])) == fixture_10_as(backend)


def test_multiple_calls_back_with_each_failure_after_it_is_recorded(r, run_worker):
    push(r, "critical", ruby_job("FailJob", "report me", 7))
    push(r, "critical", ruby_job("OkJob", 1))
    w = run_worker("QUEUES=critical", "INTERVAL=0", env={
        "RESQUE_PY_FAILURE_BACKEND": "multiple", "FAILURE_CALLBACK": "tests.failure_callbacks:record"})
    assert w.code == 0, w.output
    [entry] = r.lrange("resque:failed", 0, -1)
    [call] = [json.loads(c) for c in r.lrange("test:callback", 0, -1)]
    assert call["failure"] == json.loads(entry)
    assert list(call["failure"]) == ["failed_at", "payload", "exception", "error", "backtrace",
                                     "worker", "queue"]
    assert call["failure"]["error"] == FAIL_JOB_ERROR
    assert call["recorded_when_called"] is True
    assert r.lrange("test:ran", 0, -1) == ["(1,)"]


def test_a_callback_that_raises_is_logged_and_the_worker_keeps_working(r, run_worker):
    push(r, "critical", ruby_job("FailJob", 1))
    push(r, "critical", ruby_job("FailJob", 2))
    push(r, "critical", ruby_job("OkJob", 3))
    w = run_worker("QUEUES=critical", "INTERVAL=0", env={
        "RESQUE_PY_FAILURE_BACKEND": "multiple", "FAILURE_CALLBACK": "tests.failure_callbacks:explode"})
    assert w.code == 0, w.output
    assert r.llen("resque:failed") == 2 and r.llen("test:callback") == 2
    assert r.lrange("test:ran", 0, -1) == ["(3,)"]
    assert r.get("resque:stat:processed") == "3" and r.get("resque:stat:failed") == "2"
    assert w.output.count("FAILURE_CALLBACK tests.failure_callbacks:explode raised") == 2
    assert "the error tracker is down" in w.output


@pytest.mark.parametrize("backend,callback,message", [
    ("multiple", None, "RESQUE_PY_FAILURE_BACKEND=multiple needs FAILURE_CALLBACK=module:function"),
    ("multiple", "tests.failure_callbacks", "FAILURE_CALLBACK must be module:function"),
    ("multiple", "tests.no_such_module:f", "cannot import tests.no_such_module"),
    ("multiple", "tests.failure_callbacks:not_callable", "has no function 'not_callable'"),
    ("redis", "tests.failure_callbacks:record", "set RESQUE_PY_FAILURE_BACKEND=multiple too"),
])
def test_failure_callback_misconfiguration_is_a_clear_error(backend, callback, message):
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        notifier_for(backend, callback)


def test_misconfigured_callback_stops_the_worker_at_start_with_exit_2(r, start_worker):
    w = start_worker("QUEUES=critical", "INTERVAL=0", env={"RESQUE_PY_FAILURE_BACKEND": "multiple"})
    assert w.wait() == 2
    assert "resque-py: RESQUE_PY_FAILURE_BACKEND=multiple needs FAILURE_CALLBACK" in w.output
    assert r.smembers("resque:workers") == set()


def test_dirty_exit_entries_follow_the_multi_queue_backend(r, raw_client):
    """Ruby's unregister_worker fails the held job through the backend: <queue>_failed."""
    entry = '{"failed_at":"x","payload":{},"exception":"Resque::DirtyExit"}'
    Store(raw_client, Keys(), "redis_multi_queue").unregister_workers(
        ["vm:1:low"], [entry], failure_queues=["low"])
    assert r.lrange("resque:low_failed", 0, -1) == [entry]
    assert r.smembers("resque:failed_queues") == {"low_failed"}
    assert not r.exists("resque:failed")


# -- requeue, byte for byte against Ruby ---------------------------------------------------------

def test_requeue_matches_fixture_05(r, raw_client, local_tz):
    local_tz("Etc/UTC")
    fx = load_fixture("05_failure_requeued.json")
    before = {k: v for k, v in fx["keys"].items() if k != "resque:queue:critical"}
    before["resque:failed"] = {"type": "list", "value": [fx["failed_entry_before_requeue"]]}
    load_keys(r, before)
    failures = Failures(raw_client, Keys(), "redis", clock=lambda: utc_epoch("2026/11/27 12:01:37"))
    assert failures.requeue(0) == "2026/11/27 12:01:37 UTC"
    assert dump(r) == fx["keys"]


def test_requeue_matches_fixture_10b_multi_queue_without_zone(r, raw_client, local_tz):
    local_tz("Etc/UTC")
    load_keys(r, load_fixture("10_failed_multi_queue.json")["keys"])
    failures = Failures(raw_client, Keys(), "redis_multi_queue",
                        clock=lambda: utc_epoch("2026/11/27 12:02:15"))
    assert failures.requeue(0, "critical") == "2026/11/27 12:02:15"
    assert dump(r) == load_fixture("10b_failed_multi_queue_requeued.json")["keys"]


def test_requeue_matches_fixture_12b_in_kolkata(r, raw_client, local_tz):
    local_tz("Asia/Kolkata")
    fx = load_fixture("12b_timezone_failed_requeued.json")
    before = {k: v for k, v in fx["keys"].items() if k != "resque:queue:critical"}
    [after] = fx["keys"]["resque:failed"]["value"]
    before["resque:failed"] = {"type": "list", "value": [re.sub(r',"retried_at":"[^"]*"', "", after)]}
    load_keys(r, before)
    failures = Failures(raw_client, Keys(), "redis", clock=lambda: utc_epoch("2026/11/27 12:02:22"))
    assert failures.requeue(0) == "2026/11/27 17:32:22 IST"
    assert dump(r) == fx["keys"]


def test_requeue_again_rewrites_retried_at_in_place_and_pushes_again(r, raw_client):
    fx = load_fixture("05_failure_requeued.json")
    load_keys(r, {"resque:failed": {"type": "list", "value": [fx["failed_entry_before_requeue"]]}})
    clock = iter([1000.0, 2000.0])
    failures = Failures(raw_client, Keys(), "redis", clock=lambda: next(clock))
    first, second = failures.requeue(0), failures.requeue(0)
    assert first != second
    entry = json.loads(r.lindex("resque:failed", 0))
    assert list(entry)[-1] == "retried_at" and entry["retried_at"] == second
    assert r.lrange("resque:queue:critical", 0, -1) == ['{"class":"FailJob","args":["retry me",{"k":[1,2]}]}'] * 2


def test_requeue_without_queue_writes_retried_at_then_raises_like_ruby(r, raw_client):
    r.rpush("resque:failed", '{"failed_at":"2026/11/27 12:01:36 UTC","payload":{"class":"X","args":[1]},'
                             '"exception":"E","error":"e","backtrace":[],"worker":"vm:1:q"}')
    with pytest.raises(NoQueueError, match="No queue could be inferred for class X"):
        Failures(raw_client, Keys(), "redis", clock=lambda: 0.0).requeue(0)
    assert json.loads(r.lindex("resque:failed", 0))["retried_at"] == codec.failed_at(0.0)
    assert r.keys("resque:queue*") == []


def test_requeue_refuses_bad_entries_and_missing_indexes_without_writing(r, raw_client):
    r.rpush("resque:failed", "not json")
    failures = Failures(raw_client, Keys(), "redis")
    with pytest.raises(BadFailureEntry, match="resque-py failed remove 0"):
        failures.requeue(0)
    with pytest.raises(FailureNotFound, match="no failure at index 5 in failed"):
        failures.requeue(5)
    assert r.lrange("resque:failed", 0, -1) == ["not json"]


# -- the operations contract, on both layouts -----------------------------------------------------

def entry(queue, n, retried=False):
    data = {"failed_at": "2026/11/27 12:00:00 UTC", "payload": {"class": "FailJob", "args": [n]},
            "exception": "RuntimeError", "error": f"boom {n}", "backtrace": [], "worker": "vm:1:a",
            "queue": queue}
    if retried:
        data["retried_at"] = "2026/11/27 12:05:00 UTC"
    return codec.encode(data)


#: (queue, n, retried) in failure order: a mix of queues, some already retried.
SEEDED = [("critical", 0, False), ("low", 1, True), ("critical", 2, True), ("low", 3, False),
          ("critical", 4, False)]


@pytest.fixture(params=["redis", "redis_multi_queue"])
def layout(request, r, raw_client):
    """The same five failures written the way ``backend`` writes them."""
    backend = request.param
    store = Store(raw_client, Keys(), backend)
    for queue, n, retried in SEEDED:
        store.unregister_workers([], [entry(queue, n, retried)], failure_queues=[queue])
    return Failures(raw_client, Keys(), backend)


def failed_ns(failures, queue=None):
    return [json.loads(f.raw)["payload"]["args"][0] for f in failures.entries(queue)]


def index_of(failures, n):
    """(index, queue) of failure ``n`` as the operator would name it on this layout."""
    for f in failures.entries():
        if f.data["payload"]["args"][0] == n:
            return f.index, (f.queue if failures.multi else None)
    raise AssertionError(n)


def test_count_list_and_show(layout):
    assert layout.count() == 5
    assert layout.count("low") == 2 and layout.count("critical") == 3
    assert failed_ns(layout, "low") == [1, 3]
    assert [f.data["payload"]["args"][0] for f in layout.list(1, 2, "critical")] == [2, 4]
    assert len(layout.list(0, -1)) == 5 and layout.list(10, 5) == []
    index, queue = index_of(layout, 3)
    shown = layout.show(index, queue)
    assert shown.raw == entry("low", 3) and shown.queue == "low" and shown.class_name == "FailJob"
    assert shown.as_json() == {"index": index, "list": shown.list_name, "entry": json.loads(entry("low", 3))}


def test_index_must_name_one_list(layout):
    if layout.multi:
        with pytest.raises(FailureLookupError, match="give the job queue"):
            layout.show(0)
    else:
        with pytest.raises(FailureLookupError, match="leave out --queue"):
            layout.show(0, "low")


def test_remove_is_by_index_and_later_indexes_move_down(layout, r):
    index, queue = index_of(layout, 2)
    layout.remove(index, queue)
    assert sorted(failed_ns(layout)) == [0, 1, 3, 4]
    assert "" not in [f.raw for f in layout.entries()]
    after, _ = index_of(layout, 4)
    assert after == (1 if layout.multi else 3)
    with pytest.raises(FailureNotFound):
        layout.remove(99, queue)


def test_remove_takes_the_entry_at_the_index_even_among_identical_ones(r, raw_client):
    r.rpush("resque:failed", entry("a", 1), entry("a", 1), entry("b", 2))
    Failures(raw_client, Keys(), "redis").remove(1)
    assert r.lrange("resque:failed", 0, -1) == [entry("a", 1), entry("b", 2)]


def test_clear_retried_removes_only_retried_entries(layout):
    assert layout.clear_retried() == 2
    assert sorted(failed_ns(layout)) == [0, 3, 4]
    assert all(f.get("retried_at") is None for f in layout.entries())


def test_requeue_queue_and_requeue_all(layout, r):
    report = layout.requeue_queue("low")
    assert (report.requeued, report.problems) == (2, ())
    assert r.lrange("resque:queue:low", 0, -1) == [ruby_job("FailJob", 1), ruby_job("FailJob", 3)]
    assert not r.exists("resque:queue:critical")
    report = layout.requeue_all()
    assert report.requeued == 5
    assert r.llen("resque:queue:critical") == 3 and r.llen("resque:queue:low") == 4
    assert all(f.get("retried_at") for f in layout.entries())
    assert layout.count() == 5  # retried failures stay in their lists, as in Ruby


def test_requeue_all_reports_entries_it_cannot_retry_and_retries_the_rest(r, raw_client):
    r.rpush("resque:failed", entry("a", 1), "garbage", entry("b", 2))
    report = Failures(raw_client, Keys(), "redis").requeue_all()
    assert report.requeued == 2
    assert len(report.problems) == 1 and report.problems[0].startswith("failed[1]: ")
    assert r.lrange("resque:queue:a", 0, -1) + r.lrange("resque:queue:b", 0, -1) == [
        ruby_job("FailJob", 1), ruby_job("FailJob", 2)]


def test_clear_one_queue_then_everything(layout, r):
    assert layout.clear("critical") == 3
    assert failed_ns(layout) == [1, 3]
    assert layout.clear() == 2
    assert layout.count() == 0
    assert r.keys("resque:*failed") == []


@pytest.mark.parametrize("value", ["multiple", "multiple_with_retry_suppression", "sentry"])
def test_failure_backend_keeps_only_rubys_values_and_says_what_to_use(r, start_worker, value):
    """Ruby Resque 3.0 reads FAILURE_BACKEND too: any other value loses its failures silently."""
    w = start_worker("QUEUES=critical", "INTERVAL=0", env={"FAILURE_BACKEND": value})
    assert w.wait() == 2
    [line] = [ln for ln in w.output.splitlines() if "FAILURE_BACKEND" in ln]
    assert f"FAILURE_BACKEND={value} is refused: Ruby Resque workers read FAILURE_BACKEND too" in line
    hint = (f"use RESQUE_PY_FAILURE_BACKEND={value} instead" if value != "sentry"
            else "use redis or redis_multi_queue, or RESQUE_PY_FAILURE_BACKEND for multiple or "
                 "multiple_with_retry_suppression")
    assert line.endswith(hint)
    assert r.smembers("resque:workers") == set()


def test_resque_py_failure_backend_wins_over_failure_backend():
    from resque_compat.settings import Settings

    both = Settings.load(environ={"FAILURE_BACKEND": "redis_multi_queue",
                                  "RESQUE_PY_FAILURE_BACKEND": "multiple_with_retry_suppression"})
    assert both.failure_backend == "multiple_with_retry_suppression"
    assert Settings.load(environ={"FAILURE_BACKEND": "redis_multi_queue"}).failure_backend == "redis_multi_queue"
    assert notifier_for("multiple_with_retry_suppression", None) is None  # the callback is optional
