"""The operator commands through click's CliRunner against the real Redis, on data Ruby wrote
(fixtures 02, 03, 05, 06a/06b, 08, 10/10b), plus real ``resque-py`` processes pausing and
resuming a real worker."""
from __future__ import annotations

import hashlib
import json
import re
import signal
import socket

import pytest
from click.testing import CliRunner

from resque_compat.cli.main import main_group
from resque_compat.wire import codec
from resque_compat.wire.codec import parse_heartbeat
from tests.keyspace import dump, load_fixture, load_keys, normalize
from tests.test_cli import CLI_ENV, run
from tests.test_worker import _title, wait_for

ZONELESS_RETRIED_AT = re.compile(r'"retried_at":"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d"')


def admin(redis_url, *args, input=None, **env):
    """``resque-py --redis URL ARGS...`` in-process, with only ``env`` set and ``input`` on
    stdin (for confirmation prompts); returns the click Result."""
    full = {name: None for name in CLI_ENV}
    full.update(env)
    return CliRunner().invoke(main_group, ["--redis", redis_url, *args], input=input, env=full,
                              prog_name="resque-py")


def fixture_keys(name, drop=()):
    return {k: v for k, v in load_fixture(name)["keys"].items() if k not in drop}


# -- workers ----------------------------------------------------------------------------------

def test_workers_table_and_json_for_ruby_workers(r, redis_url):
    idle, busy = load_fixture("02_worker_idle.json"), load_fixture("03_worker_busy.json")
    load_keys(r, idle["keys"])
    load_keys(r, busy["keys"])
    busy_id, idle_id = busy["worker_id"], idle["worker_id"]
    result = admin(redis_url, "workers", "--json")
    assert result.exit_code == 0, result.output
    rows = {row["id"]: row for row in json.loads(result.stdout)}
    assert set(rows) == {busy_id, idle_id}
    record = json.loads(busy["keys"][f"resque:worker:{busy_id}"]["value"])
    host, pid, queues = busy_id.split(":")
    beat = busy["keys"]["resque:workers:heartbeat"]["value"][busy_id]
    server_now = r.time()[0]
    row = rows[busy_id]
    assert 0 <= server_now - parse_heartbeat(beat) - row.pop("heartbeat_age") <= 1
    assert row == {
        "id": busy_id, "host": host, "pid": int(pid), "queues": queues.split(","),
        "processing": {"queue": record["queue"], "run_at": record["run_at"],
                       "class": record["payload"]["class"], "payload": record["payload"]},
        "started": busy["keys"][f"resque:worker:{busy_id}:started"]["value"], "heartbeat": beat,
    }
    assert rows[idle_id]["processing"] is None

    result = admin(redis_url, "workers")
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "HOST", "PID", "QUEUES", "PROCESSING", "STARTED", "HEARTBEAT"]
    busy_line = next(line for line in lines if line.startswith(busy_id))
    assert f"SleepJob (critical) since {record['run_at']}" in busy_line
    assert re.search(r"\(\d+s ago\)$", busy_line)
    assert "idle" in next(line for line in lines if line.startswith(idle_id)).split()
    assert lines[-1] == "1 of 2 worker(s) working"


def test_workers_shows_activejob_class_and_survives_foreign_ids(r, redis_url):
    wrapper = load_fixture("08_activejob.json")["keys"]["resque:queue:critical"]["value"][0]
    r.sadd("resque:workers", "vm:7:critical:0", "garbage")
    r.set("resque:worker:vm:7:critical:0",
          '{"queue":"critical","run_at":"2026-11-27T12:02:03Z","payload":' + wrapper + "}")
    r.set("resque:worker:garbage", "not json")
    result = admin(redis_url, "workers", "--json")
    assert result.exit_code == 0, result.output
    rows = {row["id"]: row for row in json.loads(result.stdout)}
    assert rows["vm:7:critical:0"]["processing"]["class"] == "AjJob (via ActiveJob)"
    assert rows["garbage"]["host"] is None and rows["garbage"]["processing"]["raw"] == "not json"
    assert "working (job record unreadable)" in admin(redis_url, "workers").stdout


