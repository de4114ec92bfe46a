"""Ruby's dead-worker pruning and unregistering, rule for rule (WIRE §3.5, §3.6).

A worker whose heartbeat is older than the prune interval, or a same-host worker whose pid is
gone from ``ps``, is unregistered by whoever starts first, Ruby or us; a job it still held
becomes a ``DirtyExit`` failure entry (or, with DIRTY_EXIT=requeue, goes back to its queue).
"""
from __future__ import annotations

import logging
import re
import subprocess
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Set

from resque_compat.errors import DirtyExit, PruneDeadWorkerDirtyExit
from resque_compat.settings import Settings
from resque_compat.store.dead import CAPPED, DeadWorker
from resque_compat.store.store import Store
from resque_compat.wire import codec, records
from resque_compat.wire.queues import QueueList

log = logging.getLogger("resque_compat.heartbeat")  # the logger name operators already filter on

#: What Ruby's pruner greps ``ps -A -o pid,command`` for (WIRE §3.5 step 2):
#: ``grep -E "[r]esque:work|[r]esque:\sStarting|[r]esque-[0-9]" | grep -v "resque-web"``.
RESQUE_PS_LINE = re.compile(r"resque:work|resque:\sStarting|resque-[0-9]")


def resque_pids() -> List[str]:
    """Pids (as strings, compared exactly as Ruby does) of processes that look like Resque."""
    # Any process may have argv bytes that are not UTF-8: never let one crash our start-up.
    # stdin=DEVNULL: with no stdin, gevent's subprocess clears O_NONBLOCK on the child's fd 0,
    # which is the same open file as ours; were that a Redis socket, it would block (issue 14).
    out = subprocess.run(["ps", "-A", "-o", "pid,command"], stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, errors="replace", check=False).stdout
    pids = []
    for line in out.splitlines()[1:]:
        if RESQUE_PS_LINE.search(line) and "resque-web" not in line:
            pids.append(line.split(None, 1)[0])
    return pids


def _pruner_fields(wid: str) -> Optional[tuple]:
    """(host, pid, queue set) as Ruby's pruner reads an id (WIRE §3.4); None where Ruby crashes."""
    parsed = records.ParsedWorkerId.parse(wid)
    return None if parsed is None else (parsed.host, parsed.pid, frozenset(parsed.queues))


def _ruby_to_s(value: object) -> str:
    """``"#{value}"`` for the JSON scalars a job's ``class`` can hold."""
    if value is True:
        return "true"
    if isinstance(value, float):
        return codec.ruby_float(value)
    if isinstance(value, str):
        return value
    # Ruby would print a Hash or Array with #inspect; neither names a class, so JSON will do.
    return codec.encode(value) if isinstance(value, (dict, list)) else str(value)


@dataclass(frozen=True)
class DirtyExitPolicy:
    """DIRTY_EXIT and its cap: what our pruners do with a job a dead worker held."""

    mode: str = "fail"  # "fail" (Ruby's) or "requeue"
    cap: int = 3  # DIRTY_EXIT_MAX: the cap-th crash fails the job instead (0 = no cap)
    window: float = 72 * 3600.0  # DIRTY_EXIT_WINDOW, seconds


def dirty_exit_policy(settings: Settings) -> DirtyExitPolicy:
    return DirtyExitPolicy(settings.dirty_exit, settings.dirty_exit_max, settings.dirty_exit_window)


def prune_dead_workers(
    store: Store,
    own_id: str,
    queues: QueueList,
    hostname: str,
    prune_interval: float,
    lock_ttl: float,
    now: Callable[[], float],
    pids: Callable[[], List[str]] = resque_pids,
    policy: DirtyExitPolicy = DirtyExitPolicy(),
) -> List[str]:
    """Ruby's ``Worker#prune_dead_workers``, rule for rule. Returns the ids it unregistered.
    A job a dead id held is failed as Ruby does, or requeued per ``policy`` (DIRTY_EXIT).

    Never touches a live Ruby worker: same host, exact pid string in ``ps``, same queue set
    (or ``*`` in ours), and heartbeat age against Redis TIME, as in WIRE §3.5.
    """
    if not store.acquire_pruning_lock(own_id, int(lock_ttl)):
        return []
    view = store.prune_view()
    # 1. Heartbeat path, any host, every field of workers:heartbeat (registered or not):
    #    Ruby's ``(now - Time.parse(beat)).to_i > Resque.prune_interval``.
    expired: Dict[str, None] = {}
    for wid, value in view.heartbeats.items():
        if _pruner_fields(wid) is None:
            log.warning("not pruning %s: not a worker id Ruby could parse", wid)
            continue
        when = codec.parse_heartbeat(value)
        if when is None:
            log.warning("not pruning %s: its heartbeat %r is not a time Ruby could parse", wid, value)
            continue
        if int(view.server_time - when) > prune_interval:
            expired[wid] = None
    # 2. ps path: same host, same queue set (unless we have '*'), pid string not in ps.
    local_pids: Optional[List[str]] = None
    same_host: List[str] = []
    own_set = frozenset(queues.include)
    for wid in view.workers:
        if wid in expired:
            continue
        fields = _pruner_fields(wid)
        if fields is None:
            log.warning("not pruning %s: not a worker id Ruby could parse", wid)
            continue
        host, pid, worker_queues = fields
        if not queues.has_star and worker_queues != own_set:
            continue
        if host != hostname:
            continue
        if local_pids is None:
            local_pids = pids()
        if pid in local_pids:
            continue
        same_host.append(wid)
    victims = list(expired) + same_host
    for wid in victims:
        log.info("Pruning dead worker: %s", wid)
    _unregister_dead(store, victims, set(expired), policy, now)
    return victims


