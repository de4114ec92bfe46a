"""Heartbeats from a real OS thread, and Ruby's dead-worker pruning rules (WIRE §3.5, §3.6).

The heartbeat runs in a native thread with its own Redis connection so that a job that hogs the
gevent hub (a CPU loop) cannot starve it: a worker whose heartbeat is older than the prune
interval is unregistered by any Ruby worker that starts, job and all.
"""
from __future__ import annotations

import datetime as _dt
import logging
import re
import subprocess
from typing import Callable, Dict, List, Optional, Sequence

import redis
from gevent import monkey
from gevent.threadpool import ThreadPool

from . import codec, records
from .errors import DirtyExit, PruneDeadWorkerDirtyExit
from .keys import Keys
from .queues import QueueList
from .store import Store

log = logging.getLogger("resque_compat.heartbeat")

#: What Ruby's pruner greps ``ps -A -o pid,command`` for (WIRE §3.5 step 2).
RESQUE_PS_LINE = re.compile(r"resque:work|resque: Starting|resque-[0-9]")

_real_lock = monkey.get_original("_thread", "allocate_lock")


# -- heartbeats ---------------------------------------------------------------------------------

class HeartbeatThread:
    """Every ``interval`` seconds: Redis TIME, then HSET one field per slot id.

    It also re-registers any slot that has vanished from ``workers`` (a Redis that restarted
    empty, or an operator's ``remove_worker``), so resque-web stays truthful.
    """

    def __init__(self, make_store: Callable[[], Store], ids: Sequence[str], interval: float,
                 started: Callable[[], str]) -> None:
        self.make_store = make_store
        self.ids = list(ids)
        self.interval = interval
        self.started = started
        self.beats = 0
        #: Set once the runner has registered the ids; until then a missing id is expected.
        self.registered = False
        self._stop = _real_lock()
        self._stop.acquire()
        self._pool: Optional[ThreadPool] = None
        self._result = None

    def start(self) -> None:
        self._pool = ThreadPool(1)
        self._result = self._pool.spawn(self._run)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop and wait (cooperatively) for the thread to finish its current beat."""
        if self._pool is None:
            return
        self._stop.release()
        self._result.wait(timeout)
        self._pool.kill()
        self._pool = None

    def _run(self) -> None:
        store = self.make_store()  # created in this thread: its socket belongs to this thread
        try:
            while True:
                try:
                    beat(store, self.ids, self.started if self.registered else None)
                    self.beats += 1
                except redis.RedisError as exc:
                    log.error("heartbeat failed (%s); retrying in %.0fs", exc, self.interval)
                if self._stop.acquire(timeout=self.interval):
                    return
        finally:
            store.redis.close()


def beat(store: Store, ids: Sequence[str], started: Optional[Callable[[], str]]) -> None:
    """One heartbeat for every id, from Redis TIME; with ``started``, re-register ids missing
    from ``workers``."""
    now = store.server_time()
    store.heartbeat({wid: codec.iso8601_local(now) for wid in ids})
    if started is None:
        return
    missing = [wid for wid, ok in zip(ids, store.registered(ids)) if not ok]
    if missing:
        log.warning("re-registering %d worker id(s) missing from the workers set", len(missing))
        store.register_workers(missing, started())


# -- pruning ------------------------------------------------------------------------------------

def resque_pids() -> List[str]:
    """Pids (as strings, compared exactly as Ruby does) of processes that look like Resque."""
    out = subprocess.run(["ps", "-A", "-o", "pid,command"], capture_output=True, text=True,
                         check=False).stdout
    pids = []
    for line in out.splitlines()[1:]:
        if RESQUE_PS_LINE.search(line) and "resque-web" not in line:
            pids.append(line.split(None, 1)[0])
    return pids


def parse_heartbeat(text: str) -> Optional[float]:
    """Epoch seconds of a heartbeat value, for the formats Ruby's ``Time.parse`` reads back
    from Ruby and from us; None for anything else (we never prune on a value we cannot read)."""
    value = text.strip()
    for fmt in ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%d %H:%M:%S %z"):
        try:
            return _dt.datetime.strptime(value.replace("Z", "+0000"), fmt).timestamp()
        except ValueError:
            continue
    return None


def prune_dead_workers(
    store: Store,
    own_id: str,
    queues: QueueList,
    hostname: str,
    prune_interval: float,
    lock_ttl: float,
    now: Callable[[], float],
    pids: Callable[[], List[str]] = resque_pids,
) -> List[str]:
    """Ruby's ``Worker#prune_dead_workers``, rule for rule. Returns the ids it unregistered.

    Never touches a live Ruby worker: same host, exact pid string in ``ps``, same queue set
    (or ``*`` in ours), and heartbeat age against Redis TIME, as in WIRE §3.5.
    """
    if not store.acquire_pruning_lock(own_id, int(lock_ttl)):
        return []
    view = store.prune_view()
    expired: Dict[str, None] = {}
    for wid, value in view.heartbeats.items():
        when = parse_heartbeat(value)
        if when is None:
            log.warning("not pruning %s: its heartbeat %r is not a time Ruby could parse", wid, value)
            continue
        if view.server_time - when > prune_interval:
            expired[wid] = None
    local_pids: Optional[List[str]] = None
    same_host: List[str] = []
    own_set = set(queues.include)
    for wid in view.workers:
        if wid in expired:
            continue
        parsed = records.ParsedWorkerId.parse(wid)
        if parsed is None:
            log.warning("not pruning %s: not an id Ruby could parse", wid)
            continue
        if not queues.has_star and set(parsed.queues) != own_set:
            continue
        if parsed.host != hostname:
            continue
        if local_pids is None:
            local_pids = pids()
        if parsed.pid in local_pids:
            continue
        same_host.append(wid)
    victims = list(expired) + same_host
    if not victims:
        return []
    held = dict(zip(victims, store.worker_jobs(victims)))
    entries = []
    for wid in victims:
        record = _held_job(held.get(wid))
        if record is None:
            continue
        if wid in expired:
            payload = record.get("payload")
            job_class = payload.get("class") if isinstance(payload, dict) else None
            exc: DirtyExit = PruneDeadWorkerDirtyExit(
                f"Worker {wid} did not gracefully exit while processing {job_class or '<Unknown Job>'}")
        else:
            exc = DirtyExit("Job still being processed")
        entries.append(dirty_exit_entry(record, exc, wid, now()))
    for wid in victims:
        log.info("Pruning dead worker: %s", wid)
    store.unregister_workers(victims, entries)
    return victims


def _held_job(raw: Optional[bytes]) -> Optional[dict]:
    if not raw:
        return None
    try:
        record = codec.decode(raw)
    except codec.DecodeError:
        return None
    return record if isinstance(record, dict) and record else None


def dirty_exit_entry(record: dict, exc: DirtyExit, worker_id: str, when: float) -> str:
    """The failure Ruby's ``unregister_worker`` writes for a held job (backtrace ``[]``)."""
    payload = record.get("payload")
    return records.failure_entry(
        failed_at=codec.failed_at(when),
        payload_json=codec.encode(payload),
        exception=records.exception_name(exc),
        error=str(exc),
        backtrace=[],
        worker=worker_id,
        queue=record.get("queue"),
    )


def store_factory(url: str, namespace: str) -> Callable[[], Store]:
    """A factory for a Store on a fresh single-connection client (for the heartbeat thread)."""
    from .store import connect

    def make() -> Store:
        return Store(connect(url, max_connections=1, timeout=10.0), Keys(namespace))
    return make
