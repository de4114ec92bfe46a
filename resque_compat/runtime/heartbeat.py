"""Heartbeats from a real OS thread (WIRE §3.6); Ruby's pruning rules are in pruning.py.

The heartbeat runs in a native thread with its own Redis connection so that a job that hogs the
gevent hub (a CPU loop) cannot starve it: a worker whose heartbeat is older than the prune
interval is unregistered by any Ruby worker that starts, job and all.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Optional, Sequence

import gevent
import redis
from gevent import monkey
from gevent.threadpool import ThreadPool

from resque_compat.store.store import Store
from resque_compat.wire import codec
from resque_compat.wire.keys import Keys

log = logging.getLogger("resque_compat.heartbeat")

_real_lock = monkey.get_original("_thread", "allocate_lock")


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
        self._result: Any = None  # the AsyncResult of the running thread

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
                        missing = beat(store, self.ids, self.started if reregister else None)
                    self.beats += 1
                    if missing:
                        log.warning(PRUNED_WHILE_ALIVE, missing, self.interval)
                except redis.RedisError as exc:
                    log.error("heartbeat failed (%s); retrying in %.0fs", exc, self.interval)
                if self._stop.acquire(timeout=self.interval):
                    return
        finally:
            store.redis.close()
            # This thread got its own gevent hub when its socket first waited; destroy it here,
            # in its own thread: a hub left for interpreter exit to tear down segfaults.
            gevent.get_hub().destroy(destroy_loop=True)


#: Issue 14: beside Ruby workers whose Resque.prune_interval is shorter than our heartbeat
#: interval, every Ruby start-up prunes our live ids by heartbeat age (with a
#: PruneDeadWorkerDirtyExit entry for each running job), and they stay out of resque-web until
#: our next beat. Only the operator can line the two up: say how.
PRUNED_WHILE_ALIVE = (
    "re-registered %d worker id(s) of this live process that were removed from the workers set: "
    "a Ruby worker whose Resque.prune_interval is shorter than our RESQUE_HEARTBEAT_INTERVAL "
    "(%gs) prunes them by heartbeat age (or an operator removed them); set "
    "RESQUE_HEARTBEAT_INTERVAL to the Ruby apps' Resque.heartbeat_interval")


def beat(store: Store, ids: Sequence[str], started: Optional[Callable[[], str]]) -> int:
    """One heartbeat for every id, from Redis TIME; with ``started``, re-register ids missing
    from ``workers``. Returns how many it re-registered."""
    now = store.server_time()
    store.heartbeat({wid: codec.iso8601_local(now) for wid in ids})
    if started is None:
        return 0
    missing = [wid for wid, ok in zip(ids, store.registered(ids)) if not ok]
    if missing:
        store.register_workers(missing, started())
    return len(missing)


def store_factory(url: str, namespace: str) -> Callable[[], Store]:
    """A factory for a Store on a fresh single-connection client (for the heartbeat thread)."""
    from resque_compat.store.store import connect

    def make() -> Store:
        return Store(connect(url, max_connections=1, timeout=10.0), Keys(namespace))
    return make
