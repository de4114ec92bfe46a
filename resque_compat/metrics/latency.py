"""Queue latency: the age of the oldest job waiting in each queue (issue 16 item 3).

The oldest job is the head of the list (``LINDEX queue:<q> 0``; Resque pops from the left).

* **enqueued_at** (exact): ActiveJob payloads carry ``enqueued_at`` (set by Rails), and so do
  payloads with a top-level ``enqueued_at``. Age = now - enqueued_at, where now is Redis TIME;
  only the enqueuing host's clock skew against Redis enters (``resque-py doctor`` checks this
  host's).
* **first_seen** (estimate): a plain Resque payload has no time. The observer remembers the
  head's bytes and when it first saw them at the head; age = now - that time. Its error:

  - it is a lower bound. It counts the time spent at the head, not the time spent behind the
    jobs popped before it, so under a backlog it under-reads by up to (queue length x time per
    job). On a queue that keeps up (the healthy case) a job reaches the head soon after it is
    pushed and the estimate is close;
  - after the observer starts (a worker's start, each ``queues --watch``), it reads 0 for the
    head already there and catches up with real time from then on;
  - it moves in steps of the poll interval (METRICS_INTERVAL, or ``--watch``);
  - two identical payloads in a row look like one head, so the age keeps growing across them
    (an over-read while they last).

Pure: the caller reads the heads and the time; this module only remembers what it saw.
"""
from __future__ import annotations

import hashlib
from typing import Any, Dict, Optional, Tuple, Union

from resque_compat.errors import ResqueError
from resque_compat.wire.activejob_args import JOB_WRAPPER, parse_time
from resque_compat.wire.records import Job, parse_job

EXACT, ESTIMATE = "enqueued_at", "first_seen"


def enqueued_at(job: Job) -> Optional[float]:
    """When the job was enqueued, if the payload says: ActiveJob's ``enqueued_at`` in the job
    data, or a top-level ``enqueued_at`` (epoch seconds or ISO 8601)."""
    payload = job.payload
    value: Any = None
    if job.class_name == JOB_WRAPPER and job.args and isinstance(job.args[0], dict):
        value = job.args[0].get("enqueued_at")
    elif isinstance(payload, dict):
        value = payload.get("enqueued_at")
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return parse_time(value).timestamp()
    except (ResqueError, ValueError, OverflowError):
        return None


class OldestJobAge:
    """Remembers each queue's head between polls (one instance per observer)."""

    def __init__(self) -> None:
        self._heads: Dict[str, Tuple[bytes, float]] = {}

    def observe(self, queue: str, head: Optional[Union[bytes, str]], now: float) -> Optional[Tuple[float, str]]:
        """(age in seconds, method) of ``queue``'s head at ``now``; None for an empty queue."""
        if head is None:
            self._heads.pop(queue, None)
            return None
        raw = head.encode("utf-8", errors="surrogateescape") if isinstance(head, str) else head
        when = enqueued_at(parse_job(queue, raw))
        if when is not None:
            self._heads.pop(queue, None)
            return max(0.0, now - when), EXACT
        digest = hashlib.sha1(raw).digest()
        seen = self._heads.get(queue)
        if seen is None or seen[0] != digest:
            self._heads[queue] = (digest, now)
            return 0.0, ESTIMATE
        return max(0.0, now - seen[1]), ESTIMATE

    def forget_others(self, queues: "set[str]") -> None:
        """Drop queues no longer watched, so memory follows the watched set."""
        for name in [q for q in self._heads if q not in queues]:
            del self._heads[name]
