"""resque-retry's ``Resque::Failure::MultipleWithRetrySuppression`` (``RESQUE_PY_FAILURE_BACKEND=
multiple_with_retry_suppression``), for the worker's failure path.

Ruby's backend ``save`` runs after the job's ``on_failure`` hooks, so resque-retry has already
decided. For a job with retry options (:mod:`resque_compat.retry`):

* being retried (its ``resque-retry:<Class>:<sha1>`` key was kept): the failure is counted in
  ``stat:failed`` but not listed in ``failed``; if the retry waits (delay > 0), the entry is kept
  in ``failure-resque-retry:<Class>:<sha1>`` for ``2 * delay`` seconds (``SETEX``), with
  ``failed_at`` without a zone and the full backtrace (fixtures retry_01, retry_03, retry_05);
* given up: ``DEL failure-resque-retry:...``, then the usual ``failed`` entry (retry_02).

Any other failure (a job without retry options, an unknown class, a bad payload) is listed as
with the ``redis`` backend.
"""
from __future__ import annotations

import logging
import math
import time
import traceback
from typing import Callable, Optional

import redis

from resque_compat.retry import RetryOutcome, outcome_of
from resque_compat.wire import codec, records
from resque_compat.wire.keys import Keys
from resque_compat.wire.records import Job

log = logging.getLogger("resque_compat.retry_failures")

BACKEND = "multiple_with_retry_suppression"


class RetrySuppression:
    """Decides, per failed job, whether its entry goes to ``failed`` (see module docstring)."""

    def __init__(self, client: redis.Redis, keys: Keys, clock: Callable[[], float] = time.time) -> None:
        self.redis = client
        self.keys = keys
        self.clock = clock

    def entry_to_list(self, job: Job, exc: BaseException, entry: str, worker_id: str) -> Optional[str]:
        """``entry`` if it is to be listed in ``failed``, None if suppressed (still counted)."""
        outcome = outcome_of(exc)
        if outcome is None:
            return entry
        try:
            return self._suppress(job, exc, entry, worker_id, outcome)
        except redis.RedisError as err:  # listing it twice beats losing it
            log.warning("could not keep %s's failure out of failed (%s); listing it", job.class_name, err)
            return entry

    def _suppress(self, job: Job, exc: BaseException, entry: str, worker_id: str,
                  outcome: RetryOutcome) -> Optional[str]:
        failure_key = self.keys.retry_failure(outcome.key)
        if not outcome.retrying:
            self.redis.delete(failure_key)  # cleanup_retry_failure_log!
            return entry
        if outcome.delay > 0:
            kept = records.failure_entry(
                failed_at=codec.failed_at(self.clock(), with_zone=False),
                payload_json=job.payload_json(),
                exception=records.exception_name(exc),
                error=str(exc),
                backtrace=full_backtrace(exc),
                worker=worker_id,
                queue=job.queue,
            )
            self.redis.setex(failure_key, max(1, math.ceil(2 * outcome.delay)), kept)
        return None


def suppression_for(backend: str, client: redis.Redis, keys: Keys,
                    clock: Callable[[], float] = time.time) -> Optional[RetrySuppression]:
    """The worker's RetrySuppression with that backend, else None (every failure is listed)."""
    return RetrySuppression(client, keys, clock) if backend == BACKEND else None


def full_backtrace(exc: BaseException) -> list:
    """Every frame, the worker's own included, innermost first: Ruby's backend stores
    ``exception.backtrace`` uncut, unlike the ``failed`` entry."""
    lines = [f"{f.filename}:{f.lineno}:in `{f.name}'" for f in traceback.extract_tb(exc.__traceback__)]
    lines.reverse()
    return lines
