"""Real Ruby workers with resque-retry 1.8.1, resque-loner 1.3.0 and resque-lock-timeout 0.4.5
(the commits of fixtures/ruby-plugins/README.md) beside ``resque-py work`` on one Redis DB,
continuing each other's plugin state: fixtures/ruby-interop/plugins.json, recorded by
fixtures/ruby-interop/plugins_capture.sh from tests/manual/ruby_plugins_mixed.py --json (issue
12; the suite needs no Ruby).

The recording's claims are checked on the values it saw, not on its "ok" lines alone: each job
ran exactly once or was dropped by the other side's lock, every lock and loner key was released,
and the retry counter Python left was the one Ruby continued. The key names Ruby's plugins used
are compared with what our code computes for the same job.
"""
from __future__ import annotations

import json
import os

from resque_compat.loner import lock_identifier
from resque_compat.retry import retry_identifier
from resque_compat.wire.keys import Keys
from resque_compat.wire.plugins import loner_digest
from tests.conftest import ROOT

K = Keys()
with open(os.path.join(ROOT, "fixtures", "ruby-interop", "plugins.json"), encoding="utf-8") as fh:
    RECORD = json.load(fh)
SCENARIOS = RECORD["scenarios"]


def seen(scenario, check):
    [entry] = [c for c in SCENARIOS[scenario]["checks"] if c["check"] == check]
    assert entry["ok"] is True
    return entry["seen"]


def test_the_recorded_run_used_the_plugin_versions_of_the_fixtures_and_passed_every_check():
    assert RECORD["versions"][1:5] == ["resque 3.0.0", "resque-scheduler 5.0.0", "resque-retry 1.8.1",
                                       "resque-loner 1.3.0"]
    assert set(RECORD["lib_sha256"]) == {"resque", "resque-scheduler", "resque-loner", "resque-lock-timeout",
                                         "resque-retry"}
    assert RECORD["exit"] == 0 and RECORD["stderr"] == []
    checks = [c for s in SCENARIOS.values() for c in s["checks"]]
    assert len(checks) == 18 and all(c["ok"] for c in checks)
    printed = [line for line in RECORD["output"] if line.startswith(("ok ", "FAIL "))]
    assert printed == ["ok   " + c["check"] for c in checks]


def test_ruby_continued_the_retry_counter_python_left():
    """BackoffJob (backoff [0, 3]: 3 attempts): Python made attempts 1-2, Ruby's scheduler
    released Python's delayed retry, a Ruby worker made attempt 3 and gave up."""
    name = "retry_python_then_ruby"
    counter = K.retry_counter("BackoffJob", retry_identifier(["sms", 17]))
    failure_key = K.retry_failure(counter)
    python_left = SCENARIOS[name]["keys"]["after python's two attempts"]
    assert python_left[counter]["value"] == "1"  # resque-retry counts retries from 0
    suppressed = json.loads(python_left[failure_key]["value"])
    assert suppressed["worker"] == "<host>:<pid>:retry:0" and suppressed["exception"] == "NetworkError"
    assert python_left["resque:stat:failed"]["value"] == "2" and "resque:failed" not in python_left
    assert [line for line in RECORD["output"] if "retrying BackoffJob" in line] == [
        "*** retrying BackoffJob (attempt 0 failed: NetworkError) in 0s",
        "*** retrying BackoffJob (attempt 1 failed: NetworkError) in 3s"]
    assert seen(name, "ruby scheduler released Python's delayed retry")["queue"] == [
        '{"class":"BackoffJob","args":["sms",17]}']
    ruby_left = SCENARIOS[name]["keys"]["after ruby's third attempt"]
    assert counter not in ruby_left and failure_key not in ruby_left
    [entry] = [json.loads(e) for e in ruby_left["resque:failed"]["value"]]
    assert entry["worker"] == "<host>:<pid>:retry"  # a Ruby worker's id (ours end in a slot)
    assert entry["backtrace"][0].startswith("<root>/tests/manual/ruby_plugins_app.rb")
    assert (entry["payload"], entry["exception"]) == ({"class": "BackoffJob", "args": ["sms", 17]}, "NetworkError")
    assert ruby_left["resque:stat:failed"]["value"] == "3"  # 2 + 1: no attempt lost or repeated


def test_each_loner_job_ran_once_and_each_side_freed_the_others_key():
    name = "loner_both_ways"
    python_key = K.loner("loner", loner_digest("LonerJob", ["x", 1]))
    assert seen(name, "python enqueue accepted")["loners"] == [python_key]
    assert seen(name, "ruby Job.create refuses Python's queued job") == {
        "ruby_said": '"EXISTED"', "queue": ['{"class":"LonerJob","args":["x",1]}']}
    ran = seen(name, "ruby worker ran it and freed Python's key")
    assert ran == {"loners": [], "ruby_ran": ['["LonerJob","x",1]']}  # once
    # Ruby's key for {"b":2,"a":1} is ours for {"a":1,"b":2}: resque-loner sorts top-level hashes
    ruby_key = K.loner("loner", loner_digest("LonerJob", ["y", {"a": 1, "b": 2}]))
    ruby_wrote = SCENARIOS[name]["keys"]["after ruby's enqueue"]
    assert ruby_wrote[ruby_key]["value"] == "1"
    assert ruby_wrote["resque:queue:loner"]["value"] == ['{"class":"LonerJob","args":["y",{"b":2,"a":1}]}']
    assert seen(name, "python refuses Ruby's queued job (hash keys in the other order)")["queue"] == [
        '{"class":"LonerJob","args":["y",{"b":2,"a":1}]}']  # still one
    freed = seen(name, "python worker freed Ruby's key")
    assert freed == {"loners": [], "queue": [], "stat_processed": "2"}  # Ruby's run + Python's run
    assert seen(name, "python enqueue accepted again")["loners"] == [ruby_key]
    assert seen(name, "ruby Job.create refuses it")["queue"] == ['{"class":"LonerJob","args":["y",{"a":1,"b":2}]}']


def test_a_lock_held_by_one_side_dropped_the_others_duplicate_and_was_released():
    name = "lock_both_ways"
    args = [42, {"k": "v"}, [1, [2, "x y"]], 6]
    lock = K.run_lock("LockedJob", lock_identifier(args))
    assert lock == 'resque:lock:LockedJob:42-{"k"=>"v"}-1-2-x y-6'
    python_runs = SCENARIOS[name]["keys"]["python runs, ruby worker done"]
    assert python_runs[lock]["value"] == "<epoch>"  # the gem's expiry timestamp, written by Python
    assert seen(name, "ruby worker dropped the job Python runs") == {"ruby_ran": [], "locks": [lock], "queue": []}
    ruby_runs = SCENARIOS[name]["keys"]["ruby runs, python worker done"]
    assert ruby_runs[lock]["value"] == "<epoch>"
    dropped = seen(name, "python worker dropped the job Ruby runs")
    assert dropped["python_started"] == 0 and dropped["locks"] == [lock] and dropped["stat_processed"] == "1"
    assert dropped["python_processed_first_half"] == "2"  # Python's run + Ruby's dropped duplicate
    assert '*** dropped LockedJob(42-{"k"=>"v"}-1-2-x y-6): another worker holds its lock' in RECORD["output"]
    done = seen(name, "ruby released its lock")
    assert done == {"locks": [], "ruby_ran": ['["LockedJob",42,{"k":"v"},[1,[2,"x y"]],6]'], "queue": []}  # once
