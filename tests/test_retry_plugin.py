"""resque-retry completed, against its Ruby fixtures (fixtures/ruby-plugins/retry_*): per-exception
delays, fatal and ignored exceptions, expire_retry_key_after and MultipleWithRetrySuppression,
run by real ``resque-py work`` processes (and ``resque-py scheduler`` to release a Ruby retry)."""
from __future__ import annotations

import json
import os
import shlex
import time

import pytest

from resque_compat.errors import RegistryError
from resque_compat.registry import JobSpec
from resque_compat.retry import RetryPolicy
from resque_compat.wire import codec
from tests.conftest import ROOT, wait_for
from tests.keyspace import dump
from tests.plugin_fixtures import assert_ttls, load_plugin_fixture, load_plugin_state, plugin_state
from tests.test_scheduler import start_scheduler  # noqa: F401  (fixture)

JOBS = os.path.join(ROOT, "tests", "retry_plugin_jobs.py")
SUPPRESSION = {"RESQUE_PY_FAILURE_BACKEND": "multiple_with_retry_suppression"}


class NetworkError(Exception):
    pass


class FlakyNetworkError(NetworkError):
    pass


class RubyTimeout(Exception):
    ruby_name = "Timeout::Error"


def policy(**options):
    return RetryPolicy.of(JobSpec(name="J", queue="q", target=None, perform=lambda *a: None,
                                  origin="test", options=options))


def test_retry_exceptions_mapping_gives_the_most_specific_delay_per_attempt():
    p = policy(retry_exceptions={Exception: 1, NetworkError: 30, "Timeout::Error": [5, 10]})
    assert p.limit == 2  # the longest delay list, as resque-retry's default retry_limit
    assert p.delay(0, FlakyNetworkError()) == 30   # its superclass NetworkError's, not Exception's
    assert p.delay(0, ValueError()) == 1
    assert [p.delay(n, RubyTimeout()) for n in (0, 1, 2, -1)] == [5, 10, 10, 10]
    assert p.retries(FlakyNetworkError()) and p.retries(RubyTimeout())
    assert not policy(retry_exceptions={NetworkError: 3}).retries(ValueError())
    assert policy(retry_exceptions={NetworkError: 3}).delay(0, NetworkError()) == 3
    assert policy(retry_delay=7).delay(0, NetworkError()) == 7


def test_fatal_ignore_and_their_checks():
    p = policy(fatal_exceptions=["FatalError"], ignore_exceptions=[NetworkError])
    fatal = type("FatalError", (Exception,), {})
    assert not p.retries(fatal()) and p.retries(NetworkError())
    assert p.ignored(NetworkError()) and not p.ignored(FlakyNetworkError())  # the exact class only
    with pytest.raises(RegistryError, match="can't give both fatal_exceptions and retry_exceptions"):
        policy(fatal_exceptions=[fatal], retry_exceptions=[NetworkError])
    with pytest.raises(RegistryError, match="expire_retry_key_after"):
        policy(expire_retry_key_after="1h")
    with pytest.raises(RegistryError, match=r"retry_exceptions=\{.*\[5, 'x'\]"):
        policy(retry_exceptions={NetworkError: [5, "x"]})


def worker(start_worker, env=SUPPRESSION):
    return start_worker("QUEUE=retry", "INTERVAL=0.1", env=env, require=JOBS)


def test_backoff_retrying_is_rubys_retry_01_byte_for_byte(r, resque, start_worker):
    fx = load_plugin_fixture("retry_01_backoff_retrying.json")
    start = int(time.time())
    # Enqueued "from Rails": the bytes of the fixture's own RPUSH (its MONITOR trace).
    sadd, rpush = (shlex.split(command) for command in fx["redis_commands"][:2])
    assert sadd[0] == "sadd" and rpush[0] == "rpush"
    assert rpush[2] == codec.encode_job("BackoffJob", ["sms", 17])  # what Python's enqueue writes
    r.sadd(sadd[1], sadd[2])
    r.rpush(rpush[1], rpush[2])
    w = worker(start_worker)
    wait_for(lambda: r.get("resque:stat:processed") == "2", 20, "two failed attempts")
    assert plugin_state(dump(r)) == plugin_state(fx["keys"]), w.output
    assert_ttls(r, fx["keys"])
    [ts] = [int(t) for t in r.zrange("resque:delayed_queue_schedule", 0, -1)]
    assert start + 3 <= ts <= int(time.time()) + 3
    assert r.llen("resque:failed") == 0


