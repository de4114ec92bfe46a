"""Manual check (not run by pytest or CI, which have no Ruby gems): real Ruby workers with
resque-retry, resque-loner and resque-lock-timeout beside real ``resque-py work`` processes on one
Redis DB, continuing each other's plugin state. Needs Debian's ruby-redis ruby-redis-namespace
ruby-mono-logger ruby-rufus-scheduler ruby-fugit, and the lib/ folders of resque v3.0.0,
resque-scheduler v5.0.0 and the plugin commits in fixtures/ruby-plugins/README.md:

    RUBYLIB=resque/lib:resque-scheduler/lib:resque-loner/lib:resque-lock-timeout/lib:resque-retry/lib \\
        REDIS_URL=redis://127.0.0.1:6379/5 .venv/bin/python tests/manual/ruby_plugins_mixed.py

It FLUSHDBs that DB. Prints each check and exits 1 if one fails. With ``--json`` it also prints,
on its last line, what each check saw and the keys at each step (times, epoch seconds and this
host's pids normalised): fixtures/ruby-interop/plugins_capture.sh records that as plugins.json.
"""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time

import redis

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
from tests.keyspace import TIME_PATTERNS, dump, map_strings  # noqa: E402

URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/5")
APP = os.path.join(ROOT, "tests", "manual", "ruby_plugins_app.rb")
r = redis.Redis.from_url(URL, decode_responses=True)
failures = []
RECORD: dict = {}
#: this host's worker ids (<host>:<pid>:<queues>) and epoch seconds (delayed timestamps)
OWN_PID = re.compile(re.escape(socket.gethostname()) + r":\d+:")
EPOCH = re.compile(r"(?<![\d.])1[6-9]\d{8}(?![\d])")


#: resque-retry's failure key keeps failed_at without a zone (MultipleWithRetrySuppression)
ZONELESS_FAILED_AT = re.compile(r"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d")


#: a lock value, host:pid (resque-scheduler's master lock says localhost:<pid>)
LOCK_VALUE = re.compile(r"^[A-Za-z][\w.-]*:\d+$")


def normal(value):
    def fix(text):
        text = LOCK_VALUE.sub("<host>:<pid>", text)
        text = OWN_PID.sub("<host>:<pid>:", text).replace(ROOT + "/", "<root>/")
        for pattern, placeholder in TIME_PATTERNS:
            text = pattern.sub(placeholder, text)
        return EPOCH.sub("<epoch>", ZONELESS_FAILED_AT.sub("<failed_at, no zone>", text))
    return map_strings(value, fix)


def scenario(name):
    RECORD[name] = {"checks": [], "keys": {}}
    return RECORD[name]


def check(what, ok, **seen):
    """One claim, and the values it was judged on (recorded with --json)."""
    print(("ok   " if ok else "FAIL ") + what)
    list(RECORD.values())[-1]["checks"].append({"check": what, "ok": bool(ok), "seen": normal(seen)})
    if not ok:
        failures.append(what)


def snapshot(label):
    list(RECORD.values())[-1]["keys"][label] = normal(dump(r))


def ruby(code, **env):
    """Run Ruby with the app loaded; returns its stdout."""
    out = subprocess.run(["ruby", "-e", f"load {APP!r}; {code}"], env={**os.environ, "REDIS_URL": URL, **env},
                         capture_output=True, text=True, timeout=60)
    if out.returncode:
        raise SystemExit(f"ruby failed: {out.stderr}")
    return out.stdout.strip()


def ruby_worker(queue, background=False, **env):
    args = ["ruby", "-e", f"load {APP!r}; Resque::Worker.new({queue!r}).work(0)"]
    proc = subprocess.Popen(args, env={**os.environ, "REDIS_URL": URL, **env})
    return proc if background else proc.wait(60)


def python_worker(queue, jobs, background=False, **env):
    args = [sys.executable, "-m", "resque_compat", "work", f"QUEUE={queue}",
            "INTERVAL=0.1" if background else "INTERVAL=0", "-r", os.path.join(ROOT, "tests", jobs)]
    proc = subprocess.Popen(args, cwd=ROOT, env={**os.environ, "REDIS_URL": URL, **env})
    return proc if background else proc.wait(60)


def wait(predicate, what, timeout=20):
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def retry_python_then_ruby():
    """Python runs attempts 1-2 (suppressed failures, delayed retry); Ruby runs attempt 3 and
    gives up, continuing Python's counter and cleaning Python's failure key."""
    scenario("retry_python_then_ruby")
    r.flushdb()
    from resque_compat import Resque

    Resque.from_url(URL).enqueue_to("retry", "BackoffJob", "sms", 17)
    python_worker("retry", "retry_plugin_jobs.py", RESQUE_PY_FAILURE_BACKEND="multiple_with_retry_suppression")
    snapshot("after python's two attempts")
    key = "resque:resque-retry:BackoffJob:e6cf1d87cf927cfbaa70ce49b43c2cd893c4380f"
    failure_key = "resque:failure-" + key[len("resque:"):]
    check("python: counter 1 after two attempts", r.get(key) == "1", counter=r.get(key))
    ttl = r.ttl(failure_key)
    check("python: failure key TTL 6", 5 <= ttl <= 6, ttl=ttl)
    check("python: nothing in failed, stat:failed 2", r.llen("resque:failed") == 0 and r.get("resque:stat:failed") == "2",
          failed=r.llen("resque:failed"), stat_failed=r.get("resque:stat:failed"))
    [ts] = r.zrange("resque:delayed_queue_schedule", 0, -1)
    wait(lambda: time.time() >= int(ts), "the retry to be due")
    ruby("Resque::Scheduler.handle_delayed_items", NO_LONER="1")  # Ruby's scheduler releases it
    check("ruby scheduler released Python's delayed retry", r.llen("resque:queue:retry") == 1,
          queue=r.lrange("resque:queue:retry", 0, -1))
    ruby_worker("retry")
    snapshot("after ruby's third attempt")
    check("ruby: gave up, counter deleted", not r.exists(key), counter=r.get(key))
    check("ruby: failure key deleted", not r.exists(failure_key), failure_key=r.get(failure_key))
    failed = [json.loads(f) for f in r.lrange("resque:failed", 0, -1)]
    check("ruby: one failed entry, by a Ruby worker", len(failed) == 1 and failed[0]["exception"] == "NetworkError",
          failed=failed)
    check("stat:failed 3", r.get("resque:stat:failed") == "3", stat_failed=r.get("resque:stat:failed"))