# -- failed ---------------------------------------------------------------------------------------

def test_failed_list_and_show_on_rubys_failure(r, redis_url):
    load_keys(r, fixture_keys("05_failure_requeued.json"))
    [raw] = r.lrange("resque:failed", 0, -1)
    result = admin(redis_url, "failed", "list", "--json")
    assert result.exit_code == 0, result.output
    stable_id = hashlib.sha1(raw.encode("utf-8")).hexdigest()[:12]  # of the exact bytes
    assert json.loads(result.stdout) == {"total": 1, "failures": [
        {"ref": f"0:{stable_id}", "id": stable_id, "index": 0, "list": "failed", "entry": json.loads(raw)}]}
    lines = admin(redis_url, "failed", "list").stdout.splitlines()
    assert lines[0].split() == ["INDEX", "ID", "QUEUE", "FAILED", "AT", "CLASS", "EXCEPTION", "ERROR",
                                "RETRIED", "AT"]
    assert lines[1].split()[:8] == ["0", stable_id, "critical", "2026/11/27", "12:01:36", "UTC", "FailJob",
                                    "RuntimeError"]
    assert lines[-1] == "1 of 1 failure(s) shown"
    text = admin(redis_url, "failed", "show", "0").stdout
    assert "args:       [\"retry me\", {\"k\": [1, 2]}]" in text
    assert "  app/jobs/fixture_jobs.rb:27:in `perform'" in text
    assert json.loads(admin(redis_url, "failed", "show", "0", "--json").stdout)["entry"] == json.loads(raw)


def test_failed_list_pages_and_filters(r, redis_url):
    for n in range(5):
        r.rpush("resque:failed", codec.encode({"failed_at": "2026/11/27 12:00:00 UTC",
                                               "payload": {"class": "J", "args": [n]},
                                               "queue": "low" if n % 2 else "critical"}))
    page = json.loads(admin(redis_url, "failed", "list", "--start", "1", "--count", "2", "--json").stdout)
    assert page["total"] == 5 and [f["index"] for f in page["failures"]] == [1, 2]
    low = json.loads(admin(redis_url, "failed", "list", "--queue", "low", "--json").stdout)
    assert low["total"] == 2 and [f["index"] for f in low["failures"]] == [1, 3]
    text = admin(redis_url, "failed", "list", "--count", "2").stdout
    assert text.splitlines()[-1] == "2 of 5 failure(s) shown; use --start/--count for more"


def test_failed_retry_matches_fixture_05(r, redis_url):
    fx = load_fixture("05_failure_requeued.json")
    before = fixture_keys("05_failure_requeued.json", drop=["resque:queue:critical"])
    before["resque:failed"] = {"type": "list", "value": [fx["failed_entry_before_requeue"]]}
    load_keys(r, before)
    result = admin(redis_url, "failed", "retry", "0")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("retried failed[0]: FailJob back on critical (retried_at ")
    assert normalize(dump(r), []) == normalize(fx["keys"], [])


@pytest.mark.parametrize("how", ["option", "env"])
def test_failed_retry_matches_fixture_10b_with_multi_queue(r, redis_url, how):
    load_keys(r, fixture_keys("10_failed_multi_queue.json"))
    args, env = (["--backend", "redis_multi_queue"], {}) if how == "option" else \
        ([], {"FAILURE_BACKEND": "redis_multi_queue"})
    result = admin(redis_url, "failed", *args, "retry", "0", "--queue", "critical", **env)
    assert result.exit_code == 0, result.output

    def masked(keys):
        entry = keys["resque:critical_failed"]["value"][0]
        keys["resque:critical_failed"]["value"] = [ZONELESS_RETRIED_AT.sub('"retried_at":"<t>"', entry)]
        return keys
    ours, ruby = dump(r), load_fixture("10b_failed_multi_queue_requeued.json")["keys"]
    assert ZONELESS_RETRIED_AT.search(ours["resque:critical_failed"]["value"][0])
    assert masked(ours) == masked(ruby)


