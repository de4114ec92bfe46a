"""Every Redis command the worker and the client send: one method per Resque event.

Methods are named after Ruby's ``DataStore`` verbs so the Ruby team can map them line for line
(WIRE §6.7). Each is one round trip (a pipeline or a script) unless its docstring says otherwise.
Key names come from :mod:`keys`; JSON text comes from :mod:`codec`/:mod:`records`: this module
never builds JSON itself except by concatenating strings those modules produced.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import redis

from resque_compat.store.dead import UNREGISTER_DEAD_SCRIPT, DeadWorker, unregister_dead_call
from resque_compat.store.scripts import (  # noqa: F401  Done, Reserved: callers import them from here
    RESERVE_SCRIPT,
    Done,
    Reserved,
    read_reserve_reply,
    reserve_call,
)
from resque_compat.wire.codec import text
from resque_compat.wire.keys import Keys


@dataclass(frozen=True)
class PruneView:
    """What Ruby's pruner reads in one go: registered ids, heartbeats and the server time."""

    workers: List[str]
    heartbeats: Dict[str, str]
    server_time: float


def server_seconds(reply: Sequence[int]) -> float:
    """Redis ``TIME`` (seconds, microseconds) as epoch seconds: the clock heartbeats are aged by."""
    secs, micros = reply
    return secs + micros / 1e6


