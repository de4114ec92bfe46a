"""CPU cost of ``resque-py listen``'s renderer (issue 8: one second of audio for 10,000
events/s must cost under 0.2 s of CPU).

Cases, each rendering one second of 44.1 kHz stereo after a warm-up second:

* baseline — the drone only (a queue with jobs waiting, no job events): the floor any second
  of live audio costs;
* live — what the poller sends at 10 Hz for 10,000 jobs/s: per poll one job event per queue
  (5 queues, n=200 each), a depth event and a failure;
* log — 10,000 separate job events a second (``--from-log`` / ``--replay`` of a busy log),
  each n=1, on 5 queues, plus 10 failures and 10 depth changes.

CPU is ``time.process_time()`` around feeding the events and rendering; the best of
``--repeat`` runs is reported (the machine is shared), with the ratio to the baseline of the
same run. ``python bench/listen_render.py [--repeat 5]``
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Callable, List

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from bench.run import machine  # noqa: E402
from resque_compat.listen.events import DEPTH, FAILURE, JOB, Event  # noqa: E402
from resque_compat.listen.synth import SAMPLE_RATE, Renderer  # noqa: E402

QUEUES = ("critical", "default", "mailers", "low", "reports")
BUDGET = 0.2  # CPU seconds per second of audio at 10,000 events/s (issue 8)


def baseline_events(t0: float) -> List[Event]:
    return [Event(t0 + i / 10, DEPTH, queues={"critical": 1000 + i}) for i in range(10)]


def live_events(t0: float) -> List[Event]:
    events: List[Event] = []
    for poll in range(10):
        t = t0 + (poll + 1) / 10
        events += [Event(t, JOB, queue=q, n=200, span=0.1) for q in QUEUES]
        events += [Event(t, DEPTH, queues={"critical": 1000 - poll}), Event(t, FAILURE, queue="critical")]
    return events


def log_events(t0: float) -> List[Event]:
    times = np.sort(np.random.default_rng(1).random(10_000))
    events = [Event(t0 + float(t), JOB, queue=QUEUES[i % len(QUEUES)], span=0.001) for i, t in enumerate(times)]
    events += [Event(t0 + i / 10 + 0.05, FAILURE, queue="critical") for i in range(10)]
    events += [Event(t0 + i / 10, DEPTH, queues={"critical": 1000 + i}) for i in range(10)]
    return sorted(events, key=lambda e: e.t)


def cpu_for_one_second(make: Callable[[float], List[Event]], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        renderer = Renderer(seed=0, start=0.0)
        for event in make(0.0):  # warm-up second: voices, FFT plans, allocations
            renderer.feed(event)
        renderer.render(SAMPLE_RATE)
        events = make(1.0)
        start = time.process_time()
        for event in events:
            renderer.feed(event)
        audio = renderer.render(SAMPLE_RATE)
        best = min(best, time.process_time() - start)
        assert np.abs(audio).max() < 1.0
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"machine: {machine()}, numpy {np.__version__}")
    base = cpu_for_one_second(baseline_events, args.repeat)
    print(f"{'case':<10}{'CPU s per audio s':>20}{'x baseline':>12}{'budget':>10}")
    print(f"{'baseline':<10}{base:>20.4f}{1.0:>12.1f}{'':>10}")
    worst = 0.0
    for name, make in (("live", live_events), ("log", log_events)):
        cost = cpu_for_one_second(make, args.repeat)
        worst = max(worst, cost)
        verdict = "ok" if cost < BUDGET else "OVER"
        print(f"{name:<10}{cost:>20.4f}{cost / base:>12.1f}{verdict:>10}")
    return 0 if worst < BUDGET else 1


if __name__ == "__main__":
    sys.exit(main())