def test_a_retry_counted_by_ruby_is_finished_by_python_like_retry_02(r, start_worker, start_scheduler):
    """Ruby ran attempts 1 and 2 (retry_01); our scheduler releases the retry, our worker runs
    attempt 3, gives up, and leaves what Ruby's worker left (retry_02)."""
    load_plugin_state(r, load_plugin_fixture("retry_01_backoff_retrying.json")["keys"])
    scheduler = start_scheduler("RESQUE_SCHEDULER_INTERVAL=0.1")
    w = worker(start_worker)
    wait_for(lambda: r.llen("resque:failed") == 1, 20, "the final failure")
    scheduler.kill()
    fx = load_plugin_fixture("retry_02_backoff_gave_up.json")
    assert plugin_state(dump(r)) == plugin_state(fx["keys"]), w.output


@pytest.mark.parametrize("name, enqueues", [
    ("retry_03_exception_hash_delays.json", [("HashDelayJob", "order-17", "flaky"),
                                             ("HashDelayJob", "order-18", "timeout")]),
    ("retry_04_fatal_exceptions.json", [("FatalJob", "fatal"), ("FatalJob", "net")]),
    ("retry_05_ignore_exceptions.json", [("IgnoreJob", "ignored"), ("IgnoreJob", "counted")]),
])
def test_exception_rules_leave_rubys_keys(r, resque, start_worker, name, enqueues):
    fx = load_plugin_fixture(name)
    for class_name, *args in enqueues:
        resque.enqueue_to("retry", class_name, *args)
    w = worker(start_worker)
    wait_for(lambda: r.get("resque:stat:processed") == str(len(enqueues)), 20, "both jobs")
    assert plugin_state(dump(r)) == plugin_state(fx["keys"]), w.output
    assert_ttls(r, fx["keys"])


def test_without_suppression_every_attempt_is_listed(r, resque, start_worker):
    resque.enqueue_to("retry", "BackoffJob", "sms", 17)
    worker(start_worker, env={})
    wait_for(lambda: r.get("resque:stat:processed") == "2", 20, "two failed attempts")
    assert r.llen("resque:failed") == 2 and r.keys("resque:failure-resque-retry:*") == []


def test_with_redis_away_a_retried_failure_is_listed_rather_than_lost():
    import redis

    from resque_compat.retry import OUTCOME_ATTR, RetryOutcome
    from resque_compat.retry_failures import RetrySuppression
    from resque_compat.wire.keys import Keys
    from resque_compat.wire.records import parse_job
    from tests.redis_servers import free_port

    away = redis.Redis(port=free_port(), socket_connect_timeout=0.5)
    exc = RuntimeError("boom")
    setattr(exc, OUTCOME_ATTR, RetryOutcome("resque:resque-retry:J", True, 3))
    job = parse_job("retry", b'{"class":"J","args":[]}')
    assert RetrySuppression(away, Keys()).entry_to_list(job, exc, "<entry>", "w") == "<entry>"


@pytest.mark.parametrize("name", ["retry_01_backoff_retrying.json", "retry_03_exception_hash_delays.json",
                                  "retry_04_fatal_exceptions.json", "retry_05_ignore_exceptions.json"])
def test_counter_and_failure_key_names_are_the_plugins(name):
    from resque_compat.retry import retry_key
    from resque_compat.wire.keys import Keys

    fx = load_plugin_fixture(name)
    for meta in fx["keys_from_plugin"] if isinstance(fx["keys_from_plugin"], list) else [fx["keys_from_plugin"]]:
        args = json.loads(meta["args_inspect"])  # ["sms", 17] reads as JSON too
        spec = JobSpec(name=meta["redis_retry_key"].split(":")[1], queue="retry", target=None,
                       perform=lambda *a: None, origin="test", options={})
        key = retry_key(Keys(), spec, args)
        assert key == "resque:" + meta["redis_retry_key"]
        assert Keys().retry_failure(key) == "resque:" + meta["failure_key"]
