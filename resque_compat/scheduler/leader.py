"""Delayed jobs: resque-scheduler's client API and the process that releases them (WIRE §7.1).

Client side (``Resque.enqueue_at`` and friends delegate to :class:`Delayed`): items go to
resque-scheduler's keys with its exact bytes (:mod:`delayed`); a time that has already passed
enqueues at once, as Ruby does.

Scheduler side (``resque-py scheduler`` runs :class:`Scheduler`): the leader, and only the
leader, moves due items to their queues as plain ``{class,args}`` jobs (fixture 09b), one
atomic script call per batch, so a crash neither loses nor duplicates a delayed job.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, List, Optional

import redis

from resque_compat import registry
from resque_compat.errors import NoClassError, NoQueueError, ResqueError
from resque_compat.scheduler.delayed import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_INTERVAL,
    DEFAULT_LOCK_TIMEOUT,
    DelayedQueue,
    UnreleasableItem,
    When,
    delayed_item,
    registered_queue,
    timestamp_of,
)
from resque_compat.wire import codec, records
from resque_compat.wire.keys import Keys

if TYPE_CHECKING:
    from resque_compat.client import JobRef, Resque
    from resque_compat.scheduler.recurring import Recurring

log = logging.getLogger("resque_compat.scheduler")


# -- client API ---------------------------------------------------------------------------------

class Delayed:
    """resque-scheduler's ``DelayingExtensions`` for one :class:`~resque_compat.client.Resque`."""

    def __init__(self, resque: "Resque", clock: Callable[[], float] = time.time) -> None:
        self.resque = resque
        self.clock = clock
        self.queue = DelayedQueue(resque.redis, resque.keys)

    def enqueue_at(self, when: When, job: "JobRef", *args: Any) -> bool:
        """Run ``job`` at ``when`` on its registered queue (``@job(..., queue=...)``)."""
        return self.enqueue_at_with_queue(self._queue_of(job), when, job, *args)

    def enqueue_in(self, seconds: float, job: "JobRef", *args: Any) -> bool:
        return self.enqueue_at(self.clock() + seconds, job, *args)

    def enqueue_in_with_queue(self, queue: str, seconds: float, job: "JobRef", *args: Any) -> bool:
        return self.enqueue_at_with_queue(queue, self.clock() + seconds, job, *args)

    def enqueue_at_with_queue(self, queue: str, when: When, job: "JobRef", *args: Any) -> bool:
        """Push the item for ``when``, or enqueue at once if that second has already passed."""
        class_name = self.resque._class_name(job)
        if not class_name:
            raise NoClassError("Jobs must be given a class.")
        if queue is None or queue is False:  # type: ignore[comparison-overlap]  # Ruby's nil/false
            raise NoQueueError(f"Jobs must be placed onto a queue. No queue could be inferred for class {class_name}")
        timestamp = timestamp_of(when)
        if timestamp < int(self.clock()):
            self.resque.store.push(str(queue), codec.encode_job(class_name, args))  # Ruby: Job.create
        else:
            self.queue.delayed_push(timestamp, delayed_item(str(queue), class_name, args))
        return True

    def remove_delayed(self, job: "JobRef", *args: Any, queue: Optional[str] = None) -> int:
        """Remove every delayed copy of exactly this job (its item bytes), wherever it is due."""
        class_name = self.resque._class_name(job)
        return self.queue.remove(delayed_item(queue if queue is not None else self._queue_of(job), class_name, args))

    def delayed_queue_size(self) -> int:
        """Delayed jobs in total, over every timestamp (Ruby's ``count_all_scheduled_jobs``)."""
        return self.queue.total_size()

    def delayed_queue_schedule_size(self) -> int:
        """Distinct timestamps with delayed jobs (Ruby's ``delayed_queue_schedule_size``)."""
        return self.queue.schedule_size()

    def delayed_queue_peek(self, start: int, count: int) -> List[int]:
        return self.queue.timestamps(start, count)

    def delayed_timestamp_size(self, when: When) -> int:
        return self.queue.timestamp_size(timestamp_of(when))

    def delayed_timestamp_peek(self, when: When, start: int, count: int) -> List[Any]:
        """The decoded items due at ``when`` (always a list, also for count 1)."""
        return [codec.decode(raw) for raw in self.queue.items(timestamp_of(when), start, count)]

    def _queue_of(self, job: "JobRef") -> str:
        name = self.resque._class_name(job)
        queue = registered_queue(name) if isinstance(job, str) else registry.spec_for(job).queue
        if queue is None:
            raise NoQueueError(
                f"Jobs must be placed onto a queue. No queue could be inferred for class {name} "
                f"(give @job({name!r}, queue=...) or use enqueue_at_with_queue)")
        return queue


