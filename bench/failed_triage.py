"""Failed-job triage over a large failure list (issue 16 item 2): list, filter and bulk retry /
remove without loading the list into memory.

A private redis-server gets N failure entries in Ruby's format (10 job classes, 3 exception
types, 4 queues, failed_at one second apart), written in chunks. Then, timed one by one:

* ``list --newest --limit 20`` (resque-web's first page);
* ``list --class C7 --limit 20`` and a full filtered count (``--class C7 --grep``);
* ``retry --class C3`` (a tenth of the list: one retried_at written and one job pushed each);
* ``remove --exception Resque::DirtyExit`` (a third of the list).

Peak RSS is this process's maximum resident size (ru_maxrss), printed once after start-up and
filling (the baseline) and once at the end; the difference is what triage added.

``python bench/failed_triage.py [--failures 100000]``
"""
from __future__ import annotations

import argparse
import os
import re
import resource
import sys
import time
from itertools import islice
from typing import Callable, Tuple

import redis

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from bench.run import start_redis  # noqa: E402
from resque_compat.failures import Failures  # noqa: E402
from resque_compat.triage import Triage  # noqa: E402
from resque_compat.wire import codec, records  # noqa: E402
from resque_compat.wire.keys import Keys  # noqa: E402
from resque_compat.wire.triage import FailureFilter  # noqa: E402

EXCEPTIONS = ("RuntimeError", "Resque::DirtyExit", "Net::ReadTimeout")
CHUNK = 5000


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def fill(r: redis.Redis, keys: Keys, count: int) -> None:
    start = time.time() - count
    for low in range(0, count, CHUNK):
        r.rpush(keys.failed, *[records.failure_entry(
            failed_at=codec.failed_at(start + n),
            payload_json=codec.encode({"class": f"C{n % 10}", "args": [n, "x" * 40]}),
            exception=EXCEPTIONS[n % 3], error=f"failure number {n}: connection reset by peer",
            backtrace=[f"app/jobs/c{n % 10}.rb:{n % 50}:in `perform'"] * 3, worker=f"vm:{1000 + n % 7}:q{n % 4}",
            queue=f"q{n % 4}") for n in range(low, min(count, low + CHUNK))])


def timed(label: str, step: Callable[[], object]) -> Tuple[str, float, object]:
    began = time.perf_counter()
    result = step()
    return label, time.perf_counter() - began, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--failures", type=int, default=100_000)
    opts = parser.parse_args()
    proc, port = start_redis()
    try:
        r = redis.Redis(port=port)
        keys = Keys()
        fill(r, keys, opts.failures)
        baseline = peak_rss_mb()
        triage = Triage(Failures(r, keys))
        c7 = FailureFilter(class_name="C7")
        rows = [
            timed("list --newest --limit 20", lambda: len(list(islice(triage.scan(), 20)))),
            timed("list --class C7 --limit 20", lambda: len(list(islice(triage.scan(c7), 20)))),
            timed("count --class C7 --grep 'reset by'", lambda: triage.count(FailureFilter(
                class_name="C7", grep=re.compile("reset by", re.I)))),
            timed("retry --class C3", lambda: triage.bulk("retry", FailureFilter(class_name="C3"))),
            timed("remove --exception Resque::DirtyExit",
                  lambda: triage.bulk("remove", FailureFilter(exception="Resque::DirtyExit"))),
        ]
        print(f"{opts.failures} failures; Redis used {r.info('memory')['used_memory_human']} after")
        print("| step | seconds | result |\n|---|---|---|")
        for label, seconds, result in rows:
            print(f"| {label} | {seconds:.2f} | {result} |")
        assert r.llen(keys.queue("q3")) + r.llen(keys.queue("q1")) == opts.failures // 10
        print(f"peak RSS: {peak_rss_mb():.0f} MB (after filling: {baseline:.0f} MB)")
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
