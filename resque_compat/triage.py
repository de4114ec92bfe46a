"""Failed-job triage that never hits the wrong entry and scales to large failure lists.

* Each entry has a stable id (:func:`~resque_compat.wire.triage.entry_id`). Single actions take
  ``INDEX:ID`` (refused if the entry at INDEX no longer hashes to ID), the ID alone (found by a
  scan), or a bare INDEX (resque-web's semantics).
* Filters (:class:`~resque_compat.wire.triage.FailureFilter`) pick entries; bulk retry/remove act
  on what matched when the scan reached it, with a dry-run count first.
* Everything streams: lists are read :data:`~resque_compat.store.triage.PAGE` entries at a time,
  newest first by default, and actions go out in pipelines of compare-and-act scripts, so memory
  stays flat at 100,000 failures and more.

Correct under concurrent failures: workers only RPUSH, which never moves an existing index, and
scans start from the length read when they begin, so new failures are neither seen nor hit.
Someone else's remove shifts entries down; the compare-and-act script then looks for the same
bytes a little below the old index (:data:`~resque_compat.store.triage.WINDOW`).
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Tuple

from resque_compat.errors import NoClassError, NoQueueError, ResqueError
from resque_compat.failures import Failure, FailureLookupError, Failures, decode_entry, job_of
from resque_compat.store.triage import FailureStore
from resque_compat.wire import codec
from resque_compat.wire.triage import FailureFilter, Ref, entry_id, parse_failed_at


class ListMoved(FailureLookupError):
    """The entry at that index is not the one the id names: the list moved since it was read."""


@dataclass(frozen=True)
class Entry:
    """A failure with its stable id and the exact bytes that id was taken from."""

    failure: Failure
    raw: Any = field(repr=False)

    @property
    def id(self) -> str:
        return entry_id(self.raw)

    @property
    def ref(self) -> str:
        return f"{self.failure.index}:{self.id}"

    def as_json(self) -> dict:
        return {"ref": self.ref, "id": self.id, **self.failure.as_json()}


@dataclass
class BulkReport:
    """A bulk action's outcome: how many matched, how many were acted on, how many had gone
    (removed or changed by someone else meanwhile), and entries that could not be retried."""

    matched: int = 0
    done: int = 0
    gone: int = 0
    problems: List[str] = field(default_factory=list)


class Triage:
    """Triage over one failure backend's lists (``failures`` says which)."""

    def __init__(self, failures: Failures) -> None:
        self.failures = failures
        self.keys = failures.keys
        self.store = FailureStore(failures.redis, failures.keys)

    # -- reading ------------------------------------------------------------------------------
    def _entry(self, key: str, index: int, raw: Any) -> Entry:
        text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
        return Entry(Failure(index, self.keys.strip(key), text, decode_entry(raw), key), raw)

    def _list(self, key: str, newest: bool) -> Iterator[Entry]:
        if newest:
            for low, page in self.store.pages_backwards(key, self.store.length(key) - 1):
                for offset in range(len(page) - 1, -1, -1):
                    yield self._entry(key, low + offset, page[offset])
        else:
            end = self.store.length(key)  # failures pushed while we read are not ours to see
            for low, page in self.store.pages_forwards(key):
                for offset, raw in enumerate(page):
                    if low + offset >= end:
                        return
                    yield self._entry(key, low + offset, raw)

    def scan(self, filt: FailureFilter = FailureFilter(), newest: bool = True,
             limit: Optional[int] = None) -> Iterator[Entry]:
        """Matching entries, newest (or oldest) first. With several lists (redis_multi_queue)
        they are merged by ``failed_at``, holding one page per list."""
        keys = self.failures.list_keys(filt.queue if self.failures.multi else None)
        streams = [self._list(key, newest) for key in keys]
        if len(streams) == 1:
            merged: Iterator[Entry] = streams[0]
        else:
            sign = -1 if newest else 1
            merged = heapq.merge(*streams, key=lambda e: sign * (parse_failed_at(e.failure.get("failed_at")) or 0))
        shown = 0
        for entry in merged:
            if limit is not None and shown >= limit:
                return
            if filt.matches(entry.failure.data, entry.failure.raw):
                shown += 1
                yield entry

    def count(self, filt: FailureFilter = FailureFilter()) -> int:
        return sum(1 for _ in self.scan(filt))

    def find(self, ref: Ref, queue: Optional[str] = None) -> Entry:
        """The entry ``ref`` names now. Raises ListMoved if INDEX:ID disagree, FailureNotFound
        / FailureLookupError if there is no such entry."""
        if ref.index is None:
            for entry in self.scan(FailureFilter(queue=queue) if self.failures.multi else FailureFilter()):
                if entry.id == ref.id:
                    return entry
            raise FailureLookupError(f"no failure has id {ref.id} (retried or removed since, which "
                                     "changes or drops it); `resque-py failed list` shows the ids")
        key = self.failures.list_for_index(queue)
        raw = self.store.at(key, ref.index)
        if raw is None:
            raise self.failures.not_found(key, ref.index)
        entry = self._entry(key, ref.index, raw)
        if ref.id is not None and entry.id != ref.id:
            raise ListMoved(f"the failure list moved: {self.keys.strip(key)}[{ref.index}] is now "
                            f"{entry.id}, not {ref.id}; nothing was done. Run `resque-py failed list` "
                            f"again, or give the id alone ({ref.id}) to act on that failure wherever it is")
        return entry

    # -- acting -------------------------------------------------------------------------------
    def _retry_action(self, entry: Entry, stamp: str) -> Tuple[Tuple[str, int, Any, str, str, str], Optional[str]]:
        data = entry.failure.data
        if data is None:
            raise ResqueError(f"{entry.ref} is not a JSON object, so it cannot be retried; "
                              f"remove it with `resque-py failed remove {entry.ref}`")
        data = dict(data)
        data["retried_at"] = stamp  # an existing retried_at keeps its place, as in Ruby
        problem, queue, job = None, "", ""
        try:
            queue, class_name, args = job_of(data)
            job = codec.encode_job(class_name, args)
        except (NoQueueError, NoClassError) as exc:  # Ruby writes retried_at, then raises
            problem = f"{entry.ref}: {exc}"
        return (entry.failure.key, entry.failure.index, entry.raw, codec.encode(data), queue, job), problem

    def retry(self, entry: Entry) -> Optional[str]:
        """resque-web's Retry on exactly this entry. Returns a problem text (no queue/class:
        retried_at written, nothing pushed) or None. Raises ListMoved if it changed."""
        report = self._apply("retry", [entry])
        if report.gone:
            raise ListMoved(f"{entry.ref} changed or moved while being retried; nothing was done. "
                            "Run `resque-py failed list` again")
        return report.problems[0] if report.problems else None

    def remove(self, entry: Entry) -> None:
        if self._apply("remove", [entry]).gone:
            raise ListMoved(f"{entry.ref} changed or moved while being removed; nothing was done. "
                            "Run `resque-py failed list` again")

    def bulk(self, action: str, filt: FailureFilter, dry_run: bool = False) -> BulkReport:
        """Retry or remove every entry matching ``filt`` that exists when its list's scan starts.

        Each list is read newest first, one PAGE at a time, and each page's actions go out (one
        pipeline) before the next page is read: our removals then never move an entry not yet
        reached. Others' removals move entries down, so a page can show again an entry we
        already retried; every retry of one run writes the same ``retried_at`` (the run's start),
        which is how such an entry is recognised and skipped.
        """
        report = BulkReport()
        stamp = self._stamp()
        for key in self.failures.list_keys(filt.queue if self.failures.multi else None):
            for low, page in self.store.pages_backwards(key, self.store.length(key) - 1):
                batch = []
                for offset in range(len(page) - 1, -1, -1):
                    entry = self._entry(key, low + offset, page[offset])
                    if action == "retry" and entry.failure.get("retried_at") == stamp:
                        continue
                    if filt.matches(entry.failure.data, entry.failure.raw):
                        report.matched += 1
                        batch.append(entry)
                if batch and not dry_run:
                    self._apply(action, batch, report, stamp)
        return report

    def _stamp(self) -> str:
        # Redis backend: "%Y/%m/%d %H:%M:%S %Z"; RedisMultiQueue leaves the zone out (fixture 10b).
        return codec.failed_at(self.failures.clock(), with_zone=not self.failures.multi)

    def _apply(self, action: str, entries: List[Entry], report: Optional[BulkReport] = None,
               stamp: Optional[str] = None) -> BulkReport:
        """One pipeline of compare-and-act scripts. Each script finds its entry at its index or
        up to WINDOW places below (others' removals); one it cannot find was retried, removed
        or changed by someone else, and is counted as gone."""
        report = report or BulkReport(matched=len(entries))
        if action == "remove":
            by_list: Dict[str, List[Tuple[int, Any]]] = {}
            for e in entries:
                by_list.setdefault(e.failure.key, []).append((e.failure.index, e.raw))
            for key, pairs in by_list.items():
                results = self.store.remove_many(key, pairs)
                report.done += sum(results)
                report.gone += len(results) - sum(results)
            return report
        stamp = stamp or self._stamp()
        actions = []
        for entry in entries:
            try:
                act, problem = self._retry_action(entry, stamp)
            except ResqueError as exc:  # not a JSON object: nothing written, as Ruby could not
                report.problems.append(str(exc))
                continue
            actions.append((act, problem))
        for (_, problem), ok in zip(actions, self.store.retry_many([a for a, _ in actions])):
            if not ok:
                report.gone += 1
            elif problem:
                report.problems.append(problem)
            else:
                report.done += 1
        return report
