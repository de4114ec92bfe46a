"""``resque-py doctor`` on a private redis-server (its CONFIG is ours to change): each broken
value WIRE §3.4/§5.2 lists is planted, found, reported with the right exit code, and ``--fix``
leaves a keyspace of the shape Ruby's fixtures show, without losing a job."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from resque_compat.doctor.checks import MAX_PER_CHECK, Doctor
from resque_compat.store.survey import Survey
from resque_compat.wire import codec, health
from resque_compat.wire.codec import parse_heartbeat
from resque_compat.wire.keys import Keys
from tests.keyspace import dump, load_fixture, load_keys, normalize
from tests.redis_servers import redis_servers  # noqa: F401  (fixture)
from tests.test_admin_cli import admin

#: The host the doctor takes as its own. Not the real one: the fixtures' ids are ``vm:<pid>``
#: and this machine may be called vm too; pid checks still probe this machine's processes.
HOST = "doctorhost"
K = Keys()


@pytest.fixture
def private(redis_servers):  # noqa: F811
    """(client, url) of a fresh redis-server with persistence on and noeviction: healthy."""
    server = redis_servers("doctor", ["--appendonly", "yes", "--maxmemory-policy", "noeviction"])
    server.wait_ready(server.client)
    client = server.client()
    yield client, f"redis://127.0.0.1:{server.port}/0"
    client.close()


def now_beat(r) -> str:
    secs, _ = r.time()
    return codec.iso8601_local(secs)


def doctor(url, *args):
    result = admin(url, "doctor", "--json", "--hostname", HOST, *args)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    data = json.loads(result.stdout)
    assert data["exit"] == result.exit_code
    return data


def checks(data, severity=None):
    return sorted({f["check"] for f in data["findings"] if severity in (None, f["severity"])})


def busy_fixture(r):
    """Fixture 03 (a Ruby worker running a job on host ``vm``) with a fresh heartbeat."""
    fixture = load_fixture("03_worker_busy.json")
    load_keys(r, fixture["keys"])
    for wid in r.hkeys(K.heartbeats):
        r.hset(K.heartbeats, wid, now_beat(r))
    return fixture


def test_a_healthy_ruby_keyspace_exits_zero(private):
    r, url = private
    busy_fixture(r)
    data = doctor(url)
    assert data["exit"] == 0
    assert checks(data, "critical") == []
    assert checks(data) == ["failed_size"]


@pytest.mark.parametrize("plant, check", [
    (lambda r: r.sadd(K.workers, "garbage"), "bad_worker_id"),
    (lambda r: r.sadd(K.workers, "vm:123"), "bad_worker_id"),
    (lambda r: r.sadd(K.workers, "vm:123:"), "bad_worker_id"),
    (lambda r: r.hset(K.heartbeats, "vm:123", now_beat(r)), "bad_heartbeat_field"),
    (lambda r: r.hset(K.heartbeats, "vm:1:q", "garbage"), "bad_heartbeat"),
    (lambda r: r.hset(K.heartbeats, "vm:1:q", "1795780541"), "bad_heartbeat"),
    (lambda r: r.set(K.worker("vm:1:q"), "{not json"), "bad_worker_record"),
    (lambda r: r.set(K.worker("vm:1:q"), ""), "bad_worker_record"),
    (lambda r: r.set(K.worker("vm:1:q"), "[1]"), "bad_worker_record"),
    (lambda r: r.set(K.worker("vm:1:q"), '{"queue":"q","run_at":"x"}'), "bad_worker_record"),
    (lambda r: r.set(K.worker("vm:1:q"), '{"queue":"q","payload":null}'), "bad_worker_record"),
    (lambda r: r.set(K.worker("vm:1:q"), '{"queue":"q","run_at":"x","payload":{"class":'
                     '"ActiveJob::QueueAdapters::ResqueAdapter::JobWrapper","args":[]}}'), "bad_worker_record"),
    (lambda r: r.delete(K.worker_started("vm:1:q")) and r.hset(K.worker_started("vm:1:q"), "a", "b"),
     "wrong_type"),
    (lambda r: r.config_set("maxmemory-policy", "allkeys-lru"), "maxmemory_policy"),
    (lambda r: r.config_set("appendonly", "no") and r.config_set("save", ""), "no_persistence"),
])
def test_each_breaking_value_is_critical(private, plant, check):
    r, url = private
    busy_fixture(r)
    r.sadd(K.workers, "vm:1:q")
    r.hset(K.heartbeats, "vm:1:q", now_beat(r))
    r.set(K.worker_started("vm:1:q"), "2026-11-27 11:55:41 +0000")
    assert doctor(url)["exit"] == 0
    plant(r)
    data = doctor(url)
    assert data["exit"] == 3
    assert checks(data, "critical") == [check]
    finding = next(f for f in data["findings"] if f["check"] == check)
    assert finding["key"] and finding["breaks"] and finding["fix"]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_warnings_and_notes(private):
    r, url = private
    busy_fixture(r)
    old = codec.iso8601_local(r.time()[0] - 400)
    r.sadd(K.workers, "otherhost:7:critical")
    r.hset(K.heartbeats, "otherhost:7:critical", old)                       # expired heartbeat
    dead = f"{HOST}:{_dead_pid()}:critical"
    r.sadd(K.workers, dead)                                                  # dead pid, this host
    r.sadd(K.workers, "farhost:9:critical")                                  # no heartbeat at all
    r.set(K.worker_started("gone:1:critical"), "2026-11-27 11:55:41 +0000")  # orphans
    r.set(K.worker_processed("gone:1:critical"), 3)
    r.set(K.worker("gone:2:critical"), '{"queue":"critical","run_at":"2026-11-27T11:55:41Z",'
                                       '"payload":{"class":"Lost","args":[1]}}')
    r.rpush(K.queue("nobody"), '{"class":"X","args":[]}')                    # nobody listens
    r.set(K.scheduler_master_lock(), f"{HOST}:{_dead_pid()}", ex=180)       # dead scheduler
    r.set(K.pause_all_workers, " TRUE ")
    r.set(K.paused_queue("critical"), "true")
    r.set(K.pause_all, "true")
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


def _job(name):
    return codec.encode({"queue": "critical", "run_at": "2026-11-27T11:55:41Z",
                         "payload": {"class": "Held", "args": [name]}})


def test_fix_repairs_every_safe_fault_without_losing_a_job(private):
    r, url = private
    fixture = busy_fixture(r)
    live = next(iter(r.smembers(K.workers)))
    r.rpush(K.queue("critical"), '{"class":"Waiting","args":[1]}')
    old = codec.iso8601_local(r.time()[0] - 400)
    plants = {
        "garbage": None, "vm:123:": "not json at all",          # bad ids, one holding bytes
        "otherhost:7:critical": _job("expired"),                  # expired heartbeat, a job
        f"{HOST}:{_dead_pid()}:critical": _job("dead-pid"),       # dead pid on this host
    }
    for wid, record in plants.items():
        r.sadd(K.workers, wid)
        r.set(K.worker_started(wid), "2026-11-27 11:55:41 +0000")
        if record is not None:
            r.set(K.worker(wid), record)
    r.hset(K.heartbeats, "otherhost:7:critical", old)
    r.hset(K.heartbeats, "vm:123", now_beat(r))                 # bad field name
    r.sadd(K.workers, "vm:5:critical")
    r.hset(K.heartbeats, "vm:5:critical", now_beat(r))
    r.hset(K.heartbeats, "vm:6:critical", "1795780541")          # bad value
    r.set(K.worker("vm:5:critical"), '{"queue":"critical","payload":null}')
    r.set(K.worker("gone:2:critical"), _job("orphan"))           # orphaned record with a job
    r.set(K.worker_failed("gone:3:critical"), 1)
    r.set(K.scheduler_master_lock(), f"{HOST}:{_dead_pid()}", ex=180)

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
    wid = f"{HOST}:{_dead_pid()}:critical"
    r.sadd(K.workers, wid)
    r.set(K.worker(wid), _job("multi"))
    result = admin(url, "doctor", "--fix", "--hostname", HOST, "--backend", "redis_multi_queue")
    assert result.exit_code == 0, result.output
    assert not r.exists(K.failed) and r.smembers(K.failed_queues) == {"critical_failed"}
    [raw] = r.lrange(K.queue_failed("critical"), 0, -1)
    assert json.loads(raw)["payload"] == {"class": "Held", "args": ["multi"]}


def test_unreachable_redis_exits_1():
    result = admin("redis://127.0.0.1:1/0", "doctor")
    assert result.exit_code == 1 and "resque-py:" in result.stderr
