"""Read-only walks of a whole Resque keyspace for ``resque-py doctor``, plus its few repairs.

Everything iterates with SCAN/SSCAN/HSCAN (never KEYS or SMEMBERS on something that may be
huge) and fetches values in batches, so memory stays bounded by :data:`BATCH` however many
keys the namespace holds.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Dict, Iterator, List, Optional, Sequence, Tuple

from resque_compat.store.store import server_seconds
from resque_compat.wire.keys import Keys

if TYPE_CHECKING:
    import redis

#: Keys asked per SCAN step and values fetched per MGET/pipeline.
BATCH = 1000

#: Delete the scheduler lock only if it still holds the dead holder's value.
_DELETE_IF_EQUAL = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _s(value: object) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _b(value: object) -> Optional[bytes]:
    """Values as bytes, also from a client made with ``decode_responses=True``."""
    if isinstance(value, str):
        return value.encode("utf-8", errors="surrogateescape")
    return value if isinstance(value, bytes) else None


class Survey:
    """The doctor's Redis reads and repairs for one namespace."""

    def __init__(self, client: "redis.Redis", keys: Keys) -> None:
        self.redis = client
        self.keys = keys

    # -- walking ------------------------------------------------------------------------------
    def scan_keys(self) -> Iterator[str]:
        """Every key of the namespace, BATCH per SCAN step."""
        for key in self.redis.scan_iter(match=self.keys.pattern("*"), count=BATCH):
            yield _s(key)

    def workers(self) -> Iterator[str]:
        for member in self.redis.sscan_iter(self.keys.workers, count=BATCH):
            yield _s(member)

    def queue_names(self) -> Iterator[str]:
        for member in self.redis.sscan_iter(self.keys.queues, count=BATCH):
            yield _s(member)

    def heartbeats(self) -> Iterator[Tuple[str, str]]:
        for field, value in self.redis.hscan_iter(self.keys.heartbeats, count=BATCH):
            yield _s(field), _s(value)

    def values(self, keys: Sequence[str]) -> List[Tuple[str, Optional[bytes]]]:
        """(type, value) of each key; the value only for a string ("none": deleted meanwhile)."""
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.type(key)
            pipe.get(key)
        replies = pipe.execute(raise_on_error=False)
        return [(_s(kind), _b(value))
                for kind, value in zip(replies[::2], replies[1::2])]

    def is_worker(self, wid: str) -> bool:
        return bool(self.redis.sismember(self.keys.workers, wid))

    def are_workers(self, ids: Sequence[str]) -> List[bool]:
        pipe = self.redis.pipeline(transaction=False)
        for wid in ids:
            pipe.sismember(self.keys.workers, wid)
        return [bool(x) for x in pipe.execute()]

    def heartbeat_of(self, wid: str) -> Optional[str]:
        value = self.redis.hget(self.keys.heartbeats, wid)
        return None if value is None else _s(value)

    def lengths(self, keys: Sequence[str]) -> List[int]:
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.llen(key)
        return [n if isinstance(n, int) else 0 for n in pipe.execute(raise_on_error=False)]

    def heads(self, keys: Sequence[str]) -> List[Optional[bytes]]:
        """The first item of each list (the next job a worker pops)."""
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.lindex(key, 0)
        return [_b(v) for v in pipe.execute(raise_on_error=False)]

    def get_with_ttl(self, key: str) -> Tuple[Optional[str], int]:
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(key)
        pipe.ttl(key)
        value, ttl = pipe.execute()
        return (None if value is None else _s(value)), int(ttl)

    def server_time(self) -> float:
        return server_seconds(self.redis.time())

    def config(self, *names: str) -> Optional[Dict[str, str]]:
        """CONFIG GET of each name; None where the server refuses CONFIG (managed Redis, ACL)."""
        import redis

        out: Dict[str, str] = {}
        try:
            for name in names:
                out.update({_s(k): _s(v) for k, v in self.redis.config_get(name).items()})
        except redis.ResponseError:
            return None
        return out

    # -- repairs ------------------------------------------------------------------------------
    def delete(self, keys: Sequence[str]) -> int:
        return int(self.redis.delete(*keys)) if keys else 0

    def forget_heartbeats(self, fields: Sequence[str]) -> int:
        return int(self.redis.hdel(self.keys.heartbeats, *fields)) if fields else 0

    def record_and_delete(self, key: str, expected: bytes, failure_list: str,
                          entry: Optional[str], failed_queue_member: str = "") -> bool:
        """DEL a ``worker:<id>`` key, first saving what it held as a failure ``entry`` (None:
        it held no job), only if it still holds ``expected`` (a worker may have finished
        meanwhile). One MULTI under WATCH."""
        import redis

        with self.redis.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(key)
                if _b(pipe.get(key)) != expected:
                    return False
                pipe.multi()
                if entry is not None:
                    pipe.rpush(failure_list, entry)
                if entry is not None and failed_queue_member:
                    pipe.sadd(self.keys.failed_queues, failed_queue_member)
                pipe.delete(key)
                pipe.execute()
                return True
            except redis.WatchError:
                return False

    def delete_if_equal(self, key: str, value: str) -> bool:
        return bool(self.redis.eval(_DELETE_IF_EQUAL, 1, key, value))
