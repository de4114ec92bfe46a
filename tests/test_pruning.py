"""Dead-worker pruning, rule for rule against Ruby Resque 3.0 (WIRE §3.4, §3.5, §4.4).

Foreign workers are registered with raw Redis commands exactly as fixture 14 describes, their
pids belong to real processes on this host (a plain ``sleep``, or a ``sleep`` whose argv Ruby's
``ps | grep`` recognises), and ``prune_dead_workers`` runs in-process on the real Redis.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import time

import pytest

from resque_compat.runtime.pruning import prune_dead_workers, resque_pids
from resque_compat.store.store import Store, connect
from resque_compat.wire import codec
from resque_compat.wire.keys import Keys
from resque_compat.wire.queues import QueueList
from tests.conftest import REDIS_URL, wait_for
from tests.keyspace import dump, load_fixture, normalize

HOST = socket.gethostname()
NS = "resque"
LOCK = "resque:pruning_dead_workers_in_progress"

#: Process titles Ruby's pruner keeps (``[r]esque:work|[r]esque:\sStarting|[r]esque-[0-9]``).
TITLED = "resque-9.9.9: Waiting for file_serve"
TITLE_WORK = "rake resque:work"
TITLE_STARTING = "resque: Starting"
#: Matches ``resque-[0-9]`` but Ruby drops it with ``grep -v resque-web``.
TITLE_WEB = "resque-1.27.4 resque-web"


# -- helpers shared with test_heartbeat.py ------------------------------------------------------

def ps_command(pid):
    """``ps -o command= -p <pid>``: the argv line Ruby's pruner greps ('' if gone)."""
    return subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True,
                          text=True, errors="replace").stdout.strip()


def spawn_titled(title, seconds=60):
    """A live ``sleep`` whose argv[0] is ``title`` (``exec -a``), once ``ps`` shows it."""
    proc = subprocess.Popen(["bash", "-c", f'exec -a "{title}" sleep {seconds}'])
    wait_for(lambda: ps_command(proc.pid).startswith(title), 5, f"title {title!r}")
    return proc


def dead_pid():
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def make_store():
    return Store(connect(REDIS_URL), Keys(NS))


def iso_ago(r, seconds):
    """A Ruby heartbeat value (``Time.at(t).iso8601``) ``seconds`` before Redis TIME."""
    return codec.iso8601_local(r.time()[0] - seconds)


def job_record(queue, cls, *args):
    """``worker:<id>`` as Ruby writes it (WIRE §4.1)."""
    payload = {"class": cls, "args": list(args)}
    return codec.encode({"queue": queue, "run_at": "2026-11-27T12:02:29Z", "payload": payload})


def register(r, wid, heartbeat=None, job=None, stats=False):
    """Register a foreign worker with raw commands, as fixture 14 did."""
    r.sadd("resque:workers", wid)
    r.set(f"resque:worker:{wid}:started", "2026-11-27 12:02:29 +0000")
    if heartbeat is not None:
        r.hset("resque:workers:heartbeat", wid, heartbeat)
    if job is not None:
        r.set(f"resque:worker:{wid}", job)
    if stats:
        r.set(f"resque:stat:processed:{wid}", "3")
        r.set(f"resque:stat:failed:{wid}", "1")


def worker_keys(r, wid):
    """Every trace of ``wid`` Ruby's unregister removes (the six commands of WIRE §3.5)."""
    return {
        "member": r.sismember("resque:workers", wid),
        "job": r.get(f"resque:worker:{wid}"),
        "started": r.get(f"resque:worker:{wid}:started"),
        "heartbeat": r.hget("resque:workers:heartbeat", wid),
        "processed": r.get(f"resque:stat:processed:{wid}"),
        "failed": r.get(f"resque:stat:failed:{wid}"),
    }


GONE = {"member": False, "job": None, "started": None, "heartbeat": None, "processed": None,
        "failed": None}


def failures(r):
    return [json.loads(e) for e in r.lrange("resque:failed", 0, -1)]


def prune(store, queues, own_queues_field=None, prune_interval=300, lock_ttl=60):
    own = f"{HOST}:{os.getpid()}:{own_queues_field or ','.join(queues)}"
    return prune_dead_workers(store, own, QueueList(queues), HOST, prune_interval=prune_interval,
                              lock_ttl=lock_ttl, now=time.time)