# -- the scheduler process --------------------------------------------------------------------

class Scheduler:
    """resque-scheduler's delayed-job loop: lead, release what is due, sleep, repeat."""

    def __init__(self, client: redis.Redis, keys: Keys, *, interval: float = DEFAULT_INTERVAL,
                 batch_size: int = DEFAULT_BATCH_SIZE, lock_timeout: int = DEFAULT_LOCK_TIMEOUT,
                 lock_prefix: str = "", hostname: Optional[str] = None,
                 clock: Callable[[], float] = time.time, recurring: Optional["Recurring"] = None) -> None:
        self.delayed = DelayedQueue(client, keys)
        self.interval = interval
        self.batch_size = max(1, batch_size)
        self.lock_timeout = max(1, int(lock_timeout))
        self.lock_key = keys.scheduler_master_lock(lock_prefix)
        self.lock_value = f"{hostname or socket.gethostname()}:{os.getpid()}"
        self.clock = clock
        self.stopping = threading.Event()
        self.released = 0
        self._leader: Optional[bool] = None
        self.recurring = recurring

    def run(self) -> int:
        """Until TERM, INT or QUIT: be leader or wait for the lock, release due jobs, sleep."""
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            signal.signal(sig, self._on_signal)
        log.info("scheduler %s starting: interval %gs, batch %d, lock %s", self.lock_value,
                 self.interval, self.batch_size, self.lock_key)
        try:
            while not self.stopping.is_set():
                try:
                    self.tick()
                except (redis.ConnectionError, redis.TimeoutError) as exc:
                    log.warning("Redis unavailable (%s); retrying in %gs", exc, self.interval)
                self.stopping.wait(self.pause())
        finally:
            self._step_down()
        log.info("scheduler %s stopped (released %d job(s))", self.lock_value, self.released)
        return 0

    def _on_signal(self, signum: int, frame: Any = None) -> None:
        log.info("%s received: stopping after the current batch", signal.Signals(signum).name)
        self.stopping.set()

    def is_leader(self) -> bool:
        """Ruby's ``master?``: take the free lock, or extend the one we hold."""
        leader = (self.delayed.acquire_lock(self.lock_key, self.lock_value, self.lock_timeout)
                  or self.delayed.renew_lock(self.lock_key, self.lock_value, self.lock_timeout))
        if leader != self._leader:
            if leader:
                log.info("scheduler %s is the leader (%s)", self.lock_value, self.lock_key)
                if self.recurring is not None:
                    self.recurring.lead(self.lock_key, self.lock_value)
            else:
                if self.recurring is not None:
                    self.recurring.step_down()
                log.info("scheduler %s waits: the leader lock is held by %s", self.lock_value,
                         self.delayed.lock_holder(self.lock_key))
            self._leader = leader
        elif not leader:
            log.debug("not the leader; polling again in %gs", self.interval)
        return leader

    def pause(self) -> float:
        """Seconds to the next poll: the interval, or less when a recurring slot comes sooner
        (rufus-scheduler fires on time whatever RESQUE_SCHEDULER_INTERVAL is)."""
        wake = self.recurring.next_wake() if self.recurring is not None and self._leader else None
        if wake is None:
            return self.interval
        return min(self.interval, max(0.001, wake - self.clock()))

    def tick(self) -> int:
        """One poll: while we lead, fire due recurring slots (and reload changed schedules),
        then release every due timestamp, batch by batch."""
        if self.recurring is not None and not self.stopping.is_set() and self.is_leader():
            self.recurring.update()
            _, still_leader = self.recurring.fire_due()
            if not still_leader:
                self._leader = None  # re-read the lock: someone else holds it now
                self.recurring.step_down()
        moved = 0
        while not self.stopping.is_set() and self.is_leader():
            timestamp = self.delayed.next_due(self.clock())
            if timestamp is None:
                break
            count = self.delayed.release_batch(timestamp, self.batch_size, self._failure)
            if count > 0:
                moved += count
                log.debug("released %d job(s) due at %d", count, timestamp)
        self.released += moved
        return moved

    def _failure(self, raw: bytes, problem: UnreleasableItem) -> str:
        return records.failure_entry(
            failed_at=codec.failed_at(self.clock()),
            payload_json=codec.encode(raw.decode("utf-8", errors="replace")),
            exception=problem.ruby_name, error=str(problem), backtrace=[],
            worker=self.lock_value + ":scheduler", queue=None)

    def _step_down(self) -> None:
        try:
            if self.delayed.release_lock(self.lock_key, self.lock_value):
                log.info("released the leader lock %s", self.lock_key)
        except (redis.ConnectionError, redis.TimeoutError, ResqueError) as exc:
            log.warning("could not release the leader lock (%s); it expires in %ds", exc, self.lock_timeout)
