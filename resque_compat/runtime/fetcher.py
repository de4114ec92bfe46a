"""One greenlet that takes jobs for every idle slot of the process in one Redis round trip.

Ruby's workers each poll with ``GET pause-all-workers`` + one LPOP per queue. A hundred
greenlets doing that would be a polling storm, and each would hold a connection. Instead, idle
slots wait here, and the fetcher asks Redis once for all of them (``Store.finish_and_reserve``):
it pops at most one job per *waiting* slot, so nothing is taken that a greenlet cannot start at
once (no in-memory prefetch a crash could lose), and it records ``worker:<id>`` for each in the
same atomic step. Slots whose jobs ended are finished (failure entry, stats) in that same call.

When Redis fails mid-call we cannot know whether the script ran. Before anything else, the
next successful contact reads back the ``worker:<id>`` values involved: the old record still
there means it did not run (send it again); otherwise it ran, so the counts are not sent twice
and any job it took for a slot is recovered from that slot's record instead of being lost.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple

import gevent
import redis
from gevent.event import AsyncResult, Event

from resque_compat.store.store import Done, Store
from resque_compat.wire import codec
from resque_compat.wire.queues import QueueList
from resque_compat.wire.records import Job, job_from_record, parse_job, worker_record_prefix

log = logging.getLogger("resque_compat.fetcher")

#: Longest pause between retries while Redis is unreachable.
MAX_REDIS_BACKOFF = 5.0
#: Longest wait for the hub to go idle before a trip, so endings that are due now share it.
#: Under a busy hub (W2's bursts of HTTP replies) the wait ran to this cap, until
#: COALESCE_BATCH. It is a CPU/latency trade (issue 17, bench/cycle.py): waiting one hub turn
#: instead halved W2's cycle (2.96 -> 1.53 ms, +3 % jobs/s) for 26 % more CPU per job in more,
#: smaller trips; a 0.4 ms cap cut it by a quarter (+1.5 % jobs/s) with W2's CPU unchanged but
#: W3's up 8 %.
COALESCE = 0.001
#: ...or until this many slots wait: a trip's fixed cost is then spread over enough jobs that
#: waiting for more only delays those already waiting, and a trip's jobs start in one burst
#: after its reply, so a smaller batch also starts its last job sooner. In 10 interleaved W2
#: drains beside the floor: pick-up cycle 3.03 -> 2.10 ms, 0.975 -> 0.995 x the floor (each
#: run >= 0.989), CPU per job unchanged (0.451 -> 0.440 ms, within the noise), 536 -> 744
#: trips for 5,000 jobs. W1's trips start full anyway (its 100 slots end in one hub turn) and
#: W3s's on an idle hub: neither changed.
COALESCE_BATCH = 8
#: First idle poll delay after a job (seconds); doubles per empty poll up to POLL_INTERVAL.
FIRST_POLL = 0.001
#: At shutdown, how many failed attempts to flush the last ``done`` marks before giving up.
CLOSING_RETRIES = 12

_REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError)


def _ignore(*_: object) -> None:
    return None


@dataclass
class FetcherEvents:
    """What the fetcher tells its owner (the runner), and the one thing it asks. Every call runs
    in the fetcher's greenlet, so a callback that blocks delays every slot's next job."""

    #: How many more jobs may be taken (the runner's MAX_JOBS budget); None = no limit.
    allowance: Callable[[], Optional[int]] = lambda: None
    #: ``n`` jobs were handed to slots (including jobs recovered after a lost reply).
    jobs_taken: Callable[[int], None] = _ignore
    #: A poll for waiting slots found every queue empty (none was paused).
    queues_empty: Callable[[], None] = _ignore
    #: These failure entries are now in Redis (RESQUE_PY_FAILURE_BACKEND=multiple notifies on them).
    failures_recorded: Callable[[List[str]], None] = _ignore
    #: Retired slots that left, after their reserve() got None (see :meth:`Fetcher.retire`).
    retired: Callable[[List[str]], None] = _ignore
    #: Redis answers again after an outage: heartbeat and re-register now.
    reconnected: Callable[[], None] = _ignore


@dataclass
class _Ending:
    """A slot's job that ended, waiting to be finished in Redis."""

    done: Done
    record: bytes  # the worker:<id> value written when the job was reserved


