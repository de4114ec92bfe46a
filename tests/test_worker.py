"""The worker runtime as a user runs it: real ``resque-py work`` processes on the real Redis,
compared with what Ruby Resque 3.0 wrote in the same scenarios (fixtures 02-07, 13)."""
from __future__ import annotations

import json
import re
import signal
import socket
import statistics
import subprocess
import time

import pytest

from tests.conftest import wait_for
from tests.keyspace import dump, load_fixture, normalize

HOST = socket.gethostname()


def push(r, queue, payload):
    r.sadd("resque:queues", queue)
    r.rpush("resque:queue:" + queue, payload)


def job(cls, *args):
    return json.dumps({"class": cls, "args": list(args)}, separators=(",", ":"), ensure_ascii=False)


def fixture_keys(name, drop=()):
    fx = load_fixture(name)
    return normalize(fx["keys"], [fx["worker_id"]] if "worker_id" in fx else [], drop)


def test_idle_registration_matches_ruby_fixture_02(r, start_worker):
    w = start_worker("QUEUES=critical,low", "INTERVAL=0.2")
    [wid] = w.wait_registered(r)
    assert wid == f"{HOST}:{w.pid}:critical,low:0"
    wait_for(lambda: r.hget("resque:workers:heartbeat", wid), what="heartbeat")
    assert normalize(dump(r), [wid]) == fixture_keys("02_worker_idle.json")
    assert 55 <= r.ttl("resque:pruning_dead_workers_in_progress") <= 60
    w.signal(signal.SIGQUIT)
    assert w.wait() == 0
    assert set(r.keys("*")) == {"resque:pruning_dead_workers_in_progress"}


def test_busy_record_matches_ruby_fixture_03(r, start_worker):
    push(r, "critical", job("SleepJob", 4, "busy"))
    w = start_worker("QUEUES=critical,low")
    [wid] = w.wait_registered(r)
    assert r.blpop(["test:started"], timeout=10)
    ours = normalize(dump(r), [wid], drop=["test:started"])
    assert ours == fixture_keys("03_worker_busy.json")
    record = r.get("resque:worker:" + wid)
    assert record.endswith(',"payload":{"class":"SleepJob","args":[4,"busy"]}}')
    w.signal(signal.SIGKILL)
    w.wait()


def test_stats_and_failure_match_fixture_04_then_04b_after_quit(r, start_worker):
    for n in (1, 2, 3):
        push(r, "critical", job("OkJob", n))
    push(r, "critical", job("FailJob", "will fail", 99))
    w = start_worker("QUEUES=critical,low")
    [wid] = w.wait_registered(r)
    wait_for(lambda: r.get("resque:stat:processed") == "4", what="4 processed")
    ours = normalize(dump(r), [wid], drop=["test:ran"])
    expected = fixture_keys("04_processed.json")
    # The backtrace holds our Python frame instead of Ruby's: compare everything else exactly.
    ours_failed = json.loads(ours.pop("resque:failed")["value"][0])
    fx_failed = json.loads(expected.pop("resque:failed")["value"][0])
    assert ours == expected
    assert list(ours_failed) == list(fx_failed)  # same fields, same order
    assert ours_failed["backtrace"] and ours_failed["backtrace"][0].endswith("in `fail_job'")
    for field in ("failed_at", "payload", "exception", "error", "worker", "queue"):
        assert ours_failed[field] == fx_failed[field], field
    raw_failed = r.lindex("resque:failed", 0)
    assert '"error":"Bööm – ünïcödé failure ✗ \\"quoted\\" 日本語 😀"' in raw_failed

    w.signal(signal.SIGQUIT)
    assert w.wait() == 0
    ours = normalize(dump(r), [wid], drop=["test:ran"])
    expected = fixture_keys("04b_processed_after_unregister.json")
    ours.pop("resque:failed"), expected.pop("resque:failed")
    assert ours == expected


