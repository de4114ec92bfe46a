"""Manual check (not run by pytest or CI, which have no Ruby resque-scheduler): leadership moves
Python -> Ruby -> Python on one every-second cron, with kill -9 and SIGQUIT, and each slot must
run once. Needs Debian's ruby-redis ruby-redis-namespace ruby-mono-logger ruby-rufus-scheduler
ruby-fugit, and the lib/ folders of resque v3.0.0 and resque-scheduler v5.0.0:

    RUBYLIB=/path/resque/lib:/path/resque-scheduler/lib REDIS_URL=redis://127.0.0.1:6379/5 \\
        .venv/bin/python tests/manual/ruby_handover.py

It FLUSHDBs that DB. Prints each leader's slots and exits 1 if a slot ran twice or a push is
unaccounted for; with --json, ends with one JSON line of the same (what
fixtures/ruby-interop/scheduler_capture.sh records). Ruby's connection is named ruby-scheduler
(CLIENT SETNAME), so a MONITOR capture can tell its commands from ours.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

import redis

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/5")
RUBY_RUNNER = """
require 'multi_json'; MultiJson.use :json_gem
require 'resque'; require 'resque-scheduler'; require 'yaml'
Resque.redis = Redis.new(url: ENV['REDIS_URL'], id: 'ruby-scheduler')  # named for MONITOR captures
Resque.schedule = YAML.load_file(ENV['SCHEDULE_FILE'])
$stdout.sync = true
Resque::Scheduler::Cli.run!([], {})
"""
SCHEDULE = 'every_second:\n  cron: "* * * * * *"\n  class: ScheduledJob\n  queue: tick\n'


class Proc:
    def __init__(self, name, args, env):
        self.name, self.lines = name, []
        self.proc = subprocess.Popen(args, env={**os.environ, **env}, cwd=ROOT, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def has(self, pattern):
        return any(re.search(pattern, line) for line in list(self.lines))

    def slots(self):
        out = []
        for line in list(self.lines):
            m = re.search(r"for the slot at (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", line)  # ours
            r = re.search(r"\[INFO\] (\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)\S*: queueing ScheduledJob", line)  # Ruby's
            if m:
                out.append(m.group(1))
            elif r:
                out.append(f"{r.group(1)} {r.group(2)}")
        return out


def wait(predicate, what, timeout=15):
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.02)


def main() -> int:
    client = redis.Redis.from_url(URL, decode_responses=True)
    client.flushdb()
    path = os.path.join(tempfile.mkdtemp(), "schedule.yml")
    with open(path, "w") as fh:
        fh.write(SCHEDULE)
    env = {"REDIS_URL": URL, "TZ": "Etc/UTC", "PYTHONUNBUFFERED": "1", "SCHEDULE_FILE": path}
    python = [sys.executable, "-m", "resque_compat", "scheduler", "--schedule", path,
              "RESQUE_SCHEDULER_INTERVAL=0.05", "RESQUE_SCHEDULER_LOCK_TIMEOUT=2", "VERBOSE=1"]
    ruby_env = {**env, "RESQUE_SCHEDULER_INTERVAL": "0.2", "LOCK_TIMEOUT": "2", "VERBOSE": "1"}
    a = Proc("python A", python, env)
    wait(lambda: len(a.slots()) >= 3, "python A's slots")
    ruby = Proc("ruby", ["ruby", "-e", RUBY_RUNNER], ruby_env)
    time.sleep(1.0)
    a.proc.kill()  # kill -9: Ruby takes over once the lock expires
    wait(lambda: len(ruby.slots()) >= 3, "ruby's slots")
    b = Proc("python B", python, env)
    wait(lambda: b.has("waits: the leader lock is held"), "python B to wait")
    ruby.proc.send_signal(signal.SIGQUIT)  # graceful: Ruby deletes the lock
    wait(lambda: len(b.slots()) >= 3, "python B's slots")
    b.proc.send_signal(signal.SIGTERM)
    b.proc.wait(10)
    ruby.proc.wait(10)
    time.sleep(0.2)
    everything = []
    for proc in (a, ruby, b):
        print(f"{proc.name}: {proc.slots()}")
        everything += proc.slots()
    pushed = client.llen("resque:queue:tick")
    print(f"pushed {pushed}, logged {len(everything)}, distinct {len(set(everything))}")
    if "--json" in sys.argv[1:]:
        runs = {slot: everything.count(slot) for slot in sorted(set(everything))}
        print(json.dumps({"leaders": [{"name": p.name, "slots": p.slots()} for p in (a, ruby, b)],
                          "pushed": pushed, "runs_per_slot": runs,
                          "last_enqueued_at": client.hget("resque:delayed:last_enqueued_at", "every_second"),
                          "queue_items": sorted(set(client.lrange("resque:queue:tick", 0, -1)))}))
    return 0 if len(everything) == len(set(everything)) == pushed else 1


if __name__ == "__main__":
    sys.exit(main())
