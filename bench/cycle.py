"""The pick-up cycle taken apart (issue 17 req 2): load with ``-r bench/cycle.py`` beside
``-r bench/jobs.py`` and it wraps the worker's fetcher to time, for every job, the steps
between a slot's job ending and its next job starting:

* ``to_reserve``: job body ended -> the slot asks the fetcher for its next job (done_working,
  metrics, logging);
* ``to_trip``: asked -> the fetcher's round trip that serves it begins (a trip in flight, the
  wait for the hub to go idle, the fetcher greenlet's own turn);
* ``trip``: that round trip (EVALSHA: finish + reserve for every waiting slot);
* ``to_start``: the reply -> the slot's job body starts (the slot greenlet's turn).

At exit it adds ``breakdown_ms`` (mean of each step) to the BENCH_OUT summary. Timing only:
nothing the worker does changes.
"""
from __future__ import annotations

import atexit
import json
import os
import time
from typing import Dict, List

from bench import jobs
from resque_compat.runtime import fetcher as fetcher_module

_asked: Dict[str, float] = {}
_served: Dict[str, tuple] = {}  # worker id -> (asked, trip start, trip end)
_steps: Dict[str, List[float]] = {"to_reserve": [], "to_trip": [], "trip": [], "to_start": []}
_ended: Dict[int, float] = {}

_reserve = fetcher_module.Fetcher.reserve
_trip = fetcher_module.Fetcher._trip
_start = jobs._start
_end = jobs._end


def reserve(self, worker_id):  # type: ignore[no-untyped-def]
    from gevent import getcurrent

    now = time.time()
    ended = _ended.pop(id(getcurrent()), None)
    if ended is not None:
        _steps["to_reserve"].append(now - ended)
    _asked[worker_id] = now
    job = _reserve(self, worker_id)
    return job


def trip(self):  # type: ignore[no-untyped-def]
    began = time.time()
    waiting = [wid for wid, _ in self._waiting]
    result = _trip(self)
    finished = time.time()
    for wid in waiting:
        asked = _asked.pop(wid, None)
        if asked is not None:
            _served[wid] = (asked, began, finished)
    return result


def start(enqueued_at: float) -> None:
    from gevent import getcurrent

    now = time.time()
    _start(enqueued_at)
    worker = getattr(getcurrent(), "_bench_worker_id", None)
    served = _served.pop(worker, None) if worker else None
    if served is not None:
        asked, began, finished = served
        _steps["to_trip"].append(began - asked)
        _steps["trip"].append(finished - began)
        _steps["to_start"].append(now - finished)


def end() -> None:
    from gevent import getcurrent

    _end()
    _ended[id(getcurrent())] = time.time()


def _tag_reserve(self, worker_id):  # type: ignore[no-untyped-def]
    from gevent import getcurrent

    getcurrent()._bench_worker_id = worker_id  # which slot this greenlet is, for start()
    return reserve(self, worker_id)


fetcher_module.Fetcher.reserve = _tag_reserve  # type: ignore[method-assign]
fetcher_module.Fetcher._trip = trip  # type: ignore[method-assign]
jobs._start = start
jobs._end = end


def _dump() -> None:
    jobs._dump()  # its summary first, then the breakdown added to it
    path = os.environ.get("BENCH_OUT")
    if not path:
        return
    path = path.replace("{pid}", str(os.getpid()))
    try:
        with open(path) as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return
    data["breakdown_ms"] = {k: (sum(v) / len(v) * 1000 if v else 0.0) for k, v in _steps.items()}
    data["breakdown_n"] = {k: len(v) for k, v in _steps.items()}
    with open(path, "w") as fh:
        json.dump(data, fh)


atexit.unregister(jobs._dump)
atexit.register(_dump)
