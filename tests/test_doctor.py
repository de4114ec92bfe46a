"""``resque-py doctor`` on a private redis-server (its CONFIG is ours to change): each broken
value WIRE §3.4/§5.2 lists is planted, found, reported with the right exit code, and ``--fix``
leaves a keyspace of the shape Ruby's fixtures show, without losing a job."""
from __future__ import annotations

import json
import subprocess
import time

import pytest

from resque_compat.doctor.checks import MAX_PER_CHECK, Doctor
from resque_compat.store.survey import Survey
from resque_compat.wire import codec, health
from resque_compat.wire.codec import parse_heartbeat
from resque_compat.wire.keys import Keys
from tests.doctor_states import (
    CONFIG_PLANTS,
    HOST,
    KEY_PLANTS,
    busy_fixture,
    dead_pid,
    every_safe_fault,
    healthy,
    held_job,
    now_beat,
    warnings_and_notes,
)
from tests.keyspace import dump, load_fixture, normalize
from tests.redis_servers import redis_servers  # noqa: F401  (fixture)
from tests.test_admin_cli import admin

K = Keys()


@pytest.fixture
def private(redis_servers):  # noqa: F811
    """(client, url) of a fresh redis-server with persistence on and noeviction: healthy."""
    server = redis_servers("doctor", ["--appendonly", "yes", "--maxmemory-policy", "noeviction"])
    server.wait_ready(server.client)
    client = server.client()
    yield client, f"redis://127.0.0.1:{server.port}/0"
    client.close()


def doctor(url, *args):
    result = admin(url, "doctor", "--json", "--hostname", HOST, *args)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    data = json.loads(result.stdout)
    assert data["exit"] == result.exit_code
    return data


def checks(data, severity=None):
    return sorted({f["check"] for f in data["findings"] if severity in (None, f["severity"])})


def test_a_healthy_ruby_keyspace_exits_zero(private):
    r, url = private
    busy_fixture(r)
    data = doctor(url)
    assert data["exit"] == 0
    assert checks(data, "critical") == []
    assert checks(data) == ["failed_size"]


@pytest.mark.parametrize("plant, check", [(p, c) for _, p, c in KEY_PLANTS + CONFIG_PLANTS],
                         ids=[n for n, _, _ in KEY_PLANTS + CONFIG_PLANTS])
def test_each_breaking_value_is_critical(private, plant, check):
    r, url = private
    healthy(r)
    assert doctor(url)["exit"] == 0
    plant(r)
    data = doctor(url)
    assert data["exit"] == 3
    assert checks(data, "critical") == [check]
    finding = next(f for f in data["findings"] if f["check"] == check)
    assert finding["key"] and finding["breaks"] and finding["fix"]


def test_warnings_and_notes(private):
    r, url = private
    dead = warnings_and_notes(r)["dead"]
    data = doctor(url)
    assert data["exit"] == 0, data
    assert checks(data) == sorted([
        "dead_scheduler_lock", "failed_size", "ghost_dead_pid", "ghost_expired_heartbeat",
        "no_heartbeat", "orphan_started", "orphan_worker", "orphan_worker_stat", "pause_all",
        "pause_all_workers", "paused_queue", "unwatched_queue"])
    subjects = {f["check"]: f["subject"] for f in data["findings"]}
    assert subjects["ghost_dead_pid"] == dead
    assert subjects["unwatched_queue"] == "nobody"
    assert subjects["no_heartbeat"] == "farhost:9:critical"


def test_a_live_process_whose_title_ruby_misses_is_critical(private):
    r, url = private
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        wid = f"{HOST}:{sleeper.pid}:critical"
        r.sadd(K.workers, wid)
        r.hset(K.heartbeats, wid, now_beat(r))
        data = doctor(url)
        assert data["exit"] == 3
        assert [(f["check"], f["subject"]) for f in data["findings"] if f["severity"] == "critical"] \
            == [("title_not_recognised", wid)]
        r.srem(K.workers, wid)
        r.sadd(K.workers, f"{HOST}:{sleeper.pid}+1:critical")  # node-resque style pid
        assert checks(doctor(url), "critical") == ["pid_not_exact"]
    finally:
        sleeper.kill()
        sleeper.wait()


