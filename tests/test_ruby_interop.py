"""What real Ruby (resque 3.0 + resque-status 0.5.0 + resque-pause 0.3.0, and resque-web's
resque-status pages) saw of Python's writes: fixtures/ruby-interop/interop.json, recorded by
fixtures/ruby-interop/capture.sh (see the README there; the suite does not need Ruby)."""
from __future__ import annotations

import json
import os

import pytest

from resque_compat import status
from tests.conftest import ROOT

with open(os.path.join(ROOT, "fixtures", "ruby-interop", "interop.json"), encoding="utf-8") as fh:
    RECORD = json.load(fh)
SEEN = RECORD["python_ran_ruby_reads"]["statuses"]


@pytest.mark.parametrize("seen, expected", list(zip(SEEN, ["completed", "failed", "queued"])))
def test_ruby_and_resque_web_read_python_written_statuses(seen, expected):
    assert seen["status"] == expected
    assert seen["page_status"] == seen["js_status"] == 200 and RECORD["python_ran_ruby_reads"]["statuses_page_status"] == 200
    assert seen["listed_on_statuses_page"] and seen["page_shows_status"] and seen["page_shows_message"]
    assert seen["js"]["uuid"] == seen["uuid"] and seen["js"]["status"] == expected
    if expected != "queued":
        assert seen["name"] == status.job_name("StatusJob", seen["options"])
    plain = {k: v for k, v in seen["js"].items() if k != "pct_complete"}
    assert status.pct_complete(plain) == seen["pct_complete"] == seen["js"]["pct_complete"]
    assert seen["killable"] == (expected == "queued")


def test_the_failed_status_carries_the_python_error_message():
    assert SEEN[1]["message"] == 'The task failed because of an error: boom at step 2 ✗ "quoted"'
    assert (SEEN[1]["num"], SEEN[1]["total"], SEEN[1]["pct_complete"]) == (1, 3, 33)


def test_a_ruby_worker_runs_a_job_python_created():
    assert RECORD["ruby_worker"]["processed"] == 1 and RECORD["ruby_worker"]["failed"] == 0
    got = RECORD["python_reads_ruby_run"]
    assert (got["status"], got["num"], got["total"], got["name"]) == ("completed", 3, 3, 'StatusJob({"total"=>3})')
    assert list(got) == ["time", "status", "uuid", "options", "name", "num", "total", "message"]


def test_a_ruby_worker_obeys_resque_py_pause_queue():
    pause = RECORD["pause"]
    assert pause["queued_while_paused"] == 1 and pause["ran_while_paused"] == []
    assert pause["ruby_worker_while_paused"]["processed"] == 0
    assert pause["ran_after_resume"] == ["p1"] and pause["ruby_worker_after_resume"]["processed"] == 1