def test_failed_retry_all_remove_and_clear(r, redis_url):
    load_keys(r, fixture_keys("10_failed_multi_queue.json"))
    result = admin(redis_url, "failed", "list")  # the default backend reads only `failed`
    assert result.stdout.splitlines()[-1] == "0 of 0 failure(s) shown"
    assert "failures exist in per-queue lists; use --backend redis_multi_queue" in result.stderr
    multi = ["failed", "--backend", "redis_multi_queue"]
    result = admin(redis_url, *multi, "retry", "--all")
    assert (result.exit_code, result.stdout) == (0, "retried 2 failure(s)\n")
    assert r.lrange("resque:queue:low", 0, -1) == ['{"class":"FailJob","args":["multi-low",2]}']
    assert admin(redis_url, *multi, "show", "0").exit_code == 2  # two lists: which one?
    result = admin(redis_url, *multi, "remove", "0", "--queue", "low")
    assert result.exit_code == 0 and result.stdout == "removed low_failed[0]: FailJob\n"
    assert not r.exists("resque:low_failed")
    result = admin(redis_url, *multi, "clear", "--retried")
    assert result.stdout == "cleared 1 retried failure(s)\n" and not r.exists("resque:critical_failed")
    assert r.smembers("resque:failed_queues") == {"critical_failed", "low_failed"}  # as Ruby


def test_failed_clear_asks_first_unless_yes(r, redis_url):
    r.rpush("resque:failed", '{"queue":"a"}', '{"queue":"b"}', '{"queue":"a"}')
    result = admin(redis_url, "failed", "clear", input="n\n")
    assert result.exit_code == 1 and "Delete 3 failure(s)?" in result.output
    assert r.llen("resque:failed") == 3
    result = admin(redis_url, "failed", "clear", "--queue", "a", input="y\n")
    assert result.exit_code == 0 and "cleared 2 failure(s)" in result.output
    assert r.lrange("resque:failed", 0, -1) == ['{"queue":"b"}']
    assert admin(redis_url, "failed", "clear", "--yes").stdout == "cleared 1 failure(s)\n"
    assert not r.exists("resque:failed")


def test_failed_errors_are_one_line_with_the_next_step(r, redis_url):
    r.rpush("resque:failed", '{"payload":{"class":"X","args":[]},"worker":"vm:1:q"}')
    result = admin(redis_url, "failed", "retry", "0")
    assert result.exit_code == 1
    assert "No queue could be inferred for class X" in result.stderr
    assert json.loads(r.lindex("resque:failed", 0))["retried_at"]  # written first, as Ruby
    for args, code, text in [(["retry"], 2, "give either a failure INDEX or --all"),
                             (["remove", "4"], 2, "no failure at index 4 in failed (1 entries)"),
                             (["show", "0", "--queue", "q"], 2, "leave out --queue")]:
        result = admin(redis_url, "failed", *args)
        assert result.exit_code == code and text in result.stderr, (args, result.output)
        assert len(result.stderr.strip().splitlines()) == 1


# -- remove-worker ----------------------------------------------------------------------------------

def test_remove_worker_writes_rubys_dirty_exit_and_unregisters(r, redis_url):
    killed = load_fixture("06a_dirty_exit_killed.json")
    load_keys(r, fixture_keys("06a_dirty_exit_killed.json", drop=["resque:pruning_dead_workers_in_progress"]))
    dead = killed["dead_worker_id"]
    result = admin(redis_url, "remove-worker", dead)
    assert result.exit_code == 0, result.output
    assert result.stdout == (f"removed worker {dead}\nits job SleepJob was recorded as a "
                             "Resque::DirtyExit failure\n")
    # Ruby's own DirtyExit for the same kind of job (06b), with that fixture's ids and args.
    pruned = load_fixture("06b_dirty_exit_same_host.json")
    ruby_entry = pruned["keys"]["resque:failed"]["value"][0].replace("killed-b", "killed")
    expected = {"resque:failed": {"type": "list", "value": [ruby_entry]},
                "resque:queues": killed["keys"]["resque:queues"]}
    assert normalize(dump(r), [dead]) == normalize(expected, [pruned["dead_worker_id"]])