def test_unknown_class_failure_shape_like_fixture_13(r, run_worker):
    push(r, "critical", job("Does::Not::Exist", 1, "x"))
    w = run_worker("QUEUES=critical,low", "INTERVAL=0")
    assert w.code == 0
    [entry] = [json.loads(e) for e in r.lrange("resque:failed", 0, -1)]
    fx = json.loads(load_fixture("13_unknown_class_failure.json")["keys"]["resque:failed"]["value"][0])
    assert list(entry) == list(fx)
    assert entry["payload"] == fx["payload"]
    assert entry["queue"] == "critical" and entry["worker"].startswith(f"{HOST}:{w.pid}:critical,low:")
    assert entry["exception"] == "JobNotRegistered"
    assert "@job('Does::Not::Exist')" in entry["error"]
    assert r.get("resque:stat:processed") == "1" and r.get("resque:stat:failed") == "1"


@pytest.mark.parametrize("queues,fixture", [("*", "07_wildcard.json"),
                                            ("mid,*,!beta", "07b_wildcard_priority_and_exclusion.json")])
def test_queue_order_and_ids_like_fixture_07(r, run_worker, queues, fixture):
    for q, n in (("zeta", 1), ("beta", 1), ("alpha", 1), ("mid", 1), ("beta", 2)):
        push(r, q, job("OrderJob", q, n))
    fx = load_fixture(fixture)
    w = run_worker("QUEUES=" + queues, "INTERVAL=0")
    assert w.code == 0, w.output
    assert r.lrange("test:order", 0, -1) == fx["processing_order"]
    expected_id_field = fx["worker_id"].split(":", 2)[2]
    assert f"Starting 1 worker(s) {HOST}:{w.pid}:{expected_id_field}" in w.output
    leftover = {k: v for k, v in normalize(dump(r), []).items()
                if k.startswith("resque:queue:")}
    assert leftover == {k: v for k, v in fixture_keys(fixture).items() if k.startswith("resque:queue:")}


def test_worker_id_field_drops_exclusions(r, start_worker):
    w = start_worker("QUEUES=mid,*,!beta", "FIBERS=2")
    ids = w.wait_registered(r, 2)
    assert ids == [f"{HOST}:{w.pid}:mid,*:0", f"{HOST}:{w.pid}:mid,*:1"]
    w.signal(signal.SIGQUIT)
    assert w.wait() == 0
    assert r.smembers("resque:workers") == set()


def test_one_id_per_slot_and_process_title(r, start_worker):
    w = start_worker("QUEUE=critical,low", "FIBERS=100")
    ids = w.wait_registered(r, 100)
    assert ids == sorted(f"{HOST}:{w.pid}:critical,low:{n}" for n in range(100))
    assert set(r.hkeys("resque:workers:heartbeat")) == set(ids)
    title = wait_for(lambda: _title(w.pid) if "Waiting" in _title(w.pid) else None, what="title")
    assert title.startswith("resque-3.0.0: Waiting for critical,low")
    for n in range(3):
        push(r, "critical", job("WaitJob", f"t{n}"))
    for _ in range(3):
        assert r.blpop(["test:started"], timeout=10)
    wait_for(lambda: "Processing 3 of 100" in _title(w.pid), what="processing title")
    for n in range(3):
        r.rpush(f"test:release:t{n}", "go")
    w.signal(signal.SIGUSR2)
    wait_for(lambda: _title(w.pid).startswith("resque-3.0.0: Paused"), what="paused title")
    w.signal(signal.SIGQUIT)
    assert w.wait() == 0


def _title(pid):
    return subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True,
                          text=True).stdout.strip()


def test_interval_zero_drains_then_exits(r, run_worker):
    for n in range(50):
        push(r, "critical" if n % 2 else "low", job("OkJob", n))
    w = run_worker("QUEUE=critical,low", "FIBERS=10", "INTERVAL=0")
    assert w.code == 0
    assert r.llen("test:ran") == 50
    assert r.get("resque:stat:processed") == "50"
    assert r.smembers("resque:workers") == set()
    assert not r.exists("resque:queue:critical", "resque:queue:low")