def loner_both_ways():
    scenario("loner_both_ways")
    r.flushdb()
    from resque_compat import Resque
    from tests import loner_lock_jobs  # noqa: F401  registers LonerJob (unique=True)

    resque = Resque.from_url(URL)
    check("python enqueue accepted", resque.enqueue("LonerJob", "x", 1) is True, loners=r.keys("resque:loners:*"))
    said = ruby("print Resque::Job.create(:loner, LonerJob, 'x', 1).inspect")
    check("ruby Job.create refuses Python's queued job", said == '"EXISTED"', ruby_said=said,
          queue=r.lrange("resque:queue:loner", 0, -1))
    ruby_worker("loner")
    check("ruby worker ran it and freed Python's key", r.keys("resque:loners:*") == [] and r.llen("resque:ruby:ran") == 1,
          loners=r.keys("resque:loners:*"), ruby_ran=r.lrange("resque:ruby:ran", 0, -1))
    ruby("Resque.enqueue(LonerJob, 'y', {'b' => 2, 'a' => 1})")
    snapshot("after ruby's enqueue")
    check("python refuses Ruby's queued job (hash keys in the other order)",
          resque.enqueue("LonerJob", "y", {"a": 1, "b": 2}) is False, loners=r.keys("resque:loners:*"),
          queue=r.lrange("resque:queue:loner", 0, -1))
    python_worker("loner", "loner_lock_jobs.py")
    check("python worker freed Ruby's key", r.keys("resque:loners:*") == [] and r.llen("resque:queue:loner") == 0,
          loners=r.keys("resque:loners:*"), queue=r.lrange("resque:queue:loner", 0, -1),
          stat_processed=r.get("resque:stat:processed"))
    check("python enqueue accepted again", resque.enqueue("LonerJob", "y", {"a": 1, "b": 2}) is True,
          loners=r.keys("resque:loners:*"))
    said = ruby("print Resque::Job.create(:loner, LonerJob, 'y', {'a' => 1, 'b' => 2}).inspect")
    check("ruby Job.create refuses it", said == '"EXISTED"', ruby_said=said, queue=r.lrange("resque:queue:loner", 0, -1))
    snapshot("at the end")


def lock_both_ways():
    scenario("lock_both_ways")
    r.flushdb()
    from resque_compat import Resque

    resque = Resque.from_url(URL)
    args = (42, {"k": "v"}, [1, [2, "x y"]], 6)
    key = 'resque:lock:LockedJob:42-{"k"=>"v"}-1-2-x y-6'
    resque.enqueue_to("locked", "LockedJob", *args)
    py = python_worker("locked", "loner_lock_jobs.py", background=True)
    assert r.blpop("test:started", timeout=20), "the Python job did not start"
    resque.enqueue_to("locked", "LockedJob", *args)
    ruby_worker("locked")
    snapshot("python runs, ruby worker done")
    check("ruby worker dropped the job Python runs", r.llen("resque:ruby:ran") == 0 and r.get(key) is not None,
          ruby_ran=r.lrange("resque:ruby:ran", 0, -1), locks=r.keys("resque:lock:*"),
          queue=r.lrange("resque:queue:locked", 0, -1))
    r.rpush("test:release:locked", "go")
    wait(lambda: not r.exists(key), "python to release its lock")
    py.terminate()
    py.wait(20)
    python_runs = r.get("resque:stat:processed")
    r.flushdb()
    resque.enqueue_to("locked", "LockedJob", *args)
    rb = ruby_worker("locked", background=True, HOLD="1")
    wait(lambda: r.llen("resque:ruby:ran") == 1, "the Ruby job to start")
    resque.enqueue_to("locked", "LockedJob", *args)
    python_worker("locked", "loner_lock_jobs.py")
    snapshot("ruby runs, python worker done")
    check("python worker dropped the job Ruby runs", r.llen("test:started") == 0 and r.exists(key)
          and r.get("resque:stat:processed") == "1", python_started=r.llen("test:started"),
          locks=r.keys("resque:lock:*"), stat_processed=r.get("resque:stat:processed"),
          python_processed_first_half=python_runs)
    r.rpush("resque:ruby:release", "go")
    rb.wait(30)
    check("ruby released its lock", not r.exists(key), locks=r.keys("resque:lock:*"),
          ruby_ran=r.lrange("resque:ruby:ran", 0, -1), queue=r.lrange("resque:queue:locked", 0, -1))


retry_python_then_ruby()
loner_both_ways()
lock_both_ways()
if "--json" in sys.argv[1:]:
    print(json.dumps(RECORD, ensure_ascii=False))
sys.exit(1 if failures else 0)
