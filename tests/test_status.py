"""resque-status: Ruby's status keys read, written and left exactly as the plugin does.

Against fixtures/ruby-plugins/status_* (real Ruby workers with resque-status 0.5.0) and with
real ``resque-py work`` processes running ``tests/plugin_jobs.py``.
"""
from __future__ import annotations

import json
import os
import re

import pytest

from resque_compat import status
from resque_compat.registry import lookup
from resque_compat.wire import codec
from tests import plugin_jobs  # noqa: F401  the same @job registrations the workers load
from tests.conftest import ROOT, wait_for
from tests.keyspace import PRUNING_LOCK as PRUNING
from tests.keyspace import dump, load_keys, normalize, normalized_plugin_fixture
from tests.keyspace import load_plugin_fixture as fixture

JOBS = os.path.join(ROOT, "tests", "plugin_jobs.py")


def as_ruby(r, fx: dict, uuid: str, created: int, worker_ids=()) -> dict:
    """Our keyspace, with our uuid and create time replaced by the fixture's, then normalised
    (worker ids, times) like the fixture; the pruning lock is left out (its TTL counts down)."""
    keys = dump(r)
    text = json.dumps(keys, ensure_ascii=False)
    text = text.replace(uuid, fx["uuid"])
    fixture_time = fx["keys"]["resque:_statuses"]["value"][0][1]
    text = text.replace(f'\\"time\\":{created},', f'\\"time\\":{fixture_time},')
    text = text.replace(f'"{created}"', f'"{fixture_time}"')  # the _statuses score
    ours = normalize(json.loads(text), worker_ids, drop=[PRUNING])
    return ours


def ruby(fx: dict) -> dict:
    return normalized_plugin_fixture(fx)


def status_of(r, uuid):
    raw = r.get(f"resque:status:{uuid}")
    return json.loads(raw) if raw else None


def go(r, uuid):
    r.rpush(f"test:go:{uuid}", "go")


def created_at(r, uuid) -> int:
    return int(r.zscore("resque:_statuses", uuid))


# -- pure: the status hash as Ruby builds it ----------------------------------------------------

def test_merge_keeps_rubys_field_order_and_the_first_time():
    old = {"time": 1796621399, "status": "queued", "uuid": "u", "options": {"a": 1}}
    value = status.merged("u", old, {"name": "X({\"a\"=>1})"}, {"status": "working"},
                          {"num": 1, "total": 3}, "At 1 of 3", now=1796629999)
    assert codec.encode(value) == ('{"time":1796621399,"status":"working","uuid":"u","options":{"a":1},'
                                   '"name":"X({\\"a\\"=>1})","num":1,"total":3,"message":"At 1 of 3"}')


def test_name_is_the_class_and_ruby_3_1_hash_inspect_of_the_options():
    fx = fixture("status_02_working")
    stored = json.loads(fx["keys"][f"resque:status:{fx['uuid']}"]["value"])
    assert status.job_name("StatusJob", stored["options"]) == stored["name"]
    assert status.job_name("::Exports::Job", {}) == "Exports::Job()"


def test_status_functions_outside_a_status_job_say_where_they_work():
    with pytest.raises(RuntimeError, match=r"status=True"):
        status.at(1, 2)


def test_a_status_job_is_called_with_the_options_only():
    spec = lookup("StatusJob")
    assert spec.options["status"] is True
    seen = []
    from resque_compat.registry import _options_only
    _options_only(seen.append)("uuid", {"k": 1})
    assert seen == [{"k": 1}]


# -- Python's create: Ruby's bytes --------------------------------------------------------------

def test_create_writes_rubys_bytes(r, resque):
    fx = fixture("status_01_queued")
    options = {"total": 3, "sleep": 2, "note": "ünïcödé ✓", "sym_key": "sym_value"}
    uuid = status.create("StatusJob", options, resque=resque)
    assert re.fullmatch(r"[0-9a-f]{32}", uuid)
    assert as_ruby(r, fx, uuid, created_at(r, uuid)) == ruby(fx)
    assert status.get(uuid, resque=resque)["status"] == "queued"


def test_create_with_expire_in_sets_the_ttl_and_trims_old_statuses(r, resque):
    fx = fixture("status_06a_expire_in_queued")
    r.zadd("resque:_statuses", {"old": 1})
    status.configure(expire_in=3600)
    try:
        uuid = status.create("StatusJob", {"total": 1, "sleep": 0}, resque=resque)
    finally:
        status.configure(expire_in=None)
    assert as_ruby(r, fx, uuid, created_at(r, uuid)) == ruby(fx)  # "old" was trimmed
    assert 3599 <= r.ttl(f"resque:status:{uuid}") <= 3600
    assert r.ttl("resque:_statuses") == -1


def test_create_uses_the_registered_queue_else_statused(r, resque):
    uuid = status.create("NotHere::Job", {}, resque=resque)
    assert r.lrange("resque:queue:statused", 0, -1) == [f'{{"class":"NotHere::Job","args":["{uuid}",{{}}]}}']
    status.create("StatusJob", {}, queue="exports", resque=resque)
    assert r.llen("resque:queue:exports") == 1


# -- end to end: Ruby's create, a real resque-py work, Ruby's bytes ------------------------------

def test_a_job_created_by_rails_runs_through_working_to_completed(r, start_worker):
    queued = fixture("status_01_queued")
    uuid = queued["uuid"]
    load_keys(r, queued["keys"])
    worker = start_worker("QUEUE=statused", require=JOBS)
    ids = worker.wait_registered(r)
    wait_for(lambda: (status_of(r, uuid) or {}).get("num") == 1, what="at(1, 3)")
    assert normalize(dump(r), ids, drop=[PRUNING]) == ruby(fixture("status_02_working"))
    go(r, uuid)
    go(r, uuid)
    go(r, uuid)
    wait_for(lambda: r.get("resque:stat:processed") == "1", what="the job to end")
    assert normalize(dump(r), ids, drop=[PRUNING]) == ruby(fixture("status_03_completed"))