# -- fixtures -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def procs():
    """Live processes on this host: a plain sleep, and sleeps titled like Resque workers."""
    started = {}
    try:
        started["plain"] = subprocess.Popen(["sleep", "60"])
        started["titled"] = spawn_titled(TITLED)
        started["work"] = spawn_titled(TITLE_WORK)
        started["starting"] = spawn_titled(TITLE_STARTING)
        started["web"] = spawn_titled(TITLE_WEB)
        yield {name: str(p.pid) for name, p in started.items()}
    finally:
        for p in started.values():
            p.kill()
            p.wait()


@pytest.fixture
def store(r):
    s = make_store()
    yield s
    s.redis.close()


# -- ps ------------------------------------------------------------------------------------------

def test_resque_pids_greps_ps_like_ruby(procs):
    pids = resque_pids()
    assert all(isinstance(p, str) and p.isdigit() for p in pids)
    for name in ("titled", "work", "starting"):
        assert procs[name] in pids, (name, ps_command(procs[name]))
    assert procs["plain"] not in pids  # 'sleep 60' is not a resque line
    assert procs["web"] not in pids  # grep -v resque-web
    assert "999999" not in pids and "999998" not in pids  # the dead pids the matrix relies on


# -- the matrix of WIRE §3.5 ----------------------------------------------------------------------

def test_matrix_file_serve_pruner_then_star_pruner(r, store, procs):
    """Every row of WIRE §3.5's test matrix, plus the heartbeat-path and malformed-data rows."""
    fresh = iso_ago(r, 0)
    stale = iso_ago(r, 400)
    p = procs
    cases = {
        # id: (heartbeat, job class or None, outcome for file_serve pruner, outcome for '*')
        f"{HOST}:{p['plain']}:file_serve": (fresh, "PlainJob", "dirty", None),
        f"{HOST}:{p['titled']}:file_serve": (fresh, "TitledJob", "kept", "kept"),
        f"{HOST}:{p['work']}:file_serve": (fresh, None, "kept", "kept"),
        f"{HOST}:{p['starting']}:file_serve": (None, None, "kept", "kept"),
        f"{HOST}:{p['web']}:file_serve": (fresh, "WebJob", "dirty", None),
        f"{HOST}:{p['plain']}:other": (fresh, "OtherJob", "kept", "dirty"),
        f"{HOST}:{p['titled']}+1:file_serve": (fresh, "NodeJob", "dirty", None),
        "otherhost:1:file_serve": (stale, "RemoteJob", "expired", None),
        "otherhost:2:file_serve": (None, "RemoteJob", "kept", "kept"),
        f"{HOST}:{p['titled']}:file_serve:g1": (fresh, None, "kept", "kept"),
        f"{HOST}:999999:file_serve:g2": (None, None, "pruned", None),
        f"{HOST}:999998:file_serve,low": (None, None, "kept", "pruned"),
        # the heartbeat path comes first and ignores ps: a live, titled worker is pruned too
        f"{HOST}:{p['titled']}:file_serve:g3": (stale, "StuckJob", "expired", None),
        # order and duplicates of the queue field do not matter (a set compare)
        f"{HOST}:999997:file_serve,file_serve": (None, None, "pruned", None),
        # values Ruby's Time.parse cannot read: never pruned by us
        "otherhost:3:file_serve": ("not a time", "RemoteJob", "kept", "kept"),
        "otherhost:4:file_serve": ("1764244541", None, "kept", "kept"),
        # ids Ruby's pruner would crash on: never pruned by us (WIRE §3.4)
        "garbage": (stale, None, "kept", "kept"),
        f"{HOST}:123": (stale, None, "kept", "kept"),
        f"{HOST}:999996:": (None, None, "kept", "kept"),
    }
    for wid, (beat, cls, _, _) in cases.items():
        register(r, wid, heartbeat=beat, stats=True,
                 job=job_record("file_serve", cls, wid) if cls else None)
    # a heartbeat with no registration (Resque PR 1751): pruned on the heartbeat path
    r.hset("resque:workers:heartbeat", "otherhost:9:file_serve", stale)
    r.set("resque:stat:failed", "7")
    r.set("resque:stat:processed", "11")
    before = {wid: worker_keys(r, wid) for wid in cases}

    for pruner, column in ((["file_serve"], 2), (["*"], 3)):
        r.delete(LOCK)
        r.delete("resque:failed")
        alive = {wid: c for wid, c in cases.items() if c[2] == "kept"}
        expected = {wid for wid, c in alive.items() if c[column] != "kept"} if column == 3 else \
            {wid for wid, c in cases.items() if c[2] != "kept"} | {"otherhost:9:file_serve"}

        pruned = prune(store, pruner)

        assert sorted(pruned) == sorted(expected), pruner
        for wid in cases:
            if wid in expected:
                assert worker_keys(r, wid) == GONE, wid
            elif column == 2 or cases[wid][2] == "kept":
                assert worker_keys(r, wid) == before[wid], wid
        assert r.hget("resque:workers:heartbeat", "otherhost:9:file_serve") is None
        # one failure entry per pruned worker that held a job, with the dead worker's id
        want = []
        for wid in sorted(expected & set(cases)):
            cls = cases[wid][1]
            if cls is None:
                continue
            outcome = cases[wid][column]
            if outcome == "expired":
                exc = "Resque::PruneDeadWorkerDirtyExit"
                err = f"Worker {wid} did not gracefully exit while processing {cls}"
            else:
                assert outcome == "dirty"
                exc, err = "Resque::DirtyExit", "Job still being processed"
            want.append({"payload": {"class": cls, "args": [wid]}, "exception": exc, "error": err,
                         "backtrace": [], "worker": wid, "queue": "file_serve"})
        got = sorted(failures(r), key=lambda e: e["worker"])
        for entry in got:
            assert list(entry) == ["failed_at", "payload", "exception", "error", "backtrace",
                                   "worker", "queue"]
            entry.pop("failed_at")
        assert got == want, pruner
        # pruning never counts failures (WIRE §4.4 Counters)
        assert r.get("resque:stat:failed") == "7"
        assert r.get("resque:stat:processed") == "11"


