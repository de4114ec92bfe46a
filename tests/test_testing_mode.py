"""Issue 15, "Why" item 9 (requirement 7): ``resque_compat.testing`` runs jobs in-process in a
user's own test suite, exactly as the worker would: hooks, retries, ActiveJob payloads and
failure entries on the real Redis; and its pytest fixture.
"""
from __future__ import annotations

import json

import pytest

from resque_compat import DontPerform, hooks, job, testing
from resque_compat.testing import resque_testing  # noqa: F401  (the fixture under test)

RAN = []


@job("Testing::Add", queue="math")
def add(a, b):
    RAN.append(("add", a, b))
    if a + b == 13:
        raise ValueError("unlucky sum 13")


@job("Testing::Chain", queue="first")
def chain(n):
    from resque_compat import client

    RAN.append(("chain", n))
    if n:
        client.default().enqueue_to("second", "Testing::Chain", n - 1)


@job("Testing::Flaky", queue="flaky", retry_limit=3, backoff=[0])
def flaky(key):
    RAN.append(("flaky", key))
    if sum(1 for entry in RAN if entry == ("flaky", key)) < 3:
        raise ConnectionError("try again")


@job("Testing::Guarded", queue="math")
def guarded(n):
    RAN.append(("guarded", n))


@hooks.before_perform(guarded)
def only_even(n):
    if n % 2:
        raise DontPerform("odd")


@job("Testing::Greet")
def greet(name, greeting="hello"):
    from resque_compat import activejob

    RAN.append(("greet", name, greeting, activejob.current().executions))


@pytest.fixture
def tester(redis_url, monkeypatch, request):
    monkeypatch.setenv(testing.URL_VARIABLE, redis_url)
    RAN.clear()
    return request.getfixturevalue("resque_testing")


def test_drain_runs_jobs_and_records_failures_as_the_worker_does(tester, r):
    tester.resque.enqueue_to("math", "Testing::Add", 1, 2)
    tester.resque.enqueue_to("math", "Testing::Add", 6, 7)
    tester.resque.enqueue_to("math", "Nobody::Registered")
    result = tester.drain("math")
    assert (result.processed, result.failed, result.exit_code) == (3, 2, 0)
    assert RAN == [("add", 1, 2), ("add", 6, 7)]
    assert [f["exception"] for f in result.failures] == ["ValueError", "JobNotRegistered"]
    entry = json.loads(r.lindex("resque:failed", 0))
    assert entry["payload"] == {"class": "Testing::Add", "args": [6, 7]} and entry["queue"] == "math"
    assert entry["error"] == "unlucky sum 13" and entry["worker"].endswith(":math:0")
    assert r.get("resque:stat:processed") == "3" and r.get("resque:stat:failed") == "2"
    assert r.llen("resque:queue:math") == 0 and r.scard("resque:workers") == 0  # unregistered


def test_hooks_and_retries_apply(tester, r):
    for n in (1, 2):
        tester.resque.enqueue_to("math", "Testing::Guarded", n)
    tester.resque.enqueue_to("flaky", "Testing::Flaky", "k")
    result = tester.drain()
    assert ("guarded", 1) not in RAN and ("guarded", 2) in RAN
    assert RAN.count(("flaky", "k")) == 3  # failed twice, retried at once (backoff 0), passed
    assert result.failed == 2 and r.llen("resque:failed") == 2


def test_activejob_payloads_are_decoded(tester):
    tester.resque.enqueue_active_job("Testing::Greet", "ann", queue="mailers", greeting="hi")
    assert tester.drain("mailers").failed == 0
    assert RAN == [("greet", "ann", "hi", 1)]


def test_inline_runs_each_enqueue_and_what_it_enqueues(tester, r):
    with tester.inline() as results:
        tester.resque.enqueue_to("first", "Testing::Chain", 2)
        assert RAN == [("chain", 2), ("chain", 1), ("chain", 0)]
        tester.resque.enqueue_to("math", "Testing::Add", 10, 3)
    assert [(x.processed, x.failed) for x in results] == [(3, 0), (1, 1)]
    assert results[1].failures[0]["error"] == "unlucky sum 13"
    tester.resque.enqueue_to("math", "Testing::Add", 0, 0)  # outside the block: only queued
    assert r.llen("resque:queue:math") == 1


def test_fixture_needs_a_url_naming_a_db_it_may_empty(monkeypatch):
    monkeypatch.delenv(testing.URL_VARIABLE, raising=False)
    with pytest.raises(testing.ConfigurationError, match="RESQUE_TESTING_URL"):
        testing._tester_from_environment()


def test_fixture_empties_only_its_namespace(redis_url, r, monkeypatch, request):
    r.set("resque:stat:processed", "5")
    r.set("other:stat:processed", "5")
    monkeypatch.setenv(testing.URL_VARIABLE, redis_url)
    tester = request.getfixturevalue("resque_testing")
    assert tester.resque.redis.get("resque:stat:processed") is None
    assert r.get("other:stat:processed") == "5"