def test_no_prefetch_takes_only_what_free_slots_can_start(r, start_worker):
    for n in range(5):
        push(r, "critical", job("WaitJob", f"p{n}"))
    w = start_worker("QUEUE=critical", "FIBERS=2")
    ids = w.wait_registered(r, 2)
    assert r.blpop(["test:started"], timeout=10) and r.blpop(["test:started"], timeout=10)
    assert r.llen("resque:queue:critical") == 3
    held = [json.loads(v) for v in r.mget(["resque:worker:" + i for i in ids])]
    assert sorted(h["payload"]["args"][0] for h in held) == ["p0", "p1"]
    for n in range(5):
        r.rpush(f"test:release:p{n}", "go")
    wait_for(lambda: r.get("resque:stat:processed") == "5", what="5 processed")
    w.signal(signal.SIGQUIT)
    assert w.wait() == 0


def test_strict_priority_after_every_job(r, run_worker):
    for n in range(3):
        push(r, "low", job("OrderJob", "low", n))
    push(r, "critical", job("OrderJob", "critical", 0))
    w = run_worker("QUEUE=critical,low", "INTERVAL=0")
    assert w.code == 0
    assert r.lrange("test:order", 0, -1) == ["critical/0", "low/0", "low/1", "low/2"]


def test_pickup_latency_median_under_50ms(r, start_worker):
    w = start_worker("QUEUE=critical", "FIBERS=5")  # default INTERVAL=5
    w.wait_registered(r, 5)
    for _ in range(30):
        push(r, "critical", job("StampJob", repr(time.time())))
        assert r.blpop(["test:latency"], timeout=10) is not None
        time.sleep(0.03)  # spacing between enqueues, so each one arrives at idle workers
    r.delete("test:latency")
    latencies = []
    for _ in range(30):
        push(r, "critical", job("StampJob", repr(time.time())))
        _, value = r.blpop(["test:latency"], timeout=10)
        latencies.append(float(value))
        time.sleep(0.013)
    assert statistics.median(latencies) < 0.05, latencies
    w.signal(signal.SIGQUIT)
    assert w.wait() == 0


def test_pause_all_workers_key_is_honoured(r, start_worker):
    r.set("resque:pause-all-workers", " TRUE\n")
    push(r, "critical", job("OkJob", 1))
    w = start_worker("QUEUE=critical", "FIBERS=2")
    w.wait_registered(r, 2)
    wait_for(lambda: _title(w.pid).startswith("resque-3.0.0: Paused"), what="paused title")
    assert r.llen("resque:queue:critical") == 1
    r.delete("resque:pause-all-workers")
    assert r.blpop(["test:ran"], timeout=10)
    w.signal(signal.SIGQUIT)
    assert w.wait() == 0


def test_bad_payloads_become_failures_and_worker_survives(r, run_worker):
    bad = ["garbage{", "[1,2]", '"just a string"', '{"args":[1]}', '{"class":5,"args":[]}',
           '{"class":"OkJob","args":5}', '{"class":"OkJob","args":[NaN]}',
           '{"class":"OkJob","args":[1]', "\xff\xfe not utf8"]
    for item in bad:
        push(r, "critical", item)
    push(r, "critical", job("OkJob", "after"))
    w = run_worker("QUEUE=critical", "FIBERS=3", "INTERVAL=0")
    assert w.code == 0, w.output
    failures = [json.loads(e) for e in r.lrange("resque:failed", 0, -1)]
    assert len(failures) == len(bad)
    assert r.lrange("test:ran", 0, -1) == ["('after',)"]
    assert r.get("resque:stat:processed") == str(len(bad) + 1)
    assert r.get("resque:stat:failed") == str(len(bad))
    by_error = {f["error"]: f for f in failures}
    for entry in failures:
        assert list(entry) == ["failed_at", "payload", "exception", "error", "backtrace", "worker", "queue"]
        assert isinstance(entry["backtrace"], list) and entry["worker"] and entry["queue"] == "critical"
        assert entry["payload"] is not None
    non_objects = [f["payload"] for f in failures if not isinstance(f["payload"], dict)]
    assert "garbage{" in non_objects and "[1,2]" in non_objects and "just a string" not in non_objects
    assert any("not valid JSON" in e for e in by_error)
    assert any("JSON array" in e for e in by_error)
    assert any('"args"' in e for e in by_error)


