"""What real Ruby (resque 3.0.0's resque-web and worker) made of each broken state the doctor
tests build, before and after ``resque-py doctor --fix``: fixtures/ruby-interop/doctor.json,
recorded by fixtures/ruby-interop/doctor_capture.sh (see the README there; the suite needs no
Ruby). Issue 16, requirement 1: "--fix leaves a keyspace that resque-web and a Ruby worker
accept".

The recording's claims are checked (every repaired keyspace: each page 200, no call raised, the
worker started and ran the job; each critical state: Ruby broke as the finding says), and today's
``--fix`` is run on the same states and must leave, byte for byte after normalising times and
made-up pids, the keyspace Ruby accepted.
"""
from __future__ import annotations

import json
import os

import pytest

from resque_compat.wire import health
from resque_compat.wire.keys import Keys
from tests.conftest import ROOT
from tests.doctor_states import BACKENDS, HOST, KEY_PLANTS, STATES, stop_live
from tests.keyspace import dump
from tests.ruby_recording import normal_state
from tests.test_admin_cli import admin

K = Keys()
with open(os.path.join(ROOT, "fixtures", "ruby-interop", "doctor.json"), encoding="utf-8") as fh:
    RECORD = json.load(fh)
RECORDED = RECORD["states"]
PAGES = ["/overview", "/workers", "/working", "/failed", "/queues", "/stats", "/stats/resque"]
PROBE_JOB = ["RubyProbe", ["probe"]]
CRITICAL = {name: check for name, _, check in KEY_PLANTS}
#: findings about the server, not the keyspace: the recording's server and the test's differ
SERVER_CHECKS = {"no_persistence", "maxmemory_policy", "config_unreadable", "clock_skew"}


def breakage(report):
    """What went wrong for Ruby in one probe report: pages not 200, calls that raised, and the
    worker's start-up error."""
    pages = {p: s for p, s in report["pages"].items() if s != 200 and not (p == "/stats" and s.startswith("302 "))}
    raised = {c: v[1] for c, v in report["calls"].items() if v[0] != "ok"}
    return pages, raised, report["worker_failed_to_start"]


def test_the_recording_covers_every_state_the_doctor_tests_build():
    assert set(RECORDED) == set(STATES)
    assert RECORD["versions"][1] == "resque 3.0.0"


@pytest.mark.parametrize("name", sorted(STATES))
def test_ruby_accepted_every_repaired_keyspace(name):
    report = RECORDED[name]["repaired_ruby"]
    assert breakage(report) == ({}, {}, None)
    assert set(PAGES) <= set(report["pages"])
    assert report["pages"]["/stats"] == "302 http://example.org/stats/resque"
    # every registered worker has its own page, and it rendered
    workers = report["calls"]["Resque::Worker.all"][1]
    assert workers and all(report["pages"][f"/workers/{w}"] == 200 for w in workers)
    assert report["worker_registered_after"] is False  # it started, worked and unregistered
    if name == "warnings_and_notes":  # pause-all-workers is set: Ruby honours it, as reported
        assert report["jobs_run"] == [] and RECORDED[name]["broken_ruby"]["jobs_run"] == []
        assert ["warning", "pause_all_workers"] in RECORDED[name]["doctor_after_fix"]["findings"]
    else:
        assert report["jobs_run"][-1] == PROBE_JOB
    # --fix left nothing critical but the shared server's persistence setting (not a key) and
    # live processes it must not touch
    criticals = [c for s, c in RECORDED[name]["doctor_after_fix"]["findings"] if s == "critical"]
    assert set(criticals) - SERVER_CHECKS <= ({"title_not_recognised", "pid_not_exact"}
                                              if name == "untitled_live_worker" else set())


def test_ruby_pruned_the_live_workers_the_doctor_flagged_and_fix_left_them_alone():
    """title_not_recognised / pid_not_exact are real: Ruby's pruner (on host doctorhost, where
    both processes ran) unregistered them while they lived. --fix cannot help; it says so."""
    state = RECORDED["untitled_live_worker"]
    live = ["doctorhost:<pid>+1:critical", "doctorhost:<pid>:critical"]
    assert {"title_not_recognised", "pid_not_exact"} <= {c for s, c in state["doctor_before_fix"]["findings"]
                                                        if s == "critical"}
    for report, keys in ((state["broken_ruby"], state["broken_keys"]), (state["repaired_ruby"], state["repaired_keys"])):
        assert set(live) <= set(keys[K.workers]["value"])
        assert sorted(report["calls"]["Resque::Worker.all"][1]) == sorted(keys[K.workers]["value"])
        assert set(live).isdisjoint(report["calls"]["prune_dead_workers"][1])
    assert state["repaired_keys"] == state["broken_keys"]
    assert [line for line in state["fix_output"] if line.startswith("fixed: ")] == []


