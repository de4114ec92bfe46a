"""records: worker ids, ``worker:<id>`` values and failure entries, byte for byte as Ruby wrote
them in the fixtures; tolerant job parsing. Pure: no Redis."""
from __future__ import annotations

import glob
import json
import os
import sys

import pytest

from resque_compat.errors import DirtyExit, PruneDeadWorkerDirtyExit
from resque_compat.wire import codec, records
from tests.keyspace import FIXTURES, load_fixture


def all_fixtures():
    return [load_fixture(os.path.basename(p)) for p in sorted(glob.glob(os.path.join(FIXTURES, "*.json")))]


# -- failure entries ----------------------------------------------------------------------------

def test_failure_entry_reproduces_fixture_04_byte_for_byte():
    fx = load_fixture("04_processed.json")
    raw = fx["keys"]["resque:failed"]["value"][0]
    entry = records.failure_entry(
        failed_at="2026/11/27 12:01:34 UTC",
        payload_json=codec.encode_job("FailJob", ["will fail", 99]),
        exception="RuntimeError",
        error=fx["exception_message"],
        backtrace=["app/jobs/fixture_jobs.rb:27:in `perform'"],
        worker=fx["worker_id"],
        queue="critical",
    )
    assert entry == raw


def _failure_entries():
    out = []
    for fx in all_fixtures():
        for key, item in fx["keys"].items():
            if item["type"] == "list" and (key == "resque:failed" or key.endswith("_failed")):
                for raw in item["value"]:
                    out.append((fx["scenario"], raw))
    return out


FAILURES = _failure_entries()


def test_fixtures_have_failure_entries_of_every_kind():
    kinds = {json.loads(raw)["exception"] for _, raw in FAILURES}
    assert {"RuntimeError", "NameError", "Resque::DirtyExit", "Resque::PruneDeadWorkerDirtyExit"} <= kinds


@pytest.mark.parametrize("scenario, raw", FAILURES, ids=[f"{s}-{i}" for i, (s, _) in enumerate(FAILURES)])
def test_failure_entry_rebuilds_every_fixture_failure_in_rubys_field_order(scenario, raw):
    fields = json.loads(raw)
    retried_at = fields.pop("retried_at", None)
    entry = records.failure_entry(
        failed_at=fields["failed_at"], payload_json=codec.encode(fields["payload"]),
        exception=fields["exception"], error=fields["error"], backtrace=fields["backtrace"],
        worker=fields["worker"], queue=fields["queue"],
    )
    if retried_at is None:
        assert entry == raw
    else:  # requeue appends retried_at last (WIRE §4.5); everything before it is ours
        assert raw == entry[:-1] + ',"retried_at":' + codec.encode(retried_at) + "}"


def test_failure_entry_replaces_text_that_is_not_utf8():
    entry = json.loads(records.failure_entry(
        failed_at="2026/11/27 12:01:34 UTC", payload_json='{"class":"X","args":[]}',
        exception="RuntimeError", error="bad \udcff byte", backtrace=["f.py:1:in `x\udcfe'"],
        worker="vm:1:q", queue="q"))
    assert entry["error"] == "bad ? byte" and entry["backtrace"] == ["f.py:1:in `x?'"]


def test_failure_entry_without_queue_writes_null():
    entry = records.failure_entry(failed_at="t", payload_json="{}", exception="E", error="e",
                                  backtrace=[], worker="vm:1:q", queue=None)
    assert entry.endswith(',"worker":"vm:1:q","queue":null}')


def test_exception_name_uses_rubys_names_for_resque_errors():
    assert records.exception_name(DirtyExit("x")) == "Resque::DirtyExit"
    assert records.exception_name(PruneDeadWorkerDirtyExit("x")) == "Resque::PruneDeadWorkerDirtyExit"
    assert records.exception_name(ValueError("x")) == "ValueError"


def _raise_here():
    raise RuntimeError("boom")


def test_backtrace_lines_are_ruby_style_innermost_first():
    try:
        _raise_here()
    except RuntimeError:
        lines = records.backtrace_lines(sys.exc_info()[2])
    here = os.path.abspath(__file__)
    assert lines[0].startswith(f"{here}:") and lines[0].endswith(":in `_raise_here'")
    assert lines[1].endswith(":in `test_backtrace_lines_are_ruby_style_innermost_first'")
    assert all("resque_compat/" not in line for line in lines)


def test_backtrace_lines_drop_frames_from_every_subpackage():
    """Not only wire/: a job's error raised through runtime/, common/ or hooks.py shows the
    job's frames only, as Ruby cuts its own lib/resque frames (WIRE §4.4)."""
    from resque_compat.common.urls import parse_host_port

    def job_code():
        parse_host_port("no-port-here")

    try:
        job_code()
    except ValueError:
        lines = records.backtrace_lines(sys.exc_info()[2])
    assert lines[0].endswith(":in `job_code'")
    assert not any(f"{os.sep}resque_compat{os.sep}" in line for line in lines)


# -- worker:<id> ---------------------------------------------------------------------------------

def test_worker_record_reproduces_fixture_03():
    fx = load_fixture("03_worker_busy.json")
    raw = fx["keys"][f"resque:worker:{fx['worker_id']}"]["value"]
    payload = codec.encode_job("SleepJob", [4, "busy"])
    assert records.worker_record("critical", "2026-11-27T12:01:30Z", payload) == raw


def _worker_records():
    out = []
    for fx in all_fixtures():
        for key, item in fx["keys"].items():
            if key.startswith("resque:worker:") and not key.endswith(":started"):
                out.append((fx["scenario"], item["value"]))
    return out


