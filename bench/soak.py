"""Soak: ``resque-py work QUEUE=* FIBERS=100`` under a steady stream for a long time, watching RSS.

``python bench/soak.py --minutes 60 --rate 500`` starts a private redis-server, a worker on
``QUEUE=*`` with 100 greenlets, and a producer that enqueues ``rate`` jobs/s spread over four
queues (no-ops, short sleeps, and 1 % failures, so the failure path is exercised too). Every 10 s
it prints processed, failed, pending and the worker's RSS; at the end, the RSS growth between
the first and last quarter of the run. Stops by itself.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

import redis

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.run import machine, start_redis  # noqa: E402

JOBS_FILE = os.path.join(ROOT, "bench", "soak_jobs.py")


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--rate", type=float, default=500)
    opts = parser.parse_args()
    redis_proc, port = start_redis()
    r = redis.Redis(port=port, decode_responses=True)
    env = {**os.environ, "REDIS_URL": f"redis://127.0.0.1:{port}/0"}
    worker = subprocess.Popen([sys.executable, "-m", "resque_compat", "work", "QUEUE=*", "FIBERS=100",
                               "-r", JOBS_FILE], env=env, cwd=ROOT)
    print(f"machine: {machine()}\nsoak: {opts.minutes} min at {opts.rate:.0f} jobs/s, worker pid {worker.pid}",
          flush=True)
    samples = []
    started = time.time()
    sent = 0
    next_report = started + 10
    try:
        while time.time() < started + opts.minutes * 60:
            pipe = r.pipeline(transaction=False)
            for _ in range(int(opts.rate / 10)):
                n = sent
                queue = ("alpha", "beta", "gamma", "delta")[n % 4]
                cls = "Soak::Fail" if n % 100 == 0 else ("Soak::Sleep" if n % 3 == 0 else "Soak::Noop")
                pipe.sadd("resque:queues", queue)
                pipe.rpush(f"resque:queue:{queue}", json.dumps({"class": cls, "args": [n, "x" * (n % 200)]},
                                                               separators=(",", ":")))
                sent += 1
            pipe.execute()
            time.sleep(0.1)
            if time.time() >= next_report:
                next_report += 10
                info = r.mget("resque:stat:processed", "resque:stat:failed")
                pending = sum(r.llen(f"resque:queue:{q}") for q in ("alpha", "beta", "gamma", "delta"))
                mb = rss_mb(worker.pid)
                samples.append(mb)
                print(f"{(time.time() - started) / 60:6.1f} min  sent {sent}  processed {info[0]}  "
                      f"failed {info[1]}  pending {pending}  rss {mb:.1f} MB", flush=True)
    finally:
        worker.send_signal(signal.SIGQUIT)
        worker.wait(60)
        redis_proc.terminate()
    quarter = max(1, len(samples) // 4)
    first, last = sum(samples[:quarter]) / quarter, sum(samples[-quarter:]) / quarter
    print(f"rss: first quarter {first:.1f} MB, last quarter {last:.1f} MB, growth {last - first:+.1f} MB "
          f"({(last - first) / first * 100 if first else 0:+.1f} %); worker exit {worker.returncode}")
    return 0 if worker.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
