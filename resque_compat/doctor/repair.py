"""``resque-py doctor --fix``: only the repairs Ruby itself would make, and never a lost job.

* A dead or unreadable worker is unregistered with Ruby's six commands (WIRE §3.5), after a
  failure entry for any job it held: ``Resque::PruneDeadWorkerDirtyExit`` for an expired
  heartbeat, ``Resque::DirtyExit "Job still being processed"`` otherwise (fixtures 06, 06b).
  A held value that is not JSON is kept in the entry as a JSON string (as Ruby stores a string
  payload), so its bytes survive.
* Unreadable heartbeat fields and orphaned ``started`` / ``stat:*:<id>`` keys are deleted.
* A ``worker:<id>`` value resque-web cannot read becomes such a failure entry, then is deleted.
* A scheduler lock whose holder is dead on this host is deleted if it still names it.

Every repair re-reads what it acts on first, so a worker that came back meanwhile is left alone.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Tuple

from resque_compat.doctor.checks import Doctor, Finding
from resque_compat.errors import DirtyExit, PruneDeadWorkerDirtyExit
from resque_compat.store.store import Store
from resque_compat.store.survey import BATCH
from resque_compat.wire import codec, health, records
from resque_compat.wire.codec import parse_heartbeat
from resque_compat.wire.records import dirty_exit_entry, held_job

_UNREGISTER = ("bad_worker_id", "ghost_dead_pid", "ghost_expired_heartbeat")


def held_entry(raw: Optional[bytes], wid: str, exc: DirtyExit, when: float) -> Tuple[Optional[str], Optional[str]]:
    """(failure entry, its job queue) for what ``worker:<id>`` held; (None, None) if no job.
    A held job that resque-web's Failed page could not show either (an ActiveJob wrapper with
    no arguments) is kept as the string of its bytes, as a value that is not JSON is."""
    record = held_job(raw)
    queue = record.get("queue") if record is not None else None
    queue = queue if isinstance(queue, str) else None
    if record is not None:
        entry = dirty_exit_entry(record, exc, wid, when)
        if health.failure_entry_problem(entry) is None:
            return entry, queue
    if not raw or raw.strip() in (b"{}", b""):
        return None, None
    text = raw.decode("utf-8", errors="replace")
    entry = records.failure_entry(failed_at=codec.failed_at(when), payload_json=codec.encode(text),
                                  exception=records.exception_name(exc), error=str(exc),
                                  backtrace=[], worker=wid, queue=queue)
    return entry, queue


class Repairer:
    """Applies the fixable findings of one :class:`Doctor` run; :attr:`done` says what it did."""

    def __init__(self, doctor: Doctor, store: Store, clock: Callable[[], float]) -> None:
        self.doctor = doctor
        self.survey = doctor.survey
        self.keys = doctor.keys
        self.store = store
        self.clock = clock
        self.done: List[str] = []

    def run(self, findings: List[Finding]) -> List[str]:
        plain_keys = []
        for finding in findings:
            if not finding.fixable:
                continue
            repair = getattr(self, "_" + finding.check, None)
            if repair is None:
                plain_keys.append(finding)
            else:
                repair(finding)
        self._delete_keys(plain_keys)
        return self.done

    # -- workers ------------------------------------------------------------------------------
    def _unregister(self, wid: str, exc: DirtyExit, why: str) -> None:
        (_, raw), = self.survey.values([self.keys.worker(wid)])
        entry, queue = held_entry(raw, wid, exc, self.clock())
        self.store.unregister_workers([wid], [entry] if entry else [], failure_queues=[queue])
        self.done.append(f"unregistered {wid} ({why})" +
                         (f"; its job is now a {records.exception_name(exc)} failure" if entry else ""))

    def _bad_worker_id(self, finding: Finding) -> None:
        self._unregister(finding.subject, DirtyExit("Job still being processed"), "unreadable id")

    def _ghost_dead_pid(self, finding: Finding) -> None:
        wid = finding.subject
        parsed = records.ParsedWorkerId.parse(wid)
        if parsed is None or self.doctor.alive(int(parsed.pid)):
            return
        self._unregister(wid, DirtyExit("Job still being processed"), f"pid {parsed.pid} is dead")

    def _ghost_expired_heartbeat(self, finding: Finding) -> None:
        wid = finding.subject
        beat = self.survey.heartbeat_of(wid)
        when = parse_heartbeat(beat) if beat else None
        if when is None or self.survey.server_time() - when <= self.doctor.prune_interval:
            return  # it beat again meanwhile
        (_, raw), = self.survey.values([self.keys.worker(wid)])
        record = held_job(raw) or {}
        payload = record.get("payload")
        job = payload.get("class") if isinstance(payload, dict) else None
        shown = job if isinstance(job, str) else "<Unknown Job>"
        self._unregister(wid, PruneDeadWorkerDirtyExit(
            f"Worker {wid} did not gracefully exit while processing {shown}"), "heartbeat expired")

    # -- single keys --------------------------------------------------------------------------
    def _bad_heartbeat_field(self, finding: Finding) -> None:
        if self.survey.forget_heartbeats([finding.subject]):
            self.done.append(f"deleted heartbeat field {finding.subject!r}")

    _bad_heartbeat = _bad_heartbeat_field

    def _save_record(self, finding: Finding, exc: DirtyExit) -> None:
        wid = finding.subject
        (_, raw), = self.survey.values([finding.key])
        if raw is None:
            return
        entry, queue = held_entry(raw, wid, exc, self.clock())
        backend = self.store.failure_backend
        if self.survey.record_and_delete(finding.key, raw, self.keys.failure_list(queue, backend), entry,
                                         self.keys.failed_queues_member(queue, backend) or ""):
            self.done.append(f"deleted {finding.key}" + ("; what it held is now a failure entry"
                                                        if entry else ""))

    def _bad_worker_record(self, finding: Finding) -> None:
        self._save_record(finding, DirtyExit("Job still being processed (its worker:<id> value "
                                             "was unreadable; saved by resque-py doctor --fix)"))

    def _orphan_worker(self, finding: Finding) -> None:
        if not self.survey.is_worker(finding.subject):
            self._save_record(finding, DirtyExit("Job still being processed"))

    def _delete_keys(self, findings: List[Finding]) -> None:
        """Orphaned ``started`` / ``stat:*:<id>`` keys and Resque keys of the wrong type, in
        one batch; an orphan whose worker registered meanwhile is kept."""
        orphans = [f for f in findings if f.check.startswith("orphan_")]
        back = {f.subject for f, registered in zip(orphans, self.survey.are_workers(
            [f.subject for f in orphans])) if registered}
        doomed = [f.key for f in findings if f.subject not in back or not f.check.startswith("orphan_")]
        for start in range(0, len(doomed), BATCH):
            chunk = doomed[start:start + BATCH]
            if self.survey.delete(chunk):
                self.done.extend(f"deleted {key}" for key in chunk)

    def _pruning_lock_without_ttl(self, finding: Finding) -> None:
        if self.survey.delete_if_equal(finding.key, finding.subject):
            self.done.append(f"deleted the pruning lock with no expiry (held by {finding.subject})")

    def _dead_scheduler_lock(self, finding: Finding) -> None:
        if self.survey.delete_if_equal(finding.key, finding.subject):
            self.done.append(f"deleted the scheduler lock held by dead {finding.subject}")
