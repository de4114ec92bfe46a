"""node-resque, the reference row of ``make bench`` (issue 17): bench/node/worker.js runs the
same job bodies in one Node process at the same concurrency.

Node comes from the machine (Debian's ``nodejs``); node-resque, ioredis and mysql2 are
installed by npm into ``bench/node/node_modules`` on first use (never committed, never part of
the Python package).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from typing import Any, Callable, Dict, Optional, Tuple

from bench.scale import run_processes

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node")
#: The Resque class each node job kind is enqueued as (bench/node/worker.js's CLASSES).
CLASSES = {"noop": "Bench::Noop", "incr": "Bench::Incr", "callback": "Bench::Callback",
           "callback_sleep": "Bench::CallbackSleep"}


def available() -> Optional[str]:
    """None when node-resque can run, else why not (the row is then left out)."""
    node, npm = shutil.which("node") or shutil.which("nodejs"), shutil.which("npm")
    if node is None:
        return "no node on PATH (apt-get install nodejs npm)"
    if not os.path.isdir(os.path.join(HERE, "node_modules", "node-resque")):
        if npm is None:
            return "node-resque is not installed and there is no npm (apt-get install npm)"
        print("installing node-resque into bench/node/node_modules (first use)", flush=True)
        done = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--no-package-lock"],
                              cwd=HERE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            return f"npm install failed: {done.stderr.strip()[-300:]}"
    return None


def version() -> str:
    try:
        with open(os.path.join(HERE, "node_modules", "node-resque", "package.json")) as fh:
            resque = json.load(fh)["version"]
        node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
        return f"node-resque {resque} on Node {node}"
    except (OSError, ValueError, KeyError):
        return "node-resque"


def throughput(kind: str, jobs: int, fibers: int, url: str, env: Dict[str, str], redis_port: int,
               fill: Callable[[int], None], flush: Callable[[], None]) -> Dict[str, Any]:
    """Drain ``jobs`` prefilled jobs: jobs/s, CPU per 1000 jobs (less an empty run's start-up
    and exit), start-up (spawn -> first job done) and peak RSS, as for our rows."""
    flush()
    _, idle_cpu, _ = _run(kind, 0, fibers, url, env, redis_port)
    flush()
    fill(jobs)
    wall, cpu, data = _run(kind, jobs, fibers, url, env, redis_port)
    window = data["window_s"] or wall
    return dict(jobs_s=jobs / window, cpu_per_1000=(cpu - idle_cpu) / jobs * 1000,
                startup=data["first_end"] - data["spawned"], rss=data["peak_rss_mb"],
                p50=data["pickup_p50_ms"], p99=data["pickup_p99_ms"], when=time.time())


def startup(kind: str, fibers: int, url: str, env: Dict[str, str], redis_port: int,
            fill: Callable[[int], None], flush: Callable[[], None]) -> float:
    """Spawn -> first job done, for one prefilled job (no empty run: no CPU figure is made)."""
    flush()
    fill(1)
    _, _, data = _run(kind, 1, fibers, url, env, redis_port)
    return data["first_end"] - data["spawned"]


def _run(kind: str, jobs: int, fibers: int, url: str, env: Dict[str, str],
         redis_port: int) -> Tuple[float, float, Dict[str, Any]]:
    """bench/node/worker.js until ``jobs`` are done: (wall s, CPU s, its BENCH_OUT summary)."""
    env = {**env, "REDIS_PORT": str(redis_port), "MYSQL_DB": env.get("BENCH_DB", "resque_bench")}
    command = ["node", os.path.join(HERE, "worker.js"), kind, str(jobs), str(fibers), url]
    return run_processes([command], env, HERE)