def test_a_kill_from_ruby_stops_the_python_job_at_its_next_at(r, resque, start_worker):
    uuid = status.create("StatusJob", {"total": 5, "sleep": 2}, resque=resque)
    created = created_at(r, uuid)
    worker = start_worker("QUEUE=statused", require=JOBS)
    ids = worker.wait_registered(r)
    wait_for(lambda: (status_of(r, uuid) or {}).get("num") == 1, what="at(1, 5)")
    r.sadd("resque:_kill", uuid)  # Resque::Plugins::Status::Hash.kill(uuid), as Ruby sends it
    assert as_ruby(r, fixture("status_04a_kill_requested"), uuid, created, ids) == \
        ruby(fixture("status_04a_kill_requested"))
    go(r, uuid)
    wait_for(lambda: r.get("resque:stat:processed") == "1", what="the job to end")
    fx = fixture("status_04b_killed")
    assert as_ruby(r, fx, uuid, created, ids) == ruby(fx)  # killed, _kill emptied, no failure


def test_a_kill_from_python_stops_the_job_too(r, resque, start_worker):
    uuid = status.create("StatusJob", {"total": 5, "sleep": 2}, resque=resque)
    start_worker("QUEUE=statused", require=JOBS).wait_registered(r)
    wait_for(lambda: (status_of(r, uuid) or {}).get("num") == 1, what="at(1, 5)")
    status.kill(uuid, resque=resque)
    go(r, uuid)
    wait_for(lambda: r.get("resque:stat:processed") == "1", what="the job to end")
    got = status_of(r, uuid)
    assert got["status"] == "killed" and got["num"] == 1 and got["message"].startswith("Killed at ")
    assert not r.exists("resque:_kill") and r.llen("resque:failed") == 0


def test_a_failing_job_is_failed_in_its_status_and_in_resques_failed_list(r, resque, start_worker):
    uuid = status.create("StatusJob", {"total": 3, "sleep": 0, "fail_at": 2}, resque=resque)
    created = created_at(r, uuid)
    worker = start_worker("QUEUE=statused", require=JOBS)
    ids = worker.wait_registered(r)
    wait_for(lambda: r.get("resque:stat:processed") == "1", what="the job to end")
    fx = fixture("status_05_failed")

    def without_backtrace(keys):
        entry = json.loads(keys["resque:failed"]["value"][0])
        entry["backtrace"] = ["<job frames>"]
        keys["resque:failed"]["value"] = [json.dumps(entry, ensure_ascii=False)]
        return keys

    assert without_backtrace(as_ruby(r, fx, uuid, created, ids)) == without_backtrace(ruby(fx))
    assert [line for line in json.loads(r.lindex("resque:failed", 0))["backtrace"]
            if "plugin_jobs.py" in line]


def test_expire_in_is_rearmed_on_every_update(r, start_worker):
    queued = fixture("status_06a_expire_in_queued")
    load_keys(r, queued["keys"])
    uuid = queued["uuid"]
    r.expire(f"resque:status:{uuid}", 5)  # the worker's writes must re-arm it to 3600
    worker = start_worker("QUEUE=statused", "INTERVAL=0", require=JOBS, env={"TEST_STATUS_EXPIRE_IN": "3600"})
    assert worker.wait(30) == 0, worker.output
    fx = fixture("status_06b_expire_in_completed")
    assert normalize(dump(r), [], drop=[PRUNING]) == ruby(fx)  # INTERVAL=0: unregistered, as SIGQUIT
    assert 3598 <= r.ttl(f"resque:status:{uuid}") <= 3600


def test_set_completed_and_tick_from_python(r, resque, start_worker):
    uuid = status.create("SetsItsOwnStatusJob", {"rows": 7}, resque=resque)
    worker = start_worker("QUEUE=statused", "INTERVAL=0", require=JOBS)
    assert worker.wait(30) == 0, worker.output
    got = r.get(f"resque:status:{uuid}")
    assert re.fullmatch(
        r'\{"time":\d+,"status":"completed","uuid":"%s","options":\{"rows":7\},'
        r'"name":"SetsItsOwnStatusJob\(\{\\"rows\\"=>7\}\)","message":"Completed at \d{4}-\d\d-\d\d '
        r'\d\d:\d\d:\d\d [+-]\d{4}","rows":7,"url":"https://example.test/x.csv"\}' % uuid, got), got
    assert status.pct_complete(json.loads(got)) == 100


def test_a_job_stopped_by_shutdown_stays_working_as_in_ruby(r, resque):
    """Ruby's TermException is not a StandardError, so safe_perform! does not mark it failed."""
    from resque_compat import client, hooks, registry
    from resque_compat.errors import TermException

    @registry.job("TermStatusJob", status=True)
    def stopped(options):
        status.at(1, 2)
        raise TermException("SIGTERM")

    client.set_default(resque)
    try:
        uuid = status.create("TermStatusJob", {}, resque=resque)
        with pytest.raises(TermException):
            hooks.perform(registry.lookup("TermStatusJob"), [uuid, {}])
    finally:
        registry.unregister("TermStatusJob")
        client.set_default(None)
    got = status.get(uuid, resque=resque)
    assert (got["status"], got["num"], got["name"]) == ("working", 1, "TermStatusJob()")
