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
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import gevent
import redis
from gevent import monkey
from gevent.threadpool import ThreadPool

from resque_compat.errors import DirtyExit, PruneDeadWorkerDirtyExit
from resque_compat.store.store import Store
from resque_compat.wire import codec, records
from resque_compat.wire.keys import Keys
from resque_compat.wire.queues import QueueList

log = logging.getLogger("resque_compat.heartbeat")

#: What Ruby's pruner greps ``ps -A -o pid,command`` for (WIRE §3.5 step 2):
#: ``grep -E "[r]esque:work|[r]esque:\sStarting|[r]esque-[0-9]" | grep -v "resque-web"``.
RESQUE_PS_LINE = re.compile(r"resque:work|resque:\sStarting|resque-[0-9]")

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
        #: Held for a whole beat, so :meth:`replace_ids` can wait out a beat of the old ids.
        self._beat_lock = _real_lock()
        self._stopping = False
        self._pool: Optional[ThreadPool] = None
        self._result = None

    def start(self) -> None:
        self._pool = ThreadPool(1)
        self._result = self._pool.spawn(self._run)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop and wait (cooperatively) for the thread to finish its current beat."""
        if self._pool is None:
            return
        self._stopping = True  # a beat still running must not re-register ids being unregistered
        self._stop.release()
        self._result.wait(timeout)
        self._pool.kill()
        self._pool = None

    def replace_ids(self, ids: Sequence[str]) -> None:
        """Beat for ``ids`` from now on (autoscaling). Returns once no beat of the old list is
        running, so an id dropped here is never written or re-registered after its caller
        unregisters it. Called from the hub's thread: waits cooperatively, never blocks it."""
        while not self._beat_lock.acquire(False):
            gevent.sleep(0.001)
        try:
            self.ids = list(ids)
        finally:
            self._beat_lock.release()

    def _run(self) -> None:
        store = self.make_store()  # created in this thread: its socket belongs to this thread
        try:
            while True:
                try:
                    with self._beat_lock:
                        reregister = self.registered and not self._stopping
                        beat(store, self.ids, self.started if reregister else None)
                    self.beats += 1
                except redis.RedisError as exc:
                    log.error("heartbeat failed (%s); retrying in %.0fs", exc, self.interval)
                if self._stop.acquire(timeout=self.interval):
                    return
        finally:
            store.redis.close()
            # This thread got its own gevent hub when its socket first waited; destroy it here,
            # in its own thread: a hub left for interpreter exit to tear down segfaults.
            gevent.get_hub().destroy(destroy_loop=True)


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
    # Any process may have argv bytes that are not UTF-8: never let one crash our start-up.
    out = subprocess.run(["ps", "-A", "-o", "pid,command"], capture_output=True, text=True,
                         errors="replace", check=False).stdout
    pids = []
    for line in out.splitlines()[1:]:
        if RESQUE_PS_LINE.search(line) and "resque-web" not in line:
            pids.append(line.split(None, 1)[0])
    return pids


#: The heartbeat shapes Ruby's ``Time.parse`` reads (WIRE §3.6): ``T`` or a space between date
#: and time, optional fraction, and a zone that is ``Z``/``UTC``/``GMT``, a numeric offset with or
#: without a colon (``+05:30``, ``+0530``, ``+05``), or absent (then the reader's local time).
_HEARTBEAT = re.compile(
    r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:T|\s+)(\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:[.,](\d+))?)?"
    r"\s*(?:(?P<utc>Z|UTC|GMT)|(?P<sign>[+-])(?P<oh>\d{2})(?::?(?P<om>\d{2}))?)?$",
    re.IGNORECASE,
)


def parse_heartbeat(text: str) -> Optional[float]:
    """Epoch seconds of a heartbeat value, for the formats Ruby's ``Time.parse`` reads back
    from Ruby and from us; None for anything else (we never prune on a value we cannot read)."""
    m = _HEARTBEAT.match(text.strip())
    if m is None:
        return None
    year, month, day, hour, minute = (int(g) for g in m.groups()[:5])
    second = int(m.group(6) or 0)
    micro = int((m.group(7) or "0")[:6].ljust(6, "0"))
    if m.group("utc"):
        tz: Optional[_dt.tzinfo] = _dt.timezone.utc
    elif m.group("sign"):
        minutes = int(m.group("oh")) * 60 + int(m.group("om") or 0)
        tz = _dt.timezone(_dt.timedelta(minutes=-minutes if m.group("sign") == "-" else minutes))
    else:
        tz = None  # Ruby reads a zone-less time as the reader's local time; so does timestamp()
    try:
        return _dt.datetime(year, month, day, hour, minute, second, micro, tzinfo=tz).timestamp()
    except (ValueError, OverflowError):
        return None


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


def prune_dead_workers(
    store: Store,
    own_id: str,
    queues: QueueList,
    hostname: str,
    prune_interval: float,
    lock_ttl: float,
    now: Callable[[], float],
    pids: Callable[[], List[str]] = resque_pids,
    dirty_exit: str = "fail",
) -> List[str]:
    """Ruby's ``Worker#prune_dead_workers``, rule for rule. Returns the ids it unregistered.

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
        when = parse_heartbeat(value)
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
    if not victims:
        return []
    held = dict(zip(victims, store.worker_jobs(victims)))
    entries = []
    entry_queues: List[Optional[str]] = []  # each entry's job queue, for redis_multi_queue
    requeues: List[Tuple[str, bytes]] = []
    for wid in victims:
        record = held_job(held.get(wid))
        if record is None:
            continue
        if dirty_exit == "requeue" and isinstance(record.get("payload"), dict) \
                and isinstance(record.get("queue"), str):
            # DIRTY_EXIT=requeue: back to the head of its queue, exact bytes (at-least-once).
            item = records.payload_bytes_from_record(held[wid], record) or \
                codec.encode(record["payload"]).encode("utf-8")
            requeues.append((record["queue"], item))
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
        entries.append(dirty_exit_entry(record, exc, wid, now()))
        entry_queues.append(record.get("queue"))
    for wid in victims:
        log.info("Pruning dead worker: %s", wid)
    store.unregister_workers(victims, entries, requeues, entry_queues)
    return victims


def unregister_workers(store: Store, ids: Sequence[str], now: Callable[[], float]) -> List[dict]:
    """Ruby's ``unregister_worker`` for live ids (shutdown, ``remove-worker``): a
    ``Resque::DirtyExit "Job still being processed"`` entry for each job still held, then the
    six-key unregister, in one MULTI. Returns the held job records."""
    entries, queues, held = [], [], []
    for wid, raw in zip(ids, store.worker_jobs(ids)):
        record = held_job(raw)
        if record is not None:
            held.append(record)
            entries.append(dirty_exit_entry(record, DirtyExit("Job still being processed"), wid, now()))
            queues.append(record.get("queue"))
    store.unregister_workers(ids, entries, failure_queues=queues)
    return held


def held_job(raw: Optional[bytes]) -> Optional[dict]:
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
    from resque_compat.store.store import connect

    def make() -> Store:
        return Store(connect(url, max_connections=1, timeout=10.0), Keys(namespace))
    return make
