"""The live source: Resque's own keys, read with ONE pipelined round trip per poll (issue 8).

Nothing is written and the wire format is untouched: the listener reads what Ruby and our
workers already keep (WIRE §1.2). Each poll sends, in one pipeline:

* ``GET stat:processed``, ``GET stat:failed``, ``LLEN failed``, ``SMEMBERS queues``,
  ``SMEMBERS workers``;
* ``LLEN queue:<q>`` for every queue the previous poll saw;
* ``MGET worker:<id>`` and ``MGET stat:processed:<id> stat:failed:<id>`` for every worker the
  previous poll saw (which queue each one works, and its share of the global deltas);
* ``LRANGE failed <last length> ...`` for the failure entries added since the previous poll.

Names learnt in one poll are read in the next (one poll interval late) because a second round
trip per poll would double the listener's cost on Redis. The global counters decide how many
jobs and failures happened; the per-worker counters and ``worker:<id>`` only say on which
queue, so a worker that appeared or vanished between polls can misplace a job, never add one.
"""
from __future__ import annotations

import json
import logging
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from resque_compat.listen.events import BUSY, DEPTH, FAILURE, JOB, Event
from resque_compat.wire import codec
from resque_compat.wire.keys import Keys
from resque_compat.wire.records import ParsedWorkerId

logger = logging.getLogger("resque_compat.listen")

#: New failure entries read per poll; a larger burst is counted from stat:failed but only this
#: many are parsed for their queue and exception, so one bad minute cannot stall the poll.
MAX_FAILURE_ENTRIES = 200


def _count(value: Any) -> int:
    try:
        return int(value) if value is not None else 0
    except (TypeError, ValueError):
        return 0


def apportion(counts: Mapping[str, int], total: int) -> Dict[str, int]:
    """Scale ``counts`` down so they sum to ``total`` (largest remainders), keeping shares."""
    current = sum(counts.values())
    if current <= total:
        return {k: v for k, v in counts.items() if v}
    shares = {k: v * total / current for k, v in counts.items()}
    out = {k: int(s) for k, s in shares.items()}
    leftover = total - sum(out.values())
    for key in sorted(shares, key=lambda k: (out[k] - shares[k], k))[:leftover]:
        out[key] += 1
    return {k: v for k, v in out.items() if v}