def test_sigterm_kills_jobs_after_grace_and_records_them(r, start_worker):
    push(r, "critical", job("SleepJob", 30, "long"))
    push(r, "critical", job("SleepJob", 0.3, "short"))
    w = start_worker("QUEUE=critical", "FIBERS=2", "RESQUE_TERM_TIMEOUT=1.5")
    ids = w.wait_registered(r, 2)
    assert r.blpop(["test:started"], timeout=10) and r.blpop(["test:started"], timeout=10)
    started = time.time()
    w.signal(signal.SIGTERM)
    time.sleep(0.1)
    w.signal(signal.SIGTERM)  # a second TERM must not cut the grace period short
    assert w.wait() == 0
    elapsed = time.time() - started
    assert 1.4 <= elapsed < 8, elapsed
    assert r.lrange("test:finished", 0, -1) == ["[0.3, 'short']"]
    [entry] = [json.loads(e) for e in r.lrange("resque:failed", 0, -1)]
    assert entry["exception"] == "Resque::TermException" and entry["error"] == "SIGTERM"
    assert entry["payload"] == {"class": "SleepJob", "args": [30, "long"]}
    assert r.get("resque:stat:processed") == "2" and r.get("resque:stat:failed") == "1"
    assert not any(r.exists("resque:worker:" + i) for i in ids)
    assert r.smembers("resque:workers") == set()


def test_sigquit_finishes_in_flight_jobs(r, start_worker):
    push(r, "critical", job("SleepJob", 1, "q"))
    w = start_worker("QUEUE=critical", "FIBERS=2")
    w.wait_registered(r, 2)
    assert r.blpop(["test:started"], timeout=10)
    push(r, "critical", job("OkJob", "not taken"))
    w.signal(signal.SIGQUIT)
    assert w.wait() == 0
    assert r.lrange("test:finished", 0, -1) == ["[1, 'q']"]
    assert r.llen("resque:failed") == 0
    # QUIT stops taking jobs; whatever was still queued stays queued for another worker.
    assert r.llen("resque:queue:critical") + r.llen("test:ran") == 1


def test_sigusr1_kills_in_flight_jobs_and_keeps_working(r, start_worker):
    push(r, "critical", job("SleepJob", 30, "u"))
    w = start_worker("QUEUE=critical")
    w.wait_registered(r)
    assert r.blpop(["test:started"], timeout=10)
    w.signal(signal.SIGUSR1)
    wait_for(lambda: r.llen("resque:failed") == 1, what="failure from USR1")
    push(r, "critical", job("OkJob", "still working"))
    assert r.blpop(["test:ran"], timeout=10)
    entry = json.loads(r.lindex("resque:failed", 0))
    # Ruby SIGKILLs the forked child and records what Process::Status#to_s says (issue 14).
    assert entry["exception"] == "Resque::DirtyExit"
    assert entry["error"] == f"Child process received unhandled signal pid {w.pid} SIGKILL (signal 9)"
    assert entry["payload"] == {"class": "SleepJob", "args": [30, "u"]}
    assert entry["backtrace"] == []  # Ruby's DirtyExit is never raised, so it has none (06b)
    # A DirtyExit is processed but never counted as failed, as in Ruby (WIRE §1.2). OkJob's
    # count lands with the fetcher's next trip, just after its body pushed test:ran.
    wait_for(lambda: r.get("resque:stat:processed") == "2", what="both jobs counted as processed")
    assert r.get("resque:stat:failed") is None
    w.signal(signal.SIGUSR1)  # nothing running: nothing to kill, the slot goes on
    push(r, "critical", job("OkJob", "after an idle USR1"))
    assert r.blpop(["test:ran"], timeout=10)
    w.signal(signal.SIGQUIT)
    assert w.wait() == 0


