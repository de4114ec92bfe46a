"""resque-retry compatibility: the attempt counter key Ruby would use (Ruby's Array#join and
#inspect rebuilt by hand here), and retries through real worker and scheduler processes."""
from __future__ import annotations

import hashlib
import os
import time

import pytest

from resque_compat.errors import RegistryError
from resque_compat.registry import JobSpec
from resque_compat.retry import RetryPolicy, retry_key, ruby_inspect, ruby_join
from resque_compat.wire import codec
from resque_compat.wire.keys import Keys
from tests import delayed_jobs  # noqa: F401  the same @job registrations the workers load
from tests.conftest import ROOT
from tests.test_scheduler import K, start_scheduler, wait_for  # noqa: F401  (fixtures)

JOBS = os.path.join(ROOT, "tests", "delayed_jobs.py")


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def spec(name="FlakyJob", **options):
    return JobSpec(name=name, queue="critical", target=None, perform=lambda *a: None, origin="test",
                   options=options)


# -- the key: what Ruby's redis_retry_key gives ---------------------------------------------------

@pytest.mark.parametrize("args, ruby_join_result", [
    ([1, "two", 3.5, None, True, False], "1-two-3.5--true-false"),
    ([[1, [2, []]], "x"], "1-2--x"),                               # join flattens, [] adds nothing
    ([1e20, 100.0, -0.0, 2 ** 70], "1.0e+20-100.0--0.0-1180591620717411303424"),
    (["héllo ✓", "a b\tc"], "héllo ✓-a b\tc"),                    # strings verbatim, whitespace kept
    ([{"a": 1, "b": [1, "x", None], "c": {"d": 2.5}}],
     '{"a"=>1, "b"=>[1, "x", nil], "c"=>{"d"=>2.5}}'),            # Hash#to_s is inspect (Ruby 3.1)
    ([{"q": 'say "hi" \\ #{x} #$y #@z #n'}], r'{"q"=>"say \"hi\" \\ \#{x} \#$y \#@z #n"}'),
    ([{"c": "\n\t\x01\x7f\u2028é😀\x1b"}], r'{"c"=>"\n\t\u0001\u007F\u2028é😀\e"}'),
    ([{}], "{}"),
])
def test_args_join_as_ruby_does(args, ruby_join_result):
    assert ruby_join(args, "-") == ruby_join_result
    assert retry_key(Keys(), spec(), args) == "resque:resque-retry:FlakyJob:" + sha1(ruby_join_result)


def test_key_without_args_or_with_an_empty_join_has_no_sha1_part():
    for args in ([], [None], [""], [[]]):
        assert retry_key(Keys(), spec(), args) == "resque:resque-retry:FlakyJob"
    assert retry_key(Keys("myns"), spec("::Deep::Job"), [7]) == "myns:resque-retry:Deep::Job:" + sha1("7")


def test_whitespace_is_stripped_from_the_key_after_hashing():
    # redis_retry_key gsubs /\s/ on the joined key, so spaces in args change the sha1 only.
    assert retry_key(Keys(), spec(retry_identifier=lambda *a: "a b\n" + str(len(a))), [1, 2]) == \
        "resque:resque-retry:FlakyJob:ab2"
    assert retry_key(Keys(), spec(), ["a b"]) == "resque:resque-retry:FlakyJob:" + sha1("a b")


def test_ruby_3_4_hash_inspect_can_be_chosen():
    assert ruby_inspect({"a": [1, None]}, hash_arrow=" => ") == '{"a" => [1, nil]}'


def test_policy_defaults_and_validation():
    assert RetryPolicy.of(spec(retry_limit=3)).limit == 3
    assert RetryPolicy.of(spec(backoff=[0, 60, 600])).limit == 3         # as ExponentialBackoff
    assert RetryPolicy.of(spec(give_up_on=ValueError)).limit == 1         # resque-retry's default
    policy = RetryPolicy.of(spec(backoff=[0, 60], retry_on=(OSError,), give_up_on=(TimeoutError,)))
    assert [policy.delay(n) for n in range(4)] == [0, 60, 60, 60]
    assert policy.retries(ConnectionError()) and not policy.retries(TimeoutError()) \
        and not policy.retries(ValueError())
    assert RetryPolicy.of(spec(retry_limit=0)).limit_reached(0)
    assert not RetryPolicy.of(spec(retry_limit=-1)).limit_reached(10 ** 6)
    for bad in ({"retry_limit": "3"}, {"backoff": ["1m"]}, {"retry_on": 42}):
        with pytest.raises(RegistryError, match=list(bad)[0]):
            RetryPolicy.of(spec(**bad))


# -- end to end: real workers (and the scheduler for delays) -------------------------------------