def test_clock_skew_against_redis_time(private):
    r, _ = private
    survey = Survey(r, K)
    assert "clock_skew" not in {f.check for f in Doctor(survey, hostname=HOST).examine()}
    skewed = Doctor(survey, hostname=HOST, clock=lambda: time.time() + 600, clock_tolerance=60)
    assert [f.check for f in skewed.examine() if f.check == "clock_skew"] == ["clock_skew"]


def test_failed_list_size(private):
    r, url = private
    r.rpush(K.failed, *["{}"] * 10_001)
    finding = next(f for f in doctor(url)["findings"] if f["check"] == "failed_size")
    assert finding["severity"] == "warning" and "10001" in finding["breaks"]


def test_fix_repairs_every_safe_fault_without_losing_a_job(private):
    r, url = private
    fixture = every_safe_fault(r)
    live = fixture["worker_id"]
    result = admin(url, "doctor", "--fix", "--hostname", HOST)
    assert result.exit_code == 0, result.output
    assert result.output.count("fixed: ") >= 9
    after = doctor(url)
    assert checks(after, "critical") == [] and after["exit"] == 0
    assert set(checks(after)) <= {"failed_size", "unwatched_queue"}

    # Nothing lost: the waiting job is still queued, every held value is in exactly one entry.
    assert r.lrange(K.queue("critical"), 0, -1) == ['{"class":"Waiting","args":[1]}']
    entries = [json.loads(e) for e in r.lrange(K.failed, 0, -1)]
    held = sorted(json.dumps(e["payload"]) for e in entries)
    assert held == sorted(json.dumps(p) for p in [
        "not json at all", {"class": "Held", "args": ["expired"]}, {"class": "Held", "args": ["dead-pid"]},
        {"class": "Held", "args": ["orphan"]}, None])
    by_args = {json.dumps(e["payload"]): e for e in entries}
    assert by_args['{"class": "Held", "args": ["expired"]}']["exception"] == "Resque::PruneDeadWorkerDirtyExit"
    assert by_args['{"class": "Held", "args": ["expired"]}']["error"] == \
        "Worker otherhost:7:critical did not gracefully exit while processing Held"

    # What resque-web and a Ruby worker read is all readable, and shaped like Ruby's fixtures.
    state = dump(r)
    assert r.smembers(K.workers) == {live, "vm:5:critical"}  # alive: only its record was bad
    assert all(health.worker_id_problem(f) is None for f in r.hkeys(K.heartbeats))
    assert all(parse_heartbeat(v) is not None for v in r.hvals(K.heartbeats))
    for raw in r.lrange(K.failed, 0, -1):
        assert health.failure_entry_problem(raw) is None
    pruned = next(e for e in r.lrange(K.failed, 0, -1) if "dead-pid" in e)
    ruby = load_fixture("06b_dirty_exit_same_host.json")["keys"]["resque:failed"]["value"][0]
    wid = json.loads(pruned)["worker"]
    assert normalize({"f": {"type": "list", "value": [pruned.replace('"Held","args":["dead-pid"]',
                                                                     '"SleepJob","args":[600,"killed-b"]')]}}, [wid]) \
        == normalize({"f": {"type": "list", "value": [ruby]}}, ["vm:21854:critical,low"])
    expected = {k for k in fixture["keys"]} | {K.failed, K.queue("critical")}
    assert set(state) == expected
    assert K.scheduler_master_lock() not in state