@dataclass
class _Uncertain:
    """A script call whose reply was lost: what it would have changed."""

    endings: List[_Ending]
    asking: List[Tuple[str, AsyncResult]]


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
        events: Optional[FetcherEvents] = None,
    ) -> None:
        self.store = store
        self.queues = queues
        self.min_interval = min_interval
        self.max_interval = max_interval
        self.backoff_interval = backoff_interval
        self.poll_cap = poll_cap
        self.clock = clock
        self.events = events or FetcherEvents()
        self.in_flight = 0  # jobs handed to slots and not yet done_working
        self.paused = False           # USR2 (local, see set_paused); pause-all-workers is in Redis
        self.redis_paused = False
        self.current_queues: List[str] = list(queues.include)
        self._waiting: List[Tuple[str, AsyncResult]] = []
        #: Autoscaling: slots that take no new job and leave once their last job is recorded.
        self._retiring: Set[str] = set()
        self._endings: List[_Ending] = []
        self._uncertain: Optional[_Uncertain] = None
        self._wake = Event()
        #: Set while run() coalesces: reserve() sets it when COALESCE_BATCH slots wait.
        self._coalescing: Optional[Event] = None
        self._stopping = False
        self._closing = False
        self._stopped = Event()
        self.round_trips = 0
        self._quick_poll = FIRST_POLL
        #: Since when (self.clock()) trips fail with Redis unreachable, and why; None = reachable.
        self.down_since: Optional[float] = None
        self.down_error = ""
        #: Outages ended: Redis answered again after failing (``resque_redis_reconnects_total``).
        self.reconnects = 0

    # -- called by slot greenlets --------------------------------------------------------------
    def reserve(self, worker_id: str) -> Optional[Job]:
        """Block until a job is recorded in ``worker:<worker_id>`` for us, or None to stop."""
        if self._stopping:
            return None
        result: AsyncResult = AsyncResult()
        self._waiting.append((worker_id, result))
        self._wake.set()
        if self._coalescing is not None and len(self._waiting) >= COALESCE_BATCH:
            self._coalescing.set()  # enough slots to share a trip: start it now
        return result.get()

    def done_working(self, job: Job, worker_id: str, failure: Optional[str] = None,
                     suppressed: bool = False, counted: bool = True) -> None:
        """Ruby's ``report_failed_job`` (if ``failure``, or only counted if ``suppressed``;
        ``counted=False``: listed but not in ``stat:failed``) and ``done_working``, on the
        next trip."""
        self._endings.append(_Ending(Done(worker_id, failure, job.queue, suppressed, counted), job.record))
        self.in_flight -= 1
        self._wake.set()

    # -- control -------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop handing out jobs; waiting slots get None. Ended jobs are still finished."""
        self._stopping = True
        self._wake.set()

    def close(self) -> None:
        """Every slot has finished: flush the last ended jobs and end :meth:`run`."""
        self._stopping = True
        self._closing = True
        self._wake.set()

    def set_paused(self, paused: bool) -> None:
        """USR2 / CONT: take no new jobs while paused (ended jobs are still recorded)."""
        self.paused = paused
        if not paused:
            self._wake.set()  # waiting slots ask again now, not at the next poll

    def retire(self, worker_ids: Iterable[str]) -> None:
        """Autoscaling: these slots take no new job. Each leaves (its reserve() returns None,
        then ``events.retired``) only after a round trip that started while it was waiting
        has succeeded, so its last ``done_working`` is in Redis before anyone unregisters it."""
        self._retiring.update(worker_ids)
        self._wake.set()

    def join(self, timeout: Optional[float] = None) -> bool:
        return self._stopped.wait(timeout)

    # -- the greenlet --------------------------------------------------------------------------
    def run(self) -> None:
        interval = self.min_interval
        delay: Optional[float] = 0.0
        failures = 0
        try:
            while True:
                if delay is None or delay > 0:
                    self._wake.wait(delay)
                self._coalesce()
                self._wake.clear()
                if self._stopping:
                    self._release_waiting()
                    if not self._endings and self._uncertain is None:
                        if self._closing:
                            return
                        delay = None
                        continue
                trip_began = self.clock()
                try:
                    if self._uncertain is not None:
                        self._resolve_uncertain()
                    got_jobs, asked = self._trip()
                except _REDIS_DOWN as exc:
                    failures += 1
                    if self._closing and failures > CLOSING_RETRIES:
                        log.error("Redis still unreachable; %d ended job(s) were not recorded",
                                  len(self._endings))
                        return
                    delay = min(MAX_REDIS_BACKOFF, 0.05 * 2 ** min(failures, 7))
                    self.down_error = str(exc) or type(exc).__name__
                    if failures == 1:
                        self.down_since = trip_began  # a timeout is noticed that much later
                        log.error("Redis unreachable (%s); retrying with back-off up to %.0fs",
                                  exc, MAX_REDIS_BACKOFF)
                    continue
                if failures:
                    log.warning("Redis reachable again after %d failed attempt(s) in %.1fs", failures,
                                self.clock() - (self.down_since or trip_began))
                    failures = 0
                    self.down_since = None
                    self.reconnects += 1
                    self._reconnected()
                if self._stopping:
                    delay = 0.0  # back to the top: flush what is left, or end
                elif got_jobs:
                    interval = self.min_interval
                    self._quick_poll = FIRST_POLL
                    delay = 0.0 if self._waiting or self._endings else None
                elif asked:
                    self.events.queues_empty()
                    if interval == 0:  # INTERVAL=0 (or MIN_INTERVAL=0 after a job): drain, exit
                        self._release_waiting()
                    # Ruby 3.0 backoff: grow by BACKOFF_INTERVAL after each empty poll, capped.
                    interval = min(interval + self.backoff_interval, self.max_interval)
                    delay = self._poll_delay(interval)
                elif self._waiting and self.redis_paused:
                    delay = self._poll_delay(max(interval, 0.1))
                else:
                    delay = 0.0 if self._endings else None
        finally:
            self._release_waiting()
            self._stopped.set()

    def _coalesce(self) -> None:
        """Let greenlets that are ready now end their jobs first, so that their endings and
        their next reservations ride this trip too (fewer round trips per job). The wait ends
        at the first of: the hub going idle, COALESCE seconds (a busy loop may never go idle),
        COALESCE_BATCH slots waiting (see :meth:`reserve`)."""
        if len(self._waiting) >= COALESCE_BATCH:
            return
        ready = self._coalescing = Event()
        loop = gevent.get_hub().loop
        idle, cap = loop.idle(), loop.timer(COALESCE)
        idle.start(ready.set)
        cap.start(ready.set)
        try:
            ready.wait()
        finally:
            self._coalescing = None
            idle.close()
            cap.close()

    def _poll_delay(self, interval: float) -> float:
        """Ruby's interval, capped by POLL_INTERVAL; right after jobs the cap starts at
        FIRST_POLL and doubles per empty poll, so a busy stream is picked up within a
        millisecond or two while an idle process settles at POLL_INTERVAL."""
        if self.poll_cap <= 0:
            return interval
        cap = min(self._quick_poll, self.poll_cap)
        self._quick_poll = min(self._quick_poll * 2, self.poll_cap)
        return min(interval, cap) if interval > 0 else cap

    def _release_waiting(self) -> None:
        waiting, self._waiting = self._waiting, []
        for _, result in waiting:
            result.set(None)

    def _reconnected(self) -> None:
        try:
            self.events.reconnected()
        except _REDIS_DOWN as exc:
            log.error("could not re-register after reconnecting (%s); the heartbeat will", exc)

    def _trip(self) -> Tuple[bool, bool]:
        """One round trip: finish ended jobs, reserve for waiting slots. Returns (got, asked)."""
        endings, self._endings = self._endings, []
        leaving = [w for w in self._waiting if w[0] in self._retiring]
        asking = [] if (self.paused or self._stopping) else [
            w for w in self._waiting if w[0] not in self._retiring]
        allowance = self.events.allowance()
        if allowance is not None:
            asking = asking[:allowance]
        queues = self._poll_queues() if asking else []
        free_ids = [wid for wid, _ in asking] if queues else []
        run_at = codec.iso8601_utc(self.clock())
        prefixes = [worker_record_prefix(q, run_at) for q in queues]
        self.round_trips += 1
        try:
            paused, jobs = self.store.finish_and_reserve(
                [e.done for e in endings], free_ids, queues, prefixes)
        except _REDIS_DOWN:
            self._uncertain = _Uncertain(endings, asking if free_ids else [])
            raise
        self.redis_paused = paused
        self._recorded(endings)
        self._hand_out(asking, [parse_job(j.queue, j.raw, j.record) for j in jobs])
        self._spend(len(jobs))
        self._let_go(leaving)
        return bool(jobs), bool(asking) and not paused

    def _let_go(self, leaving: Sequence[Tuple[str, AsyncResult]]) -> None:
        """Retired slots that were waiting when the trip that just succeeded began."""
        if not leaving:
            return
        gone = {id(result) for _, result in leaving}
        self._waiting = [(wid, res) for wid, res in self._waiting if id(res) not in gone]
        for wid, result in leaving:
            self._retiring.discard(wid)
            result.set(None)
        self.events.retired([wid for wid, _ in leaving])

    def _hand_out(self, asking: Sequence[Tuple[str, AsyncResult]], jobs: Sequence[Optional[Job]]) -> None:
        """Give ``jobs[i]`` to ``asking[i]``; those slots stop waiting (None = no job)."""
        given = {id(result) for (_, result), job in zip(asking, jobs) if job is not None}
        self.in_flight += len(given)
        self._waiting = [(wid, res) for wid, res in self._waiting if id(res) not in given]
        for (_, result), job in zip(asking, jobs):
            if job is not None:
                result.set(job)

    def _resolve_uncertain(self) -> None:
        """Find out whether the call whose reply was lost ran (see the module docstring)."""
        lost = self._uncertain
        assert lost is not None  # called only when a reply was lost
        ids = [e.done.worker_id for e in lost.endings] + [wid for wid, _ in lost.asking]
        current: Dict[str, Optional[bytes]] = dict(zip(ids, self.store.worker_jobs(ids)))
        self._uncertain = None
        if lost.endings:  # a finished slot's old record is still there only if it did not run
            first = lost.endings[0]
            ran = current[first.done.worker_id] != first.record
        else:  # nothing ended: it ran only if it reserved something
            ran = any(current[wid] for wid, _ in lost.asking)
        if not ran:
            self._endings = lost.endings + self._endings
            return
        self._recorded(lost.endings)
        recovered = [_recover(raw) if raw else None for raw in (current[wid] for wid, _ in lost.asking)]
        if any(recovered):
            log.warning("recovered %d job(s) reserved during a Redis failure",
                        sum(1 for j in recovered if j))
        self._hand_out(lost.asking, recovered)
        self._spend(sum(1 for j in recovered if j))

    def _recorded(self, endings: Sequence[_Ending]) -> None:
        failures = [e.done.failure for e in endings if e.done.failure]
        if failures:
            self.events.failures_recorded(failures)

    def _spend(self, jobs: int) -> None:
        if jobs:
            self.events.jobs_taken(jobs)

    def _poll_queues(self) -> List[str]:
        if self.queues.dynamic:
            self.current_queues = self.queues.expand(self.store.queue_names())
        else:
            self.current_queues = list(self.queues.include)
        return self.current_queues



def _recover(record: bytes) -> Optional[Job]:
    """The job a lost reply's script call recorded for a slot (see the module docstring)."""
    job = job_from_record(record)
    if job is None:
        log.error("cannot read back worker record %r; leaving it for the pruner", record[:200])
    return job