def drain(run_worker):
    worker = run_worker("QUEUE=critical", "INTERVAL=0", jobs=("tests.delayed_jobs",))
    assert worker.code == 0, worker.output
    return worker


def runs(r, token):
    return int(r.get(f"test:runs:{token}") or 0)


def failures(r):
    return [codec.decode(f) for f in r.lrange(K.failed, 0, -1)]


def test_fails_twice_then_succeeds_counting_in_resque_retrys_key(r, resque, run_worker):
    key = "resque:resque-retry:FlakyJob:" + sha1("tok-2")
    resque.enqueue("FlakyJob", "tok", 2)
    drain(run_worker)
    assert runs(r, "tok") == 3
    assert not r.exists(key)  # a success forgets the attempts
    assert [(f["exception"], f["payload"]["args"]) for f in failures(r)] == [("TimeoutError", ["tok", 2])] * 2
    assert r.get(K.processed) == "3" and r.get(K.failed_count) == "2"
    assert r.llen(K.queue("critical")) == 0


def test_a_ruby_counter_in_the_same_key_is_continued(r, resque, run_worker):
    r.set("resque:resque-retry:FlakyJob:" + sha1("ruby-5"), "2")  # Ruby already ran it 3 times
    resque.enqueue("FlakyJob", "ruby", 5)
    drain(run_worker)
    assert runs(r, "ruby") == 1  # attempt 3 = retry_limit: no more retries
    assert not r.exists("resque:resque-retry:FlakyJob:" + sha1("ruby-5"))


def test_retry_limit_exhausted_ends_in_a_final_failure(r, resque, run_worker):
    resque.enqueue("AlwaysFailsJob", "t")
    drain(run_worker)
    assert runs(r, "t") == 3  # the first run + retry_limit=2 retries
    assert len(failures(r)) == 3 and r.llen(K.queue("critical")) == 0
    assert r.keys("resque:resque-retry:*") == []


@pytest.mark.parametrize("job, error, expected_runs", [
    ("GiveUpJob", "value", 1),     # give_up_on=(ValueError,)
    ("GiveUpJob", "runtime", 6),   # anything else: retried up to retry_limit=5
    ("PickyJob", "runtime", 1),    # retry_on=(TimeoutError,) only
    ("PickyJob", "timeout", 6),
])
def test_which_exceptions_are_retried(r, resque, run_worker, job, error, expected_runs):
    resque.enqueue(job, "e", error)
    drain(run_worker)
    assert runs(r, "e") == expected_runs
    assert len(failures(r)) == expected_runs
    assert r.keys("resque:resque-retry:*") == []


def test_bad_retry_options_fail_the_run_with_the_fix_in_the_failure_entry(r, resque, run_worker):
    resque.enqueue("BadRetryJob", "bad")
    drain(run_worker)
    assert runs(r, "bad") == 0
    (failure,) = failures(r)
    assert failure["exception"] == "RegistryError" and "retry_limit='3'" in failure["error"]
    assert r.keys("resque:resque-retry:*") == [] and r.llen(K.queue("critical")) == 0


def test_a_job_run_through_activejob_is_not_retried_by_us(r, resque, run_worker):
    resque.enqueue_active_job("AjFlakyJob", "aj", queue="critical")
    drain(run_worker)
    assert runs(r, "aj") == 1 and len(failures(r)) == 1
    assert r.keys("resque:resque-retry:*") == [] and r.llen(K.queue("critical")) == 0


def test_a_delayed_retry_goes_through_the_scheduler_keys(r, resque, run_worker, start_scheduler):
    key = "resque:resque-retry:BackoffJob:" + sha1("b")
    before = int(time.time())
    resque.enqueue("BackoffJob", "b")
    drain(run_worker)
    after = int(time.time())
    assert runs(r, "b") == 1 and r.llen(K.queue("critical")) == 0
    assert r.get(key) == "0"  # attempt 0 failed; the key stays while the retry waits
    (ts,) = [int(t) for t in r.zrange(K.delayed_queue_schedule, 0, -1)]
    assert before + 1 <= ts <= after + 1
    item = '{"class":"BackoffJob","args":["b"],"queue":"critical"}'
    assert r.lrange(K.delayed(ts), 0, -1) == [item]
    assert r.smembers(K.timestamps(item)) == {f"delayed:{ts}"}
    scheduler = start_scheduler("RESQUE_SCHEDULER_INTERVAL=0.1")
    wait_for(lambda: r.llen(K.queue("critical")), 10, "the released retry")
    scheduler.stop()
    assert r.lrange(K.queue("critical"), 0, -1) == ['{"class":"BackoffJob","args":["b"]}']
    drain(run_worker)
    assert runs(r, "b") == 2 and not r.exists(key)
    assert len(failures(r)) == 1
