"""Autoscaling greenlet slots for ``FIBERS=MIN..MAX``: a pure policy and the loop that applies it.

The policy follows node-resque's MultiWorker (WIRE §8.1): measure the event loop's lag, and
add workers while most are busy and the loop keeps up, remove them when it lags or they sit
idle. Two changes for a gevent process that runs hundreds of slots:

* steps are proportional, not one slot per check: a burst takes 2 -> 4 -> 8 -> 16 slots in a
  few checks instead of a hundred, and the target keeps about half the slots free for the next
  burst (grow above 50 % busy, shrink below 25 %, so a steady load does not flap);
* growth also waits for the MySQL pool (DB_POOL) to have a free connection: when jobs already
  queue for connections, another greenlet only adds one more waiter.

:func:`target_slots` is pure (numbers in, number out) so every rule is unit-tested without a
hub; :class:`Autoscaler` measures and calls back into the runner, which owns registration.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Mapping, Optional

from gevent.event import Event

log = logging.getLogger("resque_compat.autoscale")

#: Seconds between decisions (node-resque's ``checkTimeout``).
CHECK_INTERVAL = 0.5
#: Seconds between hub-lag probes: a greenlet asks to wake after TICK and measures how late it
#: woke. Lateness means runnable greenlets (CPU-bound jobs, JSON, TLS) kept the hub busy.
TICK = 0.02
#: Mean lag above which the process counts as CPU-bound: more greenlets would only queue for the
#: one core, raising every job's latency (node-resque uses 10 ms for a JavaScript loop; a gevent
#: hub switching between hundreds of greenlets has more ordinary jitter).
MAX_LAG = 0.05
#: Busy fraction above which slots are added, and below which they are removed.
GROW_AT = 0.5
SHRINK_AT = 0.25


@dataclass(frozen=True)
class Load:
    """What one decision sees.

    ``busy`` is the most slots holding a job at once since the last decision (a sample at the
    decision instant would miss short jobs); ``lag`` the mean hub lag in seconds over the same
    time; ``db_free`` the MySQL connections neither in use nor waited for (negative while jobs
    wait), None when the process has no DATABASE_URL.
    """

    slots: int
    busy: int
    lag: float = 0.0
    db_free: Optional[int] = None


def target_slots(load: Load, low: int, high: int, max_lag: float = MAX_LAG) -> int:
    """How many slots the process should have after this check, within ``[low, high]``."""
    slots = min(max(load.slots, low), high)
    if load.lag > max_lag:
        # Lagging: give back a quarter (at least one) so the busy slots get the CPU.
        return max(low, slots - max(1, slots // 4))
    db_has_room = load.db_free is None or load.db_free > 0
    if load.busy > slots * GROW_AT and db_has_room:
        # Aim at half the slots busy: doubling at most, so one noisy sample cannot overshoot.
        return min(high, max(slots + 1, 2 * load.busy))
    if load.busy < slots * SHRINK_AT:
        # Idle: a quarter at a time (never below twice the busy count), so a lull between two
        # bursts does not throw away every slot at once.
        return max(low, 2 * load.busy, slots - max(1, slots // 4))
    return slots


def db_headroom(stats: Mapping[str, int]) -> Optional[int]:
    """``db_free`` for :class:`Load` from :func:`resque_compat.db.stats` (None: no pool)."""
    if not stats.get("size"):
        return None
    return int(stats["size"]) - int(stats.get("in_use", 0)) - int(stats.get("waiting", 0))


class Autoscaler:
    """One greenlet: probe the hub every TICK, decide every CHECK_INTERVAL, apply the change.

    ``busy()`` returns the slots holding a job now, ``slots()`` the slots in service (not
    counting ones already leaving); ``grow(n)`` and ``shrink(n)`` add or retire slots and are
    the runner's (they register and unregister in Redis); ``db_free()`` feeds :class:`Load`.
    """

    def __init__(self, low: int, high: int, *, busy: Callable[[], int], slots: Callable[[], int],
                 grow: Callable[[int], None], shrink: Callable[[int], None],
                 db_free: Callable[[], Optional[int]] = lambda: None,
                 check_interval: float = CHECK_INTERVAL, tick: float = TICK,
                 max_lag: float = MAX_LAG) -> None:
        self.low, self.high = low, high
        self.busy, self.slots, self.grow, self.shrink, self.db_free = busy, slots, grow, shrink, db_free
        self.check_interval, self.tick, self.max_lag = check_interval, tick, max_lag
        self.last: Optional[Load] = None
        self._stop = Event()

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        peak_busy, lag_total, ticks = 0, 0.0, 0
        next_check = time.monotonic() + self.check_interval
        while not self._stop.is_set():
            asked = time.monotonic()
            if self._stop.wait(self.tick):
                return
            # Only the sleep is timed: the time grow/shrink spend in Redis is not hub lag.
            lag_total += max(0.0, time.monotonic() - asked - self.tick)
            ticks += 1
            peak_busy = max(peak_busy, self.busy())
            if time.monotonic() < next_check:
                continue
            self.last = Load(self.slots(), peak_busy, lag_total / ticks, self.db_free())
            try:
                self.apply(target_slots(self.last, self.low, self.high, self.max_lag))
            except Exception:  # e.g. Redis away while registering: keep scaling once it is back
                log.exception("autoscale step failed; trying again in %.1fs", self.check_interval)
            peak_busy, lag_total, ticks = self.busy(), 0.0, 0
            next_check = time.monotonic() + self.check_interval

    def apply(self, target: int) -> None:
        current = self.last.slots if self.last is not None else self.slots()
        if target > current:
            log.debug("autoscale: %d -> %d slots (%s)", current, target, self.last)
            self.grow(target - current)
        elif target < current:
            log.debug("autoscale: %d -> %d slots (%s)", current, target, self.last)
            self.shrink(current - target)