def test_usr2_pauses_and_cont_resumes(r, start_worker):
    w = start_worker("QUEUE=critical", "FIBERS=2")
    w.wait_registered(r, 2)
    w.signal(signal.SIGUSR2)
    wait_for(lambda: _title(w.pid).startswith("resque-3.0.0: Paused"), what="paused title")
    push(r, "critical", job("OkJob", "while paused"))
    assert r.blpop(["test:ran"], timeout=0.5) is None
    assert r.llen("resque:queue:critical") == 1
    w.signal(signal.SIGCONT)
    assert r.blpop(["test:ran"], timeout=10)
    w.signal(signal.SIGINT)
    assert w.wait() == 0


def test_redis_connections_are_bounded_not_one_per_greenlet(r, start_worker):
    before = len(r.client_list())
    w = start_worker("QUEUE=critical", "FIBERS=200")
    w.wait_registered(r, 200)
    for n in range(400):
        push(r, "critical", job("NoopJob", n))  # a job that opens no Redis client of its own
    wait_for(lambda: r.get("resque:stat:processed") == "400", timeout=30, what="400 processed")
    during = len(r.client_list()) - before
    # min(FIBERS, 16) + 4 pool connections + the heartbeat thread's own connection.
    assert during <= 16 + 4 + 1, during
    w.signal(signal.SIGQUIT)
    assert w.wait() == 0


def test_startup_errors_are_one_clear_line(r, python):
    out = subprocess.run([python, "-m", "resque_compat", "work", "-r", "tests/jobs.py"],
                         capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}, cwd=_root())
    assert out.returncode == 2 and "QUEUE" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    out = subprocess.run([python, "-m", "resque_compat", "work", "QUEUE=x", "-r", "no_such_mod_xyz"],
                         capture_output=True, text=True, cwd=_root())
    assert out.returncode == 2 and "no_such_mod_xyz" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def _root():
    import os
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_pidfile_and_log_levels(r, start_worker, tmp_path):
    """PIDFILE is written while running and removed at exit; quiet by default (start/stop only),
    one line per job with VERBOSE, Ruby's very-verbose format with VVERBOSE, JSON on request."""
    pidfile = tmp_path / "worker.pid"
    push(r, "critical", job("OkJob", 1))
    w = start_worker("QUEUE=critical", f"PIDFILE={pidfile}")
    w.wait_registered(r)
    assert pidfile.read_text().strip() == str(w.pid)
    assert r.blpop(["test:ran"], timeout=10)
    w.signal(signal.SIGQUIT)
    assert w.wait() == 0
    assert not pidfile.exists()
    assert "Starting 1 worker(s)" in w.output and "Exiting" in w.output
    assert "OkJob" not in w.output  # no per-job lines unless VERBOSE

    def run(*words):
        push(r, "critical", job("OkJob", 2))
        push(r, "critical", job("FailJob"))
        proc = start_worker("QUEUE=critical", "INTERVAL=0", *words)
        assert proc.wait() == 0
        return proc.output.strip().splitlines()

    verbose = run("VERBOSE=1")
    assert "*** done: (critical) OkJob" in verbose
    assert any(line.startswith("*** failed: (critical) FailJob: RuntimeError") for line in verbose)
    very = run("VVERBOSE=1")
    assert any(re.match(r"\*\* \[\d\d:\d\d:\d\d \d{4}-\d\d-\d\d\] \d+: done: \(critical\) OkJob", line)
               for line in very), very
    entries = [json.loads(line) for line in run("VERBOSE=1", "LOG_FORMAT=json")]
    done = [e for e in entries if e["message"] == "done: (critical) OkJob"]
    assert done and done[0]["queue"] == "critical" and done[0]["job_class"] == "OkJob"
    assert {"time", "level", "pid", "message"} <= set(done[0])