def test_no_failure_entry_unless_worker_held_a_job(r, store):
    held, idle, empty = (f"{HOST}:{dead_pid()}:file_serve:{n}" for n in ("a", "b", "c"))
    register(r, held, job=job_record("file_serve", "HeldJob", 1))
    register(r, idle)
    register(r, empty, job="{}")  # Ruby: `hash.empty?` -> no entry
    assert sorted(prune(store, ["file_serve"])) == sorted([held, idle, empty])
    assert [(e["worker"], e["error"]) for e in failures(r)] == [(held, "Job still being processed")]
    assert r.get("resque:stat:failed") is None


def test_unknown_job_class_in_prune_dead_worker_message(r, store):
    """Ruby: ``worker.job(false)['payload']['class'] rescue nil``, then ``job ||= "<Unknown Job>"``."""
    stale = iso_ago(r, 400)
    no_class = "otherhost:1:q"
    no_payload = "otherhost:2:q"
    register(r, no_class, heartbeat=stale, job=codec.encode({"queue": "q", "payload": {"args": []}}))
    register(r, no_payload, heartbeat=stale, job=codec.encode({"queue": "q", "run_at": "x"}))
    assert sorted(prune(store, ["q"])) == sorted([no_class, no_payload])
    by_worker = {e["worker"]: e for e in failures(r)}
    assert by_worker[no_class]["error"] == (
        f"Worker {no_class} did not gracefully exit while processing <Unknown Job>")
    assert by_worker[no_class]["payload"] == {"args": []}
    assert by_worker[no_payload]["error"].endswith("processing <Unknown Job>")
    assert by_worker[no_payload]["payload"] is None


def test_dead_worker_with_invalid_job_json_is_pruned_without_crashing(r, store):
    wid = f"{HOST}:{dead_pid()}:file_serve"
    register(r, wid, job="{not json")
    assert prune(store, ["file_serve"]) == [wid]
    assert worker_keys(r, wid) == GONE
    assert r.llen("resque:failed") == 0