@pytest.mark.parametrize("name", sorted(CRITICAL))
def test_ruby_broke_on_each_critical_state_before_the_fix(name):
    """The doctor's critical findings are real: each broken state made resque-web answer 500 or
    a Ruby call raise, and the same probe passed on the repaired keyspace."""
    pages, raised, failed_start = breakage(RECORDED[name]["broken_ruby"])
    if name == "heartbeat_field_one_colon":
        # Ruby reads a heartbeat field only once it has expired (the pruner's heartbeat path):
        # fresh, the bad field breaks nothing yet; 300 s later it is the _expired state below.
        assert (pages, raised, failed_start) == ({}, {}, None)
        return
    assert pages or raised or failed_start
    if CRITICAL[name] == "bad_worker_id":  # WIRE §3.4: every page listing workers, every worker
        assert {p for p in PAGES if p != "/stats"} - set(pages) == {"/failed", "/queues"}
        assert set(raised) == {"Resque::Worker.all", "Resque.info", "Resque.working", "prune_dead_workers"}
        assert failed_start and RECORDED[name]["broken_ruby"]["jobs_run"] == []
    if CRITICAL[name] in ("bad_heartbeat", "bad_heartbeat_field"):  # the pruner dies
        assert set(raised) == {"prune_dead_workers"} and failed_start
        assert RECORDED[name]["broken_ruby"]["jobs_run"] == []
    if CRITICAL[name] in ("bad_worker_record", "wrong_type"):
        assert "/workers/vm:1:q" in pages and not failed_start


def test_every_safe_fault_at_once_broke_everything_and_fix_gave_it_back():
    # Resque.info's "failed" is LLEN failed whatever the backend; with redis_multi_queue the
    # four entries with a queue went to critical_failed, the one without (an id with no queue)
    # to failed
    for name, failed in (("every_safe_fault", 5), ("every_safe_fault_multi_queue", 1)):
        state = RECORDED[name]
        pages, raised, failed_start = breakage(state["broken_ruby"])
        assert "Resque::Worker.all" in raised and failed_start and "/overview" in pages
        ruby = state["repaired_ruby"]
        assert ruby["pages"]["/failed"] == 200
        assert ruby["jobs_run"] == [["Waiting", [1]], PROBE_JOB]  # the queued job survived and ran
        info = ruby["calls"]["Resque.info"][1]
        assert (info["workers"], info["working"], info["failed"]) == (2, 1, failed)


@pytest.mark.parametrize("name", sorted(STATES))
def test_each_failure_entry_fix_wrote_is_one_resque_web_shows(name):
    keys = RECORDED[name]["repaired_keys"]
    entries = [e for k, v in keys.items() if k == K.failed or k.endswith("_failed") for e in v["value"]]
    assert all(health.failure_entry_problem(e) is None for e in entries)
    if name == "record_activejob_no_args":
        # /failed renders args.first['job_class'] of a wrapper: kept as the string of its bytes
        # (an earlier --fix copied the payload as is, and Ruby's /failed answered 500 on it)
        [entry] = entries
        held = RECORDED[name]["broken_keys"][K.worker("vm:1:q")]["value"]
        assert json.loads(entry)["payload"] == held and json.loads(entry)["queue"] == "q"


@pytest.fixture
def live():
    """Ends the processes a state started for its live workers."""
    yield
    stop_live()


@pytest.mark.parametrize("name", sorted(STATES))
def test_fix_today_leaves_the_keyspace_ruby_accepted(r, redis_url, live, name):
    recorded = RECORDED[name]
    backend = BACKENDS.get(name, "redis")
    STATES[name](r)
    assert normal_state(dump(r)) == recorded["broken_keys"]
    before = json.loads(admin(redis_url, "doctor", "--json", "--hostname", HOST, "--backend", backend).stdout)
    assert {(f["severity"], f["check"]) for f in before["findings"] if f["check"] not in SERVER_CHECKS} \
        == {tuple(f) for f in recorded["doctor_before_fix"]["findings"] if f[1] not in SERVER_CHECKS}
    result = admin(redis_url, "doctor", "--fix", "--hostname", HOST, "--backend", backend)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    fixed = [line for line in normal_state(result.stdout.splitlines()) if line.startswith("fixed: ")]
    # Sorted: --fix reports keys in SCAN order, which follows the hashes of names that carry
    # this run's pids, so it differs from the recording's from run to run.
    assert sorted(fixed) == sorted(line for line in recorded["fix_output"] if line.startswith("fixed: "))
    assert failures_unordered(normal_state(dump(r))) == failures_unordered(recorded["repaired_keys"])


def failures_unordered(state):
    """A dump whose failure lists are sorted: --fix RPUSHes the entries it saves in that SCAN
    order too. Every other list keeps its order."""
    return {k: {**v, "value": sorted(v["value"])} if k == K.failed or k.endswith("_failed") else v
            for k, v in state.items()}