def test_fix_never_touches_a_worker_that_came_back(private):
    r, url = private
    wid = "otherhost:7:critical"
    r.sadd(K.workers, wid)
    r.hset(K.heartbeats, wid, codec.iso8601_local(r.time()[0] - 400))
    survey = Survey(r, K)
    checker = Doctor(survey, hostname=HOST)
    findings = checker.examine()
    r.hset(K.heartbeats, wid, now_beat(r))  # it beat again between the check and the fix
    from resque_compat.doctor.repair import Repairer
    from resque_compat.store.store import Store

    assert Repairer(checker, Store(r, K), time.time).run(findings) == []
    assert r.sismember(K.workers, wid)


def test_scan_reads_a_large_keyspace_in_batches(private):
    r, url = private
    pipe = r.pipeline(transaction=False)
    for i in range(2_500):
        pipe.set(f"resque:worker:gone:{i}:q:started", "x")
    pipe.execute()
    data = doctor(url)
    orphans = [f for f in data["findings"] if f["check"] == "orphan_started"]
    assert len(orphans) == MAX_PER_CHECK + 1 and orphans[-1]["breaks"].startswith("1500 more")
    result = admin(url, "doctor", "--fix", "--hostname", HOST)
    assert result.exit_code == 0 and result.output.count("fixed: deleted") == 2_500
    assert r.dbsize() == 0


def test_a_running_resque_py_worker_is_healthy_to_the_doctor(r, redis_url, start_worker):
    """A real worker on this host (the real host name): title, pid and heartbeats pass."""
    worker = start_worker("QUEUE=critical", "FIBERS=2")
    ids = worker.wait_registered(r, count=2)
    result = admin(redis_url, "doctor", "--json")  # the shared server: its CONFIG is not ours
    data = json.loads(result.stdout)
    about_workers = [f for f in data["findings"] if f["subject"] in ids or f["check"] in (
        "title_not_recognised", "pid_not_exact", "ghost_dead_pid", "bad_worker_id", "bad_heartbeat")]
    assert about_workers == []
    assert {f["check"] for f in data["findings"]} <= {
        "failed_size", "no_persistence", "maxmemory_policy", "config_unreadable", "clock_skew"}


def test_fix_routes_dirty_exits_through_the_multi_queue_backend(private):
    r, url = private
    wid = f"{HOST}:{dead_pid()}:critical"
    r.sadd(K.workers, wid)
    r.set(K.worker(wid), held_job("multi"))
    result = admin(url, "doctor", "--fix", "--hostname", HOST, "--backend", "redis_multi_queue")
    assert result.exit_code == 0, result.output
    assert not r.exists(K.failed) and r.smembers(K.failed_queues) == {"critical_failed"}
    [raw] = r.lrange(K.queue_failed("critical"), 0, -1)
    assert json.loads(raw)["payload"] == {"class": "Held", "args": ["multi"]}


def test_unreachable_redis_exits_1():
    result = admin("redis://127.0.0.1:1/0", "doctor")
    assert result.exit_code == 1 and "resque-py:" in result.stderr


def test_a_pruning_lock_without_expiry_is_critical_and_fix_deletes_it_but_not_a_live_one(private):
    """Ruby's pruning lock is SET NX EX: one that lost its TTL stops all pruning for good."""
    r, url = private
    healthy(r)
    r.set("resque:pruning_dead_workers_in_progress", "vm:77:critical")  # no EX: never expires
    data = doctor(url)
    assert data["exit"] == 3
    assert checks(data, "critical") == ["pruning_lock_without_ttl"]
    result = admin(url, "doctor", "--fix", "--hostname", HOST)
    assert "deleted the pruning lock with no expiry (held by vm:77:critical)" in result.output
    assert not r.exists("resque:pruning_dead_workers_in_progress")
    assert doctor(url)["exit"] == 0

    r.set("resque:pruning_dead_workers_in_progress", "vm:78:critical", ex=60)  # Ruby's own, in use
    assert "pruning_lock_without_ttl" not in checks(doctor(url))
    admin(url, "doctor", "--fix", "--hostname", HOST)
    assert r.get("resque:pruning_dead_workers_in_progress") == "vm:78:critical"