# -- the lock -----------------------------------------------------------------------------------

def test_lock_is_set_nx_with_heartbeat_interval_ttl_and_blocks_a_second_prune(r, store):
    first = f"{HOST}:{dead_pid()}:file_serve"
    register(r, first)
    assert prune(store, ["file_serve"], lock_ttl=60) == [first]
    own = f"{HOST}:{os.getpid()}:file_serve"
    assert r.get(LOCK) == own  # the value is the pruner's id (fixture 02)
    assert 58 <= r.ttl(LOCK) <= 60  # EX heartbeat_interval; fixture 02 saw 59
    # within the TTL, any other pruner skips pruning altogether
    second = f"{HOST}:{dead_pid()}:file_serve"
    register(r, second, job=job_record("file_serve", "Job"))
    assert prune(store, ["*"], own_queues_field="*", lock_ttl=60) == []
    assert worker_keys(r, second)["member"]
    assert r.get(LOCK) == own
    assert r.llen("resque:failed") == 0


def test_lock_held_by_someone_else_means_no_pruning(r, store):
    r.set(LOCK, "vm:1:critical", ex=60)
    wid = f"{HOST}:{dead_pid()}:file_serve"
    register(r, wid)
    assert prune(store, ["file_serve"]) == []
    assert r.sismember("resque:workers", wid)
    assert r.get(LOCK) == "vm:1:critical"


def test_lock_ttl_below_one_second_becomes_one_second(r, store):
    prune(store, ["file_serve"], lock_ttl=0.2)
    assert 0 < r.pttl(LOCK) <= 1000


# -- heartbeat age --------------------------------------------------------------------------------

def test_heartbeat_age_is_truncated_to_whole_seconds_like_ruby(r, store):
    """``(now - Time.parse(beat)).to_i > prune_interval``: 300.x s is not older than 300 s."""
    # Align with the start of a Redis second so the whole test runs inside one second.
    wait_for(lambda: r.time()[1] < 300_000, 2, "the start of a Redis second", every=0.005)
    now = r.time()[0]
    at_limit, over, future = "otherhost:1:q", "otherhost:2:q", "otherhost:3:q"
    register(r, at_limit, heartbeat=codec.iso8601_local(now - 300))  # age 300.0..300.99
    register(r, over, heartbeat=codec.iso8601_local(now - 301))  # age 301.0..301.99
    register(r, future, heartbeat=codec.iso8601_local(now + 3600))  # clock skew: negative age
    assert prune(store, ["q"], prune_interval=300) == [over]
    assert r.sismember("resque:workers", at_limit) and r.sismember("resque:workers", future)


# -- failure entries byte for byte against Ruby's fixtures ----------------------------------------

@pytest.mark.parametrize("fixture,live,beat_age,prune_interval", [
    # a live plain `sleep` with a fresh heartbeat, same host and queues: ps path
    ("14_foreign_worker_pruned.json", True, 0, 300),
    # a killed worker, heartbeat 7 s old, pruner with prune_interval 5: heartbeat path
    ("06_dirty_exit.json", False, 7, 5),
    # a killed worker with a fresh heartbeat: ps path
    ("06b_dirty_exit_same_host.json", False, 0, 300),
])
def test_prune_writes_ruby_bytes(r, store, procs, fixture, live, beat_age, prune_interval):
    fx = load_fixture(fixture)
    ruby_dead = fx.get("foreign_worker_id") or fx["dead_worker_id"]
    ruby_pruner = fx.get("ruby_worker_id") or fx["pruning_worker_id"]
    [ruby_entry] = fx["keys"]["resque:failed"]["value"]
    entry = json.loads(ruby_entry)
    queues = ruby_dead.split(":")[2]
    pid = procs["plain"] if live else str(dead_pid())
    dead = f"{HOST}:{pid}:{queues}"
    pruner = f"{HOST}:{os.getpid()}:{queues}"
    r.sadd("resque:queues", entry["queue"])
    register(r, dead, heartbeat=iso_ago(r, beat_age),
             job=json.dumps({"queue": entry["queue"], "run_at": "2026-11-27T12:02:29Z",
                             "payload": entry["payload"]}, separators=(",", ":")))

    pruned = prune_dead_workers(store, pruner, QueueList(queues.split(",")), HOST,
                                prune_interval=prune_interval, lock_ttl=60, now=time.time)

    assert pruned == [dead]
    [ours] = r.lrange("resque:failed", 0, -1)
    assert json.loads(ours)["worker"] == dead  # the DEAD worker's id, not the pruner's
    assert r.get(LOCK) == pruner
    # Ruby's keyspace without the pruner's own registration == ours
    ruby_keys = {k: v for k, v in fx["keys"].items()
                 if ruby_pruner not in k and k not in ("resque:workers", "resque:workers:heartbeat")}
    assert normalize(dump(r), [dead, pruner]) == normalize(ruby_keys, [ruby_dead, ruby_pruner])


