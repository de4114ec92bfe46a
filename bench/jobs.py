"""Job bodies of the benchmark workloads, and their in-process measurements.

Loaded by the worker with ``-r bench/jobs.py`` and by ``bench/floor.py``. Each job records its
pickup latency (enqueue -> start) in memory; at exit the process writes a summary to the file
named by BENCH_OUT, so measuring costs no Redis traffic.
"""
from __future__ import annotations

import atexit
import json
import os
import time
from typing import Any, Dict, List

import redis
from gevent import getcurrent

from resque_compat import db, http
from resque_compat.registry import job

_latencies: List[float] = []
_window = {"first_start": 0.0, "last_end": 0.0, "first_end": 0.0}
#: The pick-up cycle (issue 17 req 2): per slot (its greenlet), the time from the end of one
#: job's body to the start of that slot's next job's body, all of it queue overhead.
_slot_end: Dict[Any, float] = {}
_cycles: List[float] = []
#: W1's job body talks to Redis as a user's job would with plain redis-py: its own client on the
#: same URL as the worker (bench/run.py sets REDIS_URL), made on first use.
_redis: Dict[str, Any] = {}
#: The key W1 bodies INCR; bench/run.py checks it counts every job.
COUNTER = "bench:counter"


def _start(enqueued_at: float) -> None:
    now = time.time()
    _latencies.append(now - enqueued_at)
    previous = _slot_end.get(getcurrent())
    if previous is not None:
        _cycles.append(now - previous)
    if not _window["first_start"]:
        _window["first_start"] = now


def _end() -> None:
    _window["last_end"] = now = time.time()
    _slot_end[getcurrent()] = now
    if not _window["first_end"]:
        _window["first_end"] = now  # start-up: spawn -> first job done (bench/run.py)


def _plain_redis() -> Any:
    if "plain" not in _redis:
        _redis["plain"] = redis.Redis.from_url(os.environ["REDIS_URL"])
    return _redis["plain"]


@job("Bench::Noop", queue="bench")
def noop(enqueued_at: float, url: str = "") -> None:
    _start(enqueued_at)
    _end()


@job("Bench::Callback", queue="bench")
def callback(enqueued_at: float, url: str) -> None:
    _start(enqueued_at)
    http.get(url).raise_for_status()
    _end()


@job("Bench::CallbackDb", queue="bench")
def callback_db(enqueued_at: float, url: str) -> None:
    _start(enqueued_at)
    with db.cursor() as cur:  # the original setup: a little MySQL gating each callback
        cur.execute("SELECT 1")
        cur.fetchall()
    http.get(url).raise_for_status()
    _end()


@job("Bench::Incr", queue="bench")
def incr(enqueued_at: float, url: str = "") -> None:
    _start(enqueued_at)
    _plain_redis().incr(COUNTER)
    _end()


@job("Bench::IncrClass", queue="bench")
class IncrClass:
    """W1 as a Ruby-style class job: the same body, with ``perform`` a staticmethod."""

    @staticmethod
    def perform(enqueued_at: float, url: str = "") -> None:
        incr(enqueued_at, url)


@job("Bench::CallbackSleep", queue="bench")
def callback_sleep(enqueued_at: float, url: str) -> None:
    _start(enqueued_at)
    with db.cursor() as cur:  # issue 17's W3: 5 ms of MySQL per job through DB_POOL=20
        cur.execute("SELECT SLEEP(0.005)")
        cur.fetchall()
    http.get(url).raise_for_status()
    _end()


try:  # resque_compat.redis (issue 17); absent from older checkouts the bench may compare with
    from resque_compat import redis as job_redis
except ImportError:  # pragma: no cover
    job_redis = None


@job("Bench::IncrShared", queue="bench")
def incr_shared(enqueued_at: float, url: str = "") -> None:
    _start(enqueued_at)
    job_redis.client().incr(COUNTER)  # auto-pipelined with the other greenlets' INCRs
    _end()


BODIES = {"Bench::Noop": noop, "Bench::Callback": callback, "Bench::CallbackDb": callback_db,
          "Bench::Incr": incr, "Bench::IncrClass": IncrClass.perform, "Bench::CallbackSleep": callback_sleep,
          "Bench::IncrShared": incr_shared}


def percentile(values: List[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary() -> Dict[str, Any]:
    peak_kb = 0
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    peak_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "jobs": len(_latencies),
        "pickup_p50_ms": percentile(_latencies, 0.50) * 1000,
        "pickup_p99_ms": percentile(_latencies, 0.99) * 1000,
        "cycles": len(_cycles),
        "cycle_mean_ms": sum(_cycles) / len(_cycles) * 1000 if _cycles else 0.0,
        "cycle_p50_ms": percentile(_cycles, 0.50) * 1000,
        "cycle_p99_ms": percentile(_cycles, 0.99) * 1000,
        "window_s": max(0.0, _window["last_end"] - _window["first_start"]),
        "first_start": _window["first_start"],  # absolute, to merge processes of one run
        "last_end": _window["last_end"],
        "first_end": _window["first_end"],
        "peak_rss_mb": peak_kb / 1024,
        "db": db.stats(),
        "http": http.stats(),
    }


@atexit.register
def _dump() -> None:
    path = os.environ.get("BENCH_OUT")
    if path:
        path = path.replace("{pid}", str(os.getpid()))  # one file per process of a pool
        with open(path, "w") as fh:
            json.dump(summary(), fh)
