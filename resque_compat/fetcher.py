"""One greenlet that takes jobs for every idle slot of the process in one Redis round trip.

Ruby's workers each poll with ``GET pause-all-workers`` + one LPOP per queue. A hundred
greenlets doing that would be a polling storm, and each would hold a connection. Instead, idle
slots wait here, and the fetcher asks Redis once for all of them (``Store.finish_and_reserve``):
it pops at most one job per *waiting* slot, so nothing is taken that a greenlet cannot start at
once (no in-memory prefetch a crash could lose), and it records ``worker:<id>`` for each in the
same atomic step. Slots that finished a job are marked done in that same call.
"""
from __future__ import annotations

import logging
import time
from typing import Callable, Dict, List, Optional, Tuple

import gevent
import redis
from gevent.event import AsyncResult, Event

from . import codec
from .queues import QueueList
from .records import Job, parse_job, worker_record_prefix
from .store import Store

log = logging.getLogger("resque_compat.fetcher")

#: Longest pause between retries while Redis is unreachable.
MAX_REDIS_BACKOFF = 5.0
#: At shutdown, how many failed attempts to flush the last ``done`` marks before giving up.
CLOSING_RETRIES = 12


class Fetcher:
    """Hands jobs to waiting slots; see the module docstring."""

    def __init__(
        self,
        store: Store,
        queues: QueueList,
        *,
        interval: float,
        min_interval: float,
        max_interval: float,
        backoff_interval: float,
        poll_cap: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.queues = queues
        self.drain = interval == 0
        self.min_interval = min_interval
        self.max_interval = max_interval
        self.backoff_interval = backoff_interval
        self.poll_cap = poll_cap
        self.clock = clock
        self.paused = False           # USR2 (local); pause-all-workers is checked in Redis
        self.redis_paused = False
        self.current_queues: List[str] = list(queues.include)
        self._waiting: List[Tuple[str, AsyncResult]] = []
        self._done: List[str] = []
        self._wake = Event()
        self._stopping = False
        self._closing = False
        self._stopped = Event()
        self.round_trips = 0

    # -- called by slot greenlets --------------------------------------------------------------
    def reserve(self, worker_id: str) -> Optional[Job]:
        """Block until a job is recorded in ``worker:<worker_id>`` for us, or None to stop."""
        if self._stopping:
            return None
        result: AsyncResult = AsyncResult()
        self._waiting.append((worker_id, result))
        self._wake.set()
        return result.get()

    def done_working(self, worker_id: str) -> None:
        """Ruby's ``done_working``: DEL worker:<id> + processed counters, on the next trip."""
        self._done.append(worker_id)
        self._wake.set()

    # -- control -------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop handing out jobs; waiting slots get None. Pending ``done`` marks still flush."""
        self._stopping = True
        self._wake.set()

    def close(self) -> None:
        """Every slot has finished: flush the last ``done`` marks and end :meth:`run`."""
        self._stopping = True
        self._closing = True
        self._wake.set()

    def join(self, timeout: Optional[float] = None) -> bool:
        return self._stopped.wait(timeout)

    def nudge(self) -> None:
        self._wake.set()

    # -- the greenlet --------------------------------------------------------------------------
    def run(self) -> None:
        interval = self.min_interval
        delay: Optional[float] = 0.0
        failures = 0
        try:
            while True:
                if delay is None or delay > 0:
                    self._wake.wait(delay)
                self._wake.clear()
                if self._stopping:
                    self._release_waiting()
                    if not self._done:
                        if self._closing:
                            return
                        delay = None
                        continue
                try:
                    got_jobs, asked = self._trip()
                    failures = 0
                except (redis.ConnectionError, redis.TimeoutError) as exc:
                    failures += 1
                    if self._closing and failures > CLOSING_RETRIES:
                        log.error("Redis still unreachable; %d finished job(s) were not marked done "
                                  "(stat:processed not incremented)", len(self._done))
                        return
                    delay = min(MAX_REDIS_BACKOFF, 0.1 * 2 ** min(failures, 6))
                    log.error("Redis unreachable while reserving jobs (%s); retrying in %.1fs", exc, delay)
                    continue
                if self._stopping:
                    delay = 0.0 if self._done else None
                    continue
                if got_jobs:
                    interval = self.min_interval
                    delay = 0.0 if self._waiting or self._done else None
                elif asked:
                    if interval == 0:  # INTERVAL=0 (or MIN_INTERVAL=0 after a job): drain, exit
                        self._release_waiting()
                    # Ruby 3.0 backoff: grow by BACKOFF_INTERVAL after each empty poll, capped.
                    interval = min(interval + self.backoff_interval, self.max_interval)
                    delay = self._poll_delay(interval)
                elif self._waiting and (self.paused or self.redis_paused):
                    delay = self._poll_delay(max(interval, 0.1)) if self.redis_paused else None
                else:
                    delay = 0.0 if self._done else None
        finally:
            self._release_waiting()
            self._stopped.set()

    def _poll_delay(self, interval: float) -> float:
        if self.poll_cap > 0:
            return min(interval, self.poll_cap) if interval > 0 else self.poll_cap
        return interval

    def _release_waiting(self) -> None:
        waiting, self._waiting = self._waiting, []
        for _, result in waiting:
            result.set(None)

    def _trip(self) -> Tuple[bool, bool]:
        """One round trip: finish done slots, reserve for waiting ones. Returns (got, asked)."""
        done, self._done = self._done, []
        asking = [] if (self.paused or self._stopping) else list(self._waiting)
        free_ids = [wid for wid, _ in asking]
        try:
            queues = self._poll_queues() if free_ids else []
            if not queues:
                free_ids = []
            run_at = codec.iso8601_utc(self.clock())
            prefixes = [worker_record_prefix(q, run_at) for q in queues]
            self.round_trips += 1
            paused, jobs = self.store.finish_and_reserve(done, free_ids, queues, prefixes)
        except BaseException:
            self._done = done + self._done  # nothing was applied that we know of; try again
            raise
        self.redis_paused = paused
        taken = asking[: len(jobs)]
        del self._waiting[: len(jobs)]  # slots that arrived during the trip stay queued
        for (wid, result), reserved in zip(taken, jobs):
            result.set(parse_job(reserved.queue, reserved.raw))
        return bool(jobs), bool(asking) and not paused

    def _poll_queues(self) -> List[str]:
        if self.queues.dynamic:
            self.current_queues = self.queues.expand(self.store.queue_names())
        else:
            self.current_queues = list(self.queues.include)
        return self.current_queues