def test_remove_worker_with_multi_queue_and_unknown_ids(r, redis_url):
    load_keys(r, fixture_keys("06a_dirty_exit_killed.json"))
    dead = load_fixture("06a_dirty_exit_killed.json")["dead_worker_id"]
    result = admin(redis_url, "remove-worker", dead, FAILURE_BACKEND="redis_multi_queue")
    assert result.exit_code == 0, result.output
    assert json.loads(r.lindex("resque:critical_failed", 0))["exception"] == "Resque::DirtyExit"
    assert r.smembers("resque:failed_queues") == {"critical_failed"}
    result = admin(redis_url, "remove-worker", dead)
    assert result.exit_code == 2
    assert "no worker 'vm:21241:critical,low' is registered; `resque-py workers` lists the ids" in result.stderr


# -- queues ---------------------------------------------------------------------------------------

def test_queues_json_clear_and_remove(r, redis_url):
    load_keys(r, fixture_keys("01_enqueue.json"))
    sizes = {q: r.llen("resque:queue:" + q) for q in r.smembers("resque:queues")}
    listed = json.loads(admin(redis_url, "queues", "--json").stdout)
    assert [(q["name"], q["size"]) for q in listed] == [(q, sizes[q]) for q in sorted(sizes)]
    # Ruby's plain payloads have no enqueued_at: one look cannot tell their age.
    assert {(q["oldest_age"], q["age_method"]) for q in listed} == {(None, None)}
    result = admin(redis_url, "queues", "--clear", "critical", input="n\n")
    assert result.exit_code == 1 and r.llen("resque:queue:critical") == sizes["critical"]
    result = admin(redis_url, "queues", "--clear", "critical", "--yes")
    assert result.stdout == f"cleared critical: {sizes['critical']} job(s) dropped\n"
    assert not r.exists("resque:queue:critical") and "critical" in r.smembers("resque:queues")
    result = admin(redis_url, "queues", "--remove", "low", "-y")
    assert result.stdout == f"removed low: {sizes['low']} job(s) dropped\n"
    assert "low" not in r.smembers("resque:queues") and not r.exists("resque:queue:low")


# -- pause-all / resume-all, with real processes ----------------------------------------------------

def test_pause_all_and_resume_all_with_a_real_worker(r, redis_url, start_worker):
    w = start_worker("QUEUE=critical", "INTERVAL=0.1")
    w.wait_registered(r)
    proc = run("pause-all", REDIS_URL=redis_url)
    assert proc.returncode == 0, proc.stderr
    assert "pause-all-workers is set" in proc.stdout
    assert r.get("resque:pause-all-workers") == "true"
    wait_for(lambda: _title(w.pid).startswith("resque-3.0.0: Paused"), what="paused title")
    r.rpush("resque:queue:critical", codec.encode_job("OkJob", ["while paused"]))
    proc = run("workers", "--json", REDIS_URL=redis_url)
    [row] = json.loads(proc.stdout)
    assert row["pid"] == w.pid and row["host"] == socket.gethostname() and row["processing"] is None
    assert r.llen("resque:queue:critical") == 1  # still there: nobody takes jobs while paused
    proc = run("resume-all", REDIS_URL=redis_url)
    assert proc.returncode == 0 and not r.exists("resque:pause-all-workers")
    assert r.blpop(["test:ran"], timeout=10)[1] == "('while paused',)"
    w.signal(signal.SIGQUIT)
    assert w.wait() == 0
