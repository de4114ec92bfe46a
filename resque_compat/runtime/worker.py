"""Worker: one Resque worker id served by one greenlet. The per-job flow lives here.

``work_one_job`` is Ruby's ``Worker#work_one_job`` + ``perform`` + ``report_failed_job`` +
``done_working`` (WIRE §6.7), readable top to bottom: reserve, perform, record, done.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Callable, Optional

import gevent

from resque_compat import hooks, loner, registry
from resque_compat.errors import DirtyExit, DontPerform, JobTimeout, PayloadError
from resque_compat.log import VERBOSE, job_context
from resque_compat.runtime.fetcher import Fetcher
from resque_compat.wire import codec, records
from resque_compat.wire.records import Job

if TYPE_CHECKING:  # the recorder imports the runtime it reports on
    from resque_compat.metrics.recorder import Metrics
    from resque_compat.retry_failures import RetrySuppression

log = logging.getLogger("resque_compat.worker")


class Worker:
    """One slot: the id ``host:pid:queues:slot`` that resque-web lists as a worker."""

    def __init__(self, worker_id: str, fetcher: Fetcher, job_timeout: float = 0.0,
                 clock: Callable[[], float] = time.time, metrics: Optional[Metrics] = None,
                 retry_suppression: Optional[RetrySuppression] = None) -> None:
        self.id = worker_id
        self.fetcher = fetcher
        self.metrics = metrics
        #: RESQUE_PY_FAILURE_BACKEND=multiple_with_retry_suppression: keeps the failures of jobs
        #: being retried out of ``failed`` (still counted), as resque-retry's backend does.
        self.retry_suppression = retry_suppression
        self.job_timeout = job_timeout
        self.clock = clock
        self.job: Optional[Job] = None
        self.job_started = 0.0
        self.greenlet: Optional[gevent.Greenlet] = None
        self.processed = 0
        self.failed = 0

    def __str__(self) -> str:
        return self.id

    def work(self) -> None:
        """Take and run jobs until the fetcher says stop (QUIT, TERM, INTERVAL=0 drained)."""
        while self.work_one_job():
            pass

    def kill_job(self, exc: BaseException) -> bool:
        """USR1, or TERM/INT after the grace period: stop the job this slot runs now with
        ``exc``, recorded as its failure. False if the slot runs none.

        A kill from another greenlet lands a hub turn later; by then the job may have ended
        and the slot be waiting for its next one, or running it. The landing therefore checks
        that the slot still runs this job, and does nothing otherwise: a throw into
        ``reserve()`` would abandon a waiting entry the next trip may fill (a lost job, 1 of
        10,000 under USR1 x10), and a job started after the signal is not the signal's."""
        job, greenlet = self.job, self.greenlet
        if job is None or greenlet is None:
            return False

        def land() -> None:
            if self.job is job and not greenlet.dead:
                greenlet.throw(exc)

        gevent.get_hub().loop.run_callback(land)  # from the hub, as Greenlet.kill throws
        return True

    def work_one_job(self) -> bool:
        """Reserve, perform and record one job exactly as Ruby's Worker#work_one_job does."""
        job = self.fetcher.reserve(self.id)  # LPOP + SET worker:<id>, atomic, for many slots
        if job is None:
            return False
        self.job, self.job_started = job, self.clock()
        failure: Optional[str] = None
        suppressed = False
        counted = True  # in stat:failed; Ruby never counts a DirtyExit there (WIRE §1.2)
        log.log(VERBOSE, "got: %s", job, extra={"worker": self.id, "queue": job.queue,
                                                "job_class": job.class_name})
        try:
            with job_context(self.id, job.queue, job.class_name):  # the job's own log lines name it
                self.perform(job)
        except DontPerform:
            log.log(VERBOSE, "skipped: %s (a before_perform hook raised DontPerform)", job)
        except Exception as exc:  # unknown class, bad payload, job error, TERM after the grace, USR1
            self.failed += 1
            failure = self.failure_entry(job, exc)
            counted = not isinstance(exc, DirtyExit)
            if self.retry_suppression is not None:  # None: listed; still counted in stat:failed
                failure = self.retry_suppression.entry_to_list(job, exc, failure, self.id)
                suppressed = failure is None
        else:
            log.log(VERBOSE, "done: %s", job, extra={
                "worker": self.id, "queue": job.queue, "job_class": job.class_name,
                "seconds": round(self.clock() - self.job_started, 6)})
        finally:
            self.job = None
            self.processed += 1
            if self.metrics is not None:  # in-memory counts only; flushed periodically
                self.metrics.job_ended(job, self.job_started, self.clock(), failure is not None or suppressed)
            # failure entry + stat:failed, then DEL worker:<id> + stat:processed: one trip,
            # batched with other slots'; retried (never twice) while Redis is away.
            self.fetcher.done_working(job, self.id, failure, suppressed, counted)
        return True

    def perform(self, job: Job) -> Any:
        """Run the job's registered Python code with the payload's args (``perform(*args)``)."""
        if job.problem:
            raise PayloadError(
                f"cannot run this {job.queue!r} queue item: {job.problem}. Resque jobs are JSON "
                'objects {"class":"Ruby::Name","args":[...]}; fix the producer, then retry or '
                "remove this failure"
            )
        assert job.class_name is not None  # parse_job sets it on every job without a problem
        spec = registry.lookup(job.class_name)
        unique = loner.unique_for(spec, self.fetcher.store.keys, job.queue, job.args)
        if unique is not None:  # resque-loner frees the key at reserve, before any hook
            loner.unqueued(self.fetcher.store.redis, unique)
        limit = spec.timeout if spec.timeout is not None else self.job_timeout
        if not limit:
            return hooks.perform(spec, job.args)
        with gevent.Timeout(limit, JobTimeout(
                f"{spec.name} ran longer than its {limit:g}s time limit and was stopped "
                "(raise @job(timeout=...) or JOB_TIMEOUT if it needs longer)")):
            return hooks.perform(spec, job.args)

    def failure_entry(self, job: Job, exc: BaseException) -> str:
        """The failure entry Ruby's ``Failure::Redis#save`` would write (WIRE §4.4)."""
        log.log(VERBOSE, "failed: %s: %s: %s", job, records.exception_name(exc), exc,
                    extra={"worker": self.id, "queue": job.queue, "job_class": job.class_name})
        return records.failure_entry(
            failed_at=codec.failed_at(self.clock()),
            payload_json=job.payload_json(),
            exception=records.exception_name(exc),
            error=str(exc),
            # Ruby never raises a DirtyExit: it builds one and calls job.fail, so the entry's
            # backtrace is [] (fixtures 06, 06b); our USR1 kill is such a DirtyExit.
            backtrace=[] if isinstance(exc, DirtyExit) else records.backtrace_lines(exc.__traceback__),
            worker=self.id,
            queue=job.queue,
        )