def unregister_dead_process(store: Store, hostname: str, pid: int, policy: DirtyExitPolicy,
                            now: Callable[[], float]) -> List[str]:
    """Unregister every id of process ``pid`` on this host, which is known dead (a pool child
    that exited), at once and without Ruby's pruning lock: Ruby's ``unregister_worker`` with
    DIRTY_EXIT for each job held (issue 14, requirement 3). Returns the ids."""
    view = store.prune_view()
    ids = [wid for wid in dict.fromkeys(view.workers + list(view.heartbeats))
           if (fields := _pruner_fields(wid)) is not None and fields[:2] == (hostname, str(pid))]
    _unregister_dead(store, ids, set(), policy, now)
    return ids


def _unregister_dead(store: Store, victims: Sequence[str], expired: Set[str],
                     policy: DirtyExitPolicy, now: Callable[[], float]) -> None:
    """Decide each dead id's job per ``policy`` (ids in ``expired`` died by heartbeat age:
    PruneDeadWorkerDirtyExit), then one atomic unregister (store/dead.py)."""
    if not victims:
        return
    dead = []
    for wid, raw in zip(victims, store.worker_jobs(victims)):
        record = records.held_job(raw)
        if raw is None or record is None:
            dead.append(DeadWorker(wid))
            continue
        queue = record.get("queue") if isinstance(record.get("queue"), str) else None
        if policy.mode == "requeue" and isinstance(record.get("payload"), dict) and queue is not None:
            # DIRTY_EXIT=requeue: back to the head of its queue, exact bytes (at-least-once),
            # unless this is the cap-th worker it crashed: then a DirtyExit saying so.
            item = records.payload_bytes_from_record(raw, record) or \
                codec.encode(record["payload"]).encode("utf-8")
            capped = DirtyExit(f"Job crashed its worker {policy.cap} times within "
                               f"{policy.window / 3600:g}h (DIRTY_EXIT_MAX={policy.cap}); not "
                               "requeued again")
            dead.append(DeadWorker(wid, raw, "requeue", queue=queue, item=item,
                                   capped_entry=records.dirty_exit_entry(record, capped, wid, now())))
            continue
        if wid in expired:
            # Ruby: job_class = worker.job(false)['payload']['class'] rescue nil; job ||= "<Unknown Job>"
            payload = record.get("payload")
            job_class = payload.get("class") if isinstance(payload, dict) else None
            shown = "<Unknown Job>" if job_class is None or job_class is False else _ruby_to_s(job_class)
            exc: DirtyExit = PruneDeadWorkerDirtyExit(
                f"Worker {wid} did not gracefully exit while processing {shown}")
        else:
            exc = DirtyExit("Job still being processed")
        dead.append(DeadWorker(wid, raw, "fail", entry=records.dirty_exit_entry(record, exc, wid, now()),
                               queue=queue))
    outcomes = store.unregister_dead_workers(dead, policy.cap, policy.window)
    for d, outcome in zip(dead, outcomes):
        if outcome == CAPPED:
            log.warning("%s: its job crashed %d workers; recorded as a failure, not requeued (%s)",
                        d.worker_id, policy.cap, d.item[:200].decode("utf-8", "replace"))


def unregister_workers(store: Store, ids: Sequence[str], now: Callable[[], float]) -> List[dict]:
    """Ruby's ``unregister_worker`` for live ids (shutdown, ``remove-worker``): a
    ``Resque::DirtyExit "Job still being processed"`` entry for each job still held, then the
    six-key unregister, in one MULTI. Returns the held job records."""
    entries, queues, held = [], [], []
    for wid, raw in zip(ids, store.worker_jobs(ids)):
        record = records.held_job(raw)
        if record is not None:
            held.append(record)
            entries.append(records.dirty_exit_entry(record, DirtyExit("Job still being processed"), wid, now()))
            queues.append(record.get("queue"))
    store.unregister_workers(ids, entries, failure_queues=queues)
    return held
