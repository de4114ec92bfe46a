"""Pools and hosts for ``make bench`` (issue 7): runs of several processes at once, and the
multi-host simulation.

Every worker process of a run writes its own BENCH_OUT file (``{pid}`` in the path, see
bench/jobs.py); :func:`merge_outputs` joins them: jobs add up, the window runs from the first
job start to the last job end in any process, pickup p50 is the jobs-weighted mean of the
processes' p50s and p99 the worst p99 (conservative: percentiles do not merge exactly), peak
RSS the largest single process.

The multi-host simulation runs several pools (``resque-py work PROCESSES=2``), each with its own
``HOSTNAME``, against the benchmark's private redis-server, on no-op jobs so that Redis does as
large a share of the work as it can. On a 2-core machine the workers saturate the CPU long
before Redis does, so besides jobs/s each row reports Redis's own CPU (``INFO cpu``
used_cpu_sys + used_cpu_user, delta over the run) per 1000 jobs, and the throughput at which
Redis would use one whole core: the ceiling many real hosts would hit.
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import tempfile
import time
from typing import Any, Callable, Dict, List, Sequence, Tuple

import redis


def run_processes(commands: Sequence[List[str]], env: Dict[str, str], cwd: str) -> Tuple[float, float, Dict[str, Any]]:
    """Run ``commands`` at once to completion: (wall seconds, CPU seconds of them all and of
    their children, merged BENCH_OUT)."""
    outdir = tempfile.mkdtemp(prefix="bench-")
    started = time.time()
    procs = [subprocess.Popen(args, env={**env, "BENCH_OUT": os.path.join(outdir, "{pid}.json")}, cwd=cwd)
             for args in commands]
    cpu = 0.0
    for proc, args in zip(procs, commands):
        # wait4's usage includes the grandchildren a supervisor waited for: the whole pool's CPU.
        _, status, usage = os.wait4(proc.pid, 0)
        cpu += usage.ru_utime + usage.ru_stime
        if status != 0:
            raise SystemExit(f"benchmark process failed ({status}): {' '.join(args)}")
    wall = time.time() - started
    data = merge_outputs(outdir)
    data["spawned"] = started  # start-up = first_end - spawned
    shutil.rmtree(outdir, ignore_errors=True)
    return wall, cpu, data


def merge_outputs(outdir: str) -> Dict[str, Any]:
    parts = []
    for path in glob.glob(os.path.join(outdir, "*.json")):
        with open(path) as fh:
            parts.append(json.load(fh))
    busy = [p for p in parts if p["jobs"]]
    jobs = sum(p["jobs"] for p in parts)
    window = max(p["last_end"] for p in busy) - min(p["first_start"] for p in busy) if busy else 0.0
    return {
        "processes": len(parts),
        "jobs": jobs,
        "window_s": max(0.0, window),
        "pickup_p50_ms": sum(p["pickup_p50_ms"] * p["jobs"] for p in busy) / jobs if jobs else 0.0,
        "pickup_p99_ms": max((p["pickup_p99_ms"] for p in busy), default=0.0),
        "peak_rss_mb": max((p["peak_rss_mb"] for p in parts), default=0.0),
        "first_end": min((p["first_end"] for p in busy if p.get("first_end")), default=0.0),
        # The pick-up cycle: jobs-weighted means, worst p99; bench/cycle.py's steps if loaded.
        "cycle_mean_ms": sum(p.get("cycle_mean_ms", 0.0) * p["jobs"] for p in busy) / jobs if jobs else 0.0,
        "cycle_p50_ms": sum(p.get("cycle_p50_ms", 0.0) * p["jobs"] for p in busy) / jobs if jobs else 0.0,
        "cycle_p99_ms": max((p.get("cycle_p99_ms", 0.0) for p in busy), default=0.0),
        "breakdown_ms": busy[0].get("breakdown_ms", {}) if len(busy) == 1 else {},
    }


def redis_cpu(r: redis.Redis) -> float:
    info = r.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def multi_host(r: redis.Redis, env: Dict[str, str], cwd: str, worker: Callable[[str], List[str]],
               fill: Callable[[int], None], hosts_list: Sequence[int], jobs: int) -> List[Dict[str, Any]]:
    """For each host count: fill the queue with ``jobs`` no-ops, drain it with that many pools
    (``worker(hostname)`` is one pool's argv), and measure jobs/s and Redis's CPU."""
    rows = []
    for hosts in hosts_list:
        r.flushdb()
        fill(jobs)
        cpu_before = redis_cpu(r)
        commands_before = int(r.info("stats")["total_commands_processed"])
        _, _, data = run_processes([worker(f"bench-host-{k}") for k in range(hosts)], env, cwd)
        redis_seconds = redis_cpu(r) - cpu_before
        commands = int(r.info("stats")["total_commands_processed"]) - commands_before
        processed = int(r.get("resque:stat:processed") or 0)
        assert processed == jobs, f"{processed} of {jobs} jobs processed"
        window = data["window_s"] or 1e-9
        per_1000 = redis_seconds / jobs * 1000
        rows.append(dict(hosts=hosts, processes=data["processes"], jobs_s=jobs / window,
                         redis_cpu_pct=100 * redis_seconds / window, redis_ms_per_1000=per_1000 * 1000,
                         commands_per_job=commands / jobs,
                         redis_ceiling=1000 / per_1000 if per_1000 else float("inf")))
    return rows