# -- parse_heartbeat ------------------------------------------------------------------------------

T0 = 1795780541.0  # 2026-11-27T11:55:41Z


@pytest.mark.parametrize("text,expected", [
    ("2026-11-27T11:55:41+00:00", T0),  # Ruby's heartbeat in UTC (fixture 02)
    ("2026-11-27T11:55:41Z", T0),
    ("2026-11-27T11:55:41.123456+00:00", T0 + 0.123456),
    ("2026-11-27T11:55:41.5Z", T0 + 0.5),
    ("2026-11-27 11:55:41 +0000", T0),  # Time#to_s
    ("2026-11-27T17:25:41+05:30", T0),  # Kolkata (fixture 12)
    ("2026-11-27 17:25:41 +0530", T0),
    ("2026-11-27T06:55:41-05:00", T0),  # New York
    ("2026-11-27 11:55:41 UTC", T0),
    (" 2026-11-27T11:55:41+00:00\n", T0),
    ("garbage", None),
    ("", None),
    ("1764244541", None),  # an epoch string: Ruby's Time.parse raises
    ("2026-13-45T00:00:00+00:00", None),
])
def test_parse_heartbeat_reads_what_ruby_time_parse_reads(text, expected):
    got = codec.parse_heartbeat(text)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected, abs=1e-6)


def test_parse_heartbeat_without_zone_is_local_time_like_ruby(monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        assert codec.parse_heartbeat("2026-11-27 17:25:41") == T0
        assert codec.parse_heartbeat(codec.iso8601_local(T0)) == T0
        assert codec.iso8601_local(T0) == "2026-11-27T17:25:41+05:30"
    finally:
        monkeypatch.undo()
        time.tzset()


# -- issue 14: the start-up hang -------------------------------------------------------------

#: Run patched, as the worker is: a socket on fd 0 (stdin closed at start), then Ruby's ps.
_FD0_PROBE = """
import os, socket
os.close(0)
import resque_compat.__main__  # reopens the closed standard fds, patches gevent
from resque_compat.runtime.pruning import resque_pids
held = os.open(os.devnull, os.O_RDONLY) if os.environ.get("PROBE_FREE_FD0") else None
if held is not None:
    os.close(0)  # free fd 0 again, so the socket takes it (what a start with stdin closed did)
a, b = socket.socketpair()
a.setblocking(False)
print(a.fileno(), os.readlink("/proc/self/fd/0"), flush=True)
resque_pids()
print(os.get_blocking(a.fileno()))
"""


def test_resque_pids_leaves_a_socket_on_fd_0_non_blocking(python):
    """The cause of issue 14's hang: a child that gevent forks with no ``stdin`` clears
    O_NONBLOCK on its fd 0, the very open file our fd 0 is; a Redis socket there then blocks
    the whole process in ``can_read``. ps must get its own stdin."""
    out = subprocess.run([python, "-c", _FD0_PROBE], env=dict(os.environ, PROBE_FREE_FD0="1"),
                         capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "0", out  # the probe really put the socket on fd 0
    assert out[-1] == "False", "ps made the socket on fd 0 blocking"


def test_entry_point_puts_dev_null_on_closed_standard_fds(python):
    """``resque-py`` started with stdin closed: fd 0 is /dev/null, so no socket can land there."""
    out = subprocess.run([python, "-c", _FD0_PROBE], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[0] != "0" and out[1] == "/dev/null" and out[-1] == "False", out