class Poller:
    """Turns successive reads of one namespace into :class:`Event` lists.

    ``client`` is any redis-py client on the Resque DB (bytes or decoded replies).
    """

    def __init__(self, client: Any, keys: Keys) -> None:
        self.redis = client
        self.keys = keys
        self.queues: List[str] = []
        self.workers: List[str] = []
        self._primed = False
        self._last_t = 0.0
        self._processed = 0
        self._failed = 0
        self._failed_len = 0
        self._worker_counts: Dict[str, Tuple[int, int]] = {}
        self._baseline_pending: set = set()
        self._worker_queue: Dict[str, str] = {}
        self._depths: Optional[Dict[str, int]] = None
        self._busy: Optional[int] = None

    def _read(self) -> Tuple[Any, ...]:
        """The one round trip of a poll (see the module docstring)."""
        k = self.keys
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(k.processed)
        pipe.get(k.failed_count)
        pipe.llen(k.failed)
        pipe.smembers(k.queues)
        pipe.smembers(k.workers)
        for q in self.queues:
            pipe.llen(k.queue(q))
        if self.workers:
            pipe.mget([k.worker(w) for w in self.workers])
            stat_keys: List[str] = []
            for w in self.workers:
                stat_keys += [k.worker_processed(w), k.worker_failed(w)]
            pipe.mget(stat_keys)
        if self._primed:
            pipe.lrange(k.failed, self._failed_len, self._failed_len + MAX_FAILURE_ENTRIES - 1)
        return tuple(pipe.execute())

    def poll(self, now: float) -> List[Event]:
        """Read once and return what happened since the previous poll (nothing on the first)."""
        reply = list(self._read())
        processed, failed, failed_len = _count(reply[0]), _count(reply[1]), _count(reply[2])
        queue_names = sorted(codec.text(q) for q in reply[3])
        worker_ids = sorted(codec.text(w) for w in reply[4])
        rest = reply[5:]
        depths = {q: _count(n) for q, n in zip(self.queues, rest[: len(self.queues)])}
        rest = rest[len(self.queues):]
        records: Sequence[Any] = []
        worker_stats: Sequence[Any] = []
        if self.workers:
            records, worker_stats, rest = rest[0], rest[1], rest[2:]
        entries = rest[0] if (self._primed and rest) else []

        events: List[Event] = []
        if self._primed:
            span = max(0.0, now - self._last_t)
            job_queues, fail_queues = self._worker_deltas(records, worker_stats)
            events += self._job_events(now, span, processed - self._processed, job_queues)
            events += self._failure_events(now, span, failed - self._failed,
                                           entries if failed_len >= self._failed_len else [],
                                           fail_queues)
        else:
            self._baseline_pending = set(worker_ids)
        busy = sum(1 for r in records if r)
        if depths != self._depths and (self.queues or self._depths):
            events.append(Event(now, DEPTH, queues=depths))
        if busy != self._busy and self._primed:
            events.append(Event(now, BUSY, n=busy))

        for wid in set(worker_ids) - set(self.workers) - self._baseline_pending:
            self._worker_counts[wid] = (0, 0)  # registered after we started: counts from zero
        for wid in set(self.workers) - set(worker_ids):
            self._worker_counts.pop(wid, None)
            self._worker_queue.pop(wid, None)
        self.queues, self.workers = queue_names, worker_ids
        self._processed, self._failed, self._failed_len = processed, failed, failed_len
        self._depths, self._busy, self._last_t, self._primed = depths, busy, now, True
        return events

    def _worker_deltas(self, records: Sequence[Any], stats: Sequence[Any]
                       ) -> Tuple[Dict[str, int], Dict[str, int]]:
        """Jobs and failures per queue according to the per-worker counters."""
        jobs: Dict[str, int] = {}
        fails: Dict[str, int] = {}
        for i, wid in enumerate(self.workers):
            queue = self._queue_of(wid, records[i] if i < len(records) else None)
            p, f = _count(stats[2 * i]), _count(stats[2 * i + 1])
            if wid in self._baseline_pending:
                self._baseline_pending.discard(wid)
                self._worker_counts[wid] = (p, f)
                continue
            old_p, old_f = self._worker_counts.get(wid, (0, 0))
            self._worker_counts[wid] = (p, f)
            if p > old_p:
                jobs[queue] = jobs.get(queue, 0) + p - old_p
            if f > old_f:
                fails[queue] = fails.get(queue, 0) + f - old_f
        return jobs, fails

    def _queue_of(self, wid: str, record: Any) -> str:
        """The queue a worker is on: its current job's, else its last job's, else its first."""
        if record:
            try:
                queue = json.loads(record).get("queue")
            except (ValueError, AttributeError):
                queue = None
            if isinstance(queue, str):
                self._worker_queue[wid] = queue
                return queue
        if wid in self._worker_queue:
            return self._worker_queue[wid]
        parsed = ParsedWorkerId.parse(wid)
        first = parsed.queues[0] if parsed else ""
        return "" if "*" in first else first

    @staticmethod
    def _job_events(now: float, span: float, delta: int, by_queue: Dict[str, int]) -> List[Event]:
        if delta <= 0:  # nothing, or the counters were reset (FLUSHDB, stats cleared)
            return []
        shares = apportion(by_queue, delta)
        unplaced = delta - sum(shares.values())
        if unplaced:
            shares[""] = shares.get("", 0) + unplaced
        return [Event(now, JOB, queue=q, n=n, span=span) for q, n in sorted(shares.items())]

    @staticmethod
    def _failure_events(now: float, span: float, delta: int, entries: Sequence[Any],
                        by_queue: Dict[str, int]) -> List[Event]:
        """One event per (queue, exception, job class); DirtyExit entries from pruning add no
        stat:failed, so the count is the larger of the counter delta and the new entries."""
        groups: Dict[Tuple[str, str, str], int] = {}
        for raw in entries:
            try:
                entry = json.loads(raw)
                payload = entry.get("payload")
                cls = payload.get("class") if isinstance(payload, dict) else ""
                key = (str(entry.get("queue") or ""), str(entry.get("exception") or ""), str(cls or ""))
            except (ValueError, AttributeError):
                key = ("", "", "")
            groups[key] = groups.get(key, 0) + 1
        unexplained = max(0, delta) - len(entries)
        if unexplained > 0:
            shares = apportion(by_queue, unexplained)
            shares[""] = shares.get("", 0) + unexplained - sum(shares.values())
            for queue, n in shares.items():
                if n:
                    groups[(queue, "", "")] = groups.get((queue, "", ""), 0) + n
        return [Event(now, FAILURE, queue=q, n=n, span=span, exception=exc, job_class=cls)
                for (q, exc, cls), n in sorted(groups.items())]