class Store:
    """Resque's Redis commands over one redis-py client (``decode_responses=False``)."""

    def __init__(self, client: redis.Redis, keys: Keys, failure_backend: str = "redis") -> None:
        self.redis = client
        self.keys = keys
        self.failure_backend = failure_backend
        self._reserve = client.register_script(RESERVE_SCRIPT)
        self._unregister_dead = client.register_script(UNREGISTER_DEAD_SCRIPT)

    # -- client side ---------------------------------------------------------------------------
    def push(self, queue: str, item: str) -> None:
        """``Resque.push``: SADD queues + RPUSH queue:<q>, one pipeline (WIRE §2.3)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.sadd(self.keys.queues, queue)
        pipe.rpush(self.keys.queue(queue), item)
        pipe.execute()

    def remove_items(self, queue: str, item: str) -> int:
        """``Job.destroy`` with args: LREM of the exact bytes (WIRE §2.4)."""
        return int(self.redis.lrem(self.keys.queue(queue), 0, item))

    def remove_raw_items(self, queue: str, raws: Iterable[bytes]) -> int:
        pipe = self.redis.pipeline(transaction=False)
        for raw in raws:
            pipe.lrem(self.keys.queue(queue), 0, raw)
        return sum(int(n) for n in pipe.execute())

    def queue_items(self, queue: str, start: int = 0, count: int = -1) -> List[bytes]:
        stop = -1 if count < 0 else start + count - 1
        return list(self.redis.lrange(self.keys.queue(queue), start, stop))

    def queue_size(self, queue: str) -> int:
        return int(self.redis.llen(self.keys.queue(queue)))

    def queue_names(self) -> List[str]:
        return sorted(text(q) for q in self.redis.smembers(self.keys.queues))

    def remove_queue(self, queue: str) -> None:
        """``Resque.remove_queue``: SREM queues + DEL queue:<q>."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.srem(self.keys.queues, queue)
        pipe.delete(self.keys.queue(queue))
        pipe.execute()

    def clear_queue(self, queue: str) -> int:
        """Drop every job of ``queue`` but keep its name in ``queues`` (LLEN + DEL, one MULTI).
        Returns how many jobs were dropped."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.llen(self.keys.queue(queue))
        pipe.delete(self.keys.queue(queue))
        return int(pipe.execute()[0])

    def info(self) -> Tuple[List[str], List[int], int, int, List[str], int]:
        """Raw numbers for ``Resque.info``: queues, their sizes, processed, failed, workers,
        working count. Two round trips (the sizes depend on the queue names)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.smembers(self.keys.queues)
        pipe.get(self.keys.processed)
        pipe.llen(self.keys.failed)
        pipe.smembers(self.keys.workers)
        queues_raw, processed, failed, workers_raw = pipe.execute()
        queues = sorted(text(q) for q in queues_raw)
        workers = sorted(text(w) for w in workers_raw)
        pipe = self.redis.pipeline(transaction=False)
        for q in queues:
            pipe.llen(self.keys.queue(q))
        if workers:
            pipe.mget([self.keys.worker(w) for w in workers])
        replies = pipe.execute()
        sizes = [int(n) for n in replies[: len(queues)]]
        jobs = replies[len(queues)] if workers else []
        working = sum(1 for j in jobs if j)
        return queues, sizes, _int(processed), int(failed), workers, working

    def worker_ids(self) -> List[str]:
        return sorted(text(w) for w in self.redis.smembers(self.keys.workers))

    def worker_jobs(self, ids: Sequence[str]) -> List[Optional[bytes]]:
        """MGET worker:<id> for each id (resque-web's Working page read)."""
        if not ids:
            return []
        return list(self.redis.mget([self.keys.worker(i) for i in ids]))

    def worker_details(self, ids: Sequence[str]) -> Tuple[List[Optional[bytes]], List[Optional[bytes]],
                                                          Dict[str, str], float]:
        """resque-web's Workers page read, one round trip: each id's ``worker:<id>`` and
        ``worker:<id>:started``, every heartbeat, and Redis TIME to age them by."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(self.keys.heartbeats)
        pipe.time()
        if ids:  # MGET refuses an empty key list
            pipe.mget([self.keys.worker(i) for i in ids])
            pipe.mget([self.keys.worker_started(i) for i in ids])
        beats, now, *per_id = pipe.execute()
        jobs, started = per_id if ids else ([], [])
        return (list(jobs), list(started), {text(k): text(v) for k, v in beats.items()},
                server_seconds(now))

    def queue_sizes_and_heartbeat(self, queues: Sequence[str], worker_id: str
                                  ) -> Tuple[List[int], Optional[str], float]:
        """The metrics poll, one round trip: LLEN of each queue, ``worker_id``'s heartbeat
        value and Redis TIME (to age it as Ruby's pruner does)."""
        pipe = self.redis.pipeline(transaction=False)
        for q in queues:
            pipe.llen(self.keys.queue(q))
        pipe.hget(self.keys.heartbeats, worker_id)
        pipe.time()
        *sizes, beat, now = pipe.execute()
        return [int(n) for n in sizes], None if beat is None else text(beat), server_seconds(now)

    def set_pause_all(self, paused: bool) -> None:
        """SET ``pause-all-workers`` to ``true`` (every Ruby and Python worker stops taking jobs
        before its next reserve, WIRE §1.2), or DEL it."""
        if paused:
            self.redis.set(self.keys.pause_all_workers, "true")
        else:
            self.redis.delete(self.keys.pause_all_workers)

    def set_queue_paused(self, queue: str, paused: bool) -> None:
        """resque-pause's ``pause(q)``: SET ``pause:queue:<q>`` ``true`` (what redis-rb 4.8
        writes for Ruby's ``true``, pause_01), or its ``unpause(q)``: DEL. Ruby workers with the
        plugin and our workers stop taking jobs from that queue."""
        if paused:
            self.redis.set(self.keys.pause_queue(queue), "true")
        else:
            self.redis.delete(self.keys.pause_queue(queue))

    def paused_queues(self, queues: Sequence[str]) -> List[bool]:
        """Which of ``queues`` resque-pause marks paused (its own key or ``pause:all``)."""
        if not queues:
            return []
        values = self.redis.mget([self.keys.pause_all] + [self.keys.pause_queue(q) for q in queues])
        return [values[0] is not None or v is not None for v in values[1:]]

    def push_back(self, queue: str, item: str) -> None:
        """resque-pause's push-back: LPUSH to the head of ``queue:<q>``, without SADD ``queues``
        (pause_05, pause_06: the queue may be missing from ``queues``, as Ruby leaves it)."""
        self.redis.lpush(self.keys.queue(queue), item)

    def failures(self, start: int = 0, count: int = 1) -> List[bytes]:
        stop = -1 if count < 0 else start + count - 1
        return list(self.redis.lrange(self.keys.failed, start, stop))

    def failure_count(self) -> int:
        return int(self.redis.llen(self.keys.failed))

    def stat(self, name: str, worker_id: Optional[str] = None) -> int:
        key = self.keys.stat(name) if worker_id is None else self.keys.worker_stat(name, worker_id)
        return _int(self.redis.get(key))

    # -- worker life cycle ---------------------------------------------------------------------
    def clear_heartbeats(self, ids: Sequence[str]) -> None:
        """HDEL our heartbeat fields before pruning and registering, as Ruby does (§6.7)."""
        if ids:
            self.redis.hdel(self.keys.heartbeats, *ids)

    def acquire_pruning_lock(self, worker_id: str, ttl: int) -> bool:
        """``SET pruning_dead_workers_in_progress <id> NX EX <ttl>`` (WIRE §3.5 step 1)."""
        return bool(self.redis.set(self.keys.pruning_lock, worker_id, nx=True, ex=max(1, int(ttl))))

    def prune_view(self) -> PruneView:
        pipe = self.redis.pipeline(transaction=False)
        pipe.smembers(self.keys.workers)
        pipe.hgetall(self.keys.heartbeats)
        pipe.time()
        workers, beats, now = pipe.execute()
        return PruneView(
            workers=sorted(text(w) for w in workers),
            heartbeats={text(k): text(v) for k, v in beats.items()},
            server_time=server_seconds(now),
        )

    def register_workers(self, ids: Sequence[str], started: str, beat: Optional[str] = None) -> None:
        """``register_worker`` for each slot: SADD workers + SET worker:<id>:started (§6.7).

        With ``beat`` (slots added while running, by autoscaling), Ruby's ``heartbeat!`` comes
        first, in one MULTI, so no reader sees a registered slot without its heartbeat.
        """
        pipe = self.redis.pipeline(transaction=beat is not None)
        if beat is not None:
            pipe.hset(self.keys.heartbeats, mapping={wid: beat for wid in ids})
        for wid in ids:
            pipe.sadd(self.keys.workers, wid)
            pipe.set(self.keys.worker_started(wid), started)
        pipe.execute()

    def server_time(self) -> float:
        return server_seconds(self.redis.time())

    def registered(self, ids: Sequence[str]) -> List[bool]:
        pipe = self.redis.pipeline(transaction=False)
        for wid in ids:
            pipe.sismember(self.keys.workers, wid)
        return [bool(x) for x in pipe.execute()]

    def heartbeat(self, beats: Mapping[str, str]) -> None:
        """``HSET workers:heartbeat`` for every slot at once."""
        if beats:
            self.redis.hset(self.keys.heartbeats, mapping=dict(beats))

    def finish_and_reserve(
        self,
        done: Sequence[Done],
        free_ids: Sequence[str],
        queues: Sequence[str],
        record_prefixes: Sequence[str],
    ) -> Tuple[bool, List[Reserved]]:
        """``report_failed_job`` + ``done_working`` for ended slots, then ``reserve`` for
        waiting ones: one script call (:data:`RESERVE_SCRIPT`).

        Returns (paused, jobs); ``paused`` means ``pause-all-workers`` is set and nothing was
        taken.
        """
        keys, args = reserve_call(self.keys, self.failure_backend, done, free_ids, queues,
                                  record_prefixes)
        return read_reserve_reply(self._reserve(keys=keys, args=args), queues, record_prefixes)

    def unregister_workers(self, ids: Sequence[str], failures: Sequence[str] = (),
                           failure_queues: Sequence[Optional[str]] = ()) -> None:
        """``unregister_worker`` of live ids (shutdown, remove-worker, the doctor): any DirtyExit
        entries, then Ruby's six commands per id (§3.5). Dead ids go through
        :meth:`unregister_dead_workers`, which also requeues (DIRTY_EXIT=requeue).

        ``failure_queues[i]`` is the job queue of ``failures[i]``: Ruby's ``job.fail`` goes
        through the failure backend, so with redis_multi_queue a DirtyExit lands in
        ``<queue>_failed`` like any other failure (fixture 10).
        One MULTI, so a held job ends up failed exactly once, never lost.
        """
        pipe = self.redis.pipeline(transaction=True)
        for i, entry in enumerate(failures):
            queue = failure_queues[i] if i < len(failure_queues) else None
            pipe.rpush(self.keys.failure_list(queue, self.failure_backend), entry)
            member = self.keys.failed_queues_member(queue, self.failure_backend)
            if member is not None:
                pipe.sadd(self.keys.failed_queues, member)
        for wid in ids:
            pipe.srem(self.keys.workers, wid)
            pipe.delete(self.keys.worker(wid))
            pipe.delete(self.keys.worker_started(wid))
            pipe.hdel(self.keys.heartbeats, wid)
            pipe.delete(self.keys.worker_processed(wid))
            pipe.delete(self.keys.worker_failed(wid))
        pipe.execute()

    def unregister_dead_workers(self, dead: Sequence[DeadWorker], cap: int = 0,
                                window: float = 1.0) -> List[int]:
        """``unregister_worker`` for workers known dead (pruning, a pool child that died): each
        held job failed or requeued (counted against ``cap`` crashes per ``window``) only if
        ``worker:<id>`` still holds what was read, then Ruby's six commands per id; one atomic
        script (store/dead.py). Returns each id's outcome (``dead.FAILED``...)."""
        if not dead:
            return []
        keys, args = unregister_dead_call(self.keys, self.failure_backend, dead, cap, window)
        return [int(x) for x in self._unregister_dead(keys=keys, args=args)]


_LEADING_INT = re.compile(rb"^\s*([+-]?\d+)")


def _int(value: Optional[bytes]) -> int:
    """Ruby's ``String#to_i``: the leading integer, 0 if none (WIRE §5.2, tolerated)."""
    if value is None:
        return 0
    match = _LEADING_INT.match(value if isinstance(value, bytes) else str(value).encode())
    return int(match.group(1)) if match else 0


# Clients for every URL form (redis://, rediss://, ACL user:password, redis+sentinel://) over a
# bounded, blocking pool live in connection.py; re-exported here, where callers import it from.
from resque_compat.store.connection import connect  # noqa: E402,F401