@pytest.mark.parametrize("scenario, raw", _worker_records())
def test_worker_record_rebuilds_every_fixture_worker_value(scenario, raw):
    fields = json.loads(raw)
    assert list(fields) == ["queue", "run_at", "payload"]
    rebuilt = records.worker_record(fields["queue"], fields["run_at"], codec.encode(fields["payload"]))
    assert rebuilt == raw
    assert records.worker_record_prefix(fields["queue"], fields["run_at"]) + codec.encode(fields["payload"]) + "}" == raw


def test_worker_record_keeps_the_payload_bytes_it_is_given():
    odd = '{"class": "X", "args": [1.0], "id": "abc"}'  # spacing and extra key kept verbatim
    assert records.worker_record("q", "2026-11-27T12:01:30Z", odd) == (
        '{"queue":"q","run_at":"2026-11-27T12:01:30Z","payload":' + odd + "}")


# -- worker ids ----------------------------------------------------------------------------------

def test_worker_id_matches_fixtures():
    assert records.worker_id("vm", 20912, ["critical", "low"]) == "vm:20912:critical,low"
    for fx in all_fixtures():
        if "worker_pid" in fx and "worker_id" in fx:
            queues = fx["worker_id"].split(":", 2)[2].split(",")
            assert records.worker_id(fx["hostname"], fx["worker_pid"], queues) == fx["worker_id"]
    fx07 = load_fixture("07_wildcard.json")
    assert records.worker_id("vm", 22539, ["*"]) == fx07["worker_id"]
    fx07b = load_fixture("07b_wildcard_priority_and_exclusion.json")
    assert records.worker_id("vm", 22598, fx07b["queues_env"].split(",")) == fx07b["worker_id"]
    assert records.worker_id("vm", 20912, ["mid", "*", "!beta"]) == "vm:20912:mid,*"


def test_worker_id_slot_suffix_and_its_validation():
    assert records.worker_id("vm", 1, ["a", "b"], slot="0") == "vm:1:a,b:0"
    assert records.worker_id("vm", 1, ["a"], slot="g_12") == "vm:1:a:g_12"
    for bad in ["", "a:b", "a,b", "*", "!", "a/b", "a b", "é", "[1]", "{1}", "?"]:
        with pytest.raises(ValueError, match="slot"):
            records.worker_id("vm", 1, ["a"], slot=bad)


@pytest.mark.parametrize("host, queues", [
    ("", ["a"]), ("vm:1", ["a"]), ("vm", []), ("vm", ["!a"]), ("vm", ["a:b"]),
])
def test_worker_id_refuses_ids_ruby_could_not_parse(host, queues):
    with pytest.raises(ValueError):
        records.worker_id(host, 1, queues)


def test_worker_id_pid_is_plain_decimal():
    assert records.worker_id("vm", 42, ["q"]) == "vm:42:q"
    assert records.worker_id("vm", "0042", ["q"]) == "vm:42:q"


def test_parsed_worker_id_reads_fields_as_rubys_split():
    parsed = records.ParsedWorkerId.parse("vm:4242:ping_publisher:47223456")
    assert (parsed.host, parsed.pid, parsed.queues) == ("vm", "4242", ("ping_publisher",))
    assert records.ParsedWorkerId.parse("vm:4242+3:a,b").pid == "4242+3"
    for bad in ["garbage", "vm:123", "vm:123:"]:
        assert records.ParsedWorkerId.parse(bad) is None


# -- tolerant job parsing --------------------------------------------------------------------------

def test_parse_job_reads_ruby_payloads():
    raw = load_fixture("01_enqueue.json")["keys"]["resque:queue:low"]["value"][1]
    job = records.parse_job("low", raw)
    assert job.problem is None
    assert (job.queue, job.class_name, job.args, job.raw) == ("low", "Jobs::Nested", ["nested"], raw)
    assert str(job) == "(low) Jobs::Nested"
    assert records.parse_job("q", b'{"class":"X","args":null}').args == []
    assert records.parse_job("q", b'{"class":"X"}').args == []
    assert records.parse_job("q", '{"class":"X","args":[1],"id":"e"}').payload_json() == '{"class":"X","args":[1],"id":"e"}'


@pytest.mark.parametrize("raw, words", [
    ("not json", "not valid JSON"),
    ("", "not valid JSON"),
    (b"\xff\xfe{}", "not valid JSON"),
    (b'{"class":"X","args":["\xc3\x28"]}', "not valid JSON"),
    ('{"class":"X","args":[NaN]}', "not valid JSON"),
    ("[" * 100000 + "]" * 100000, "not valid JSON"),
    ("[1,2]", "array"),
    ('"just a string"', "string"),
    ("42", "number"),
    ("null", "null"),
    ('{"args":[1]}', "class"),
    ('{"class":"","args":[]}', "class"),
    ('{"class":7,"args":[]}', "class"),
    ('{"class":["X"],"args":[]}', "class"),
    ('{"class":"X","args":{"a":1}}', "object, not an array"),
    ('{"class":"X","args":"a"}', "string, not an array"),
    ('{"class":"X","args":3}', "number, not an array"),
])
def test_parse_job_never_raises_and_says_what_is_wrong(raw, words):
    job = records.parse_job("critical", raw)
    assert job.problem and words in job.problem
    assert job.queue == "critical"
    assert isinstance(job.raw, str)
    # the failure entry's payload is valid JSON whatever the item was (WIRE §5.2)
    payload = json.loads(job.payload_json())
    assert isinstance(payload, (dict, str))


def test_unparseable_payload_is_kept_as_a_json_string_of_the_raw_text():
    job = records.parse_job("q", "[1,2]")
    assert job.payload_json() == '"[1,2]"'
    assert job.display_class == "No Name"
    job = records.parse_job("q", b"\xff oops")
    assert json.loads(job.payload_json()) == "\ufffd oops"
