"""resque-status 0.5.0's Redis commands (``Resque::Plugins::Status::Hash``), one method each.

The plugin sends plain command sequences, never MULTI (fixtures/ruby-plugins README, pitfall 9);
we send the same commands in the same order, pipelined without a transaction, so a Ruby process
sharing the keys sees nothing it could not see from Ruby. JSON text comes from the caller.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import redis

from resque_compat.wire.keys import Keys


class StatusStore:
    """``status:<uuid>``, ``_statuses`` and ``_kill`` over one redis-py client."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys

    def create(self, uuid: str, value: str, now: int, expire_in: Optional[int]) -> None:
        """``Hash.create``: SET (+ EXPIRE), ZADD ``_statuses``, (+ ZREMRANGEBYSCORE of entries
        older than ``expire_in``), as in status_01 / status_06a."""
        pipe = self.redis.pipeline(transaction=False)
        self._set(pipe, uuid, value, expire_in)
        pipe.zadd(self.keys.statuses, {uuid: now})
        if expire_in:
            pipe.zremrangebyscore(self.keys.statuses, 0, now - expire_in)
        pipe.execute()

    def set(self, uuid: str, value: str, expire_in: Optional[int]) -> None:
        """``Hash.set``: SET, then EXPIRE when ``expire_in`` is set (re-armed on every update)."""
        pipe = self.redis.pipeline(transaction=False)
        self._set(pipe, uuid, value, expire_in)
        pipe.execute()

    def _set(self, pipe: "redis.client.Pipeline", uuid: str, value: str, expire_in: Optional[int]) -> None:
        pipe.set(self.keys.status(uuid), value)
        if expire_in:
            pipe.expire(self.keys.status(uuid), expire_in)

    def get(self, uuid: str) -> Optional[bytes]:
        """``Hash.get``'s GET: the raw JSON, or None."""
        return self.redis.get(self.keys.status(uuid))

    def should_kill_and_get(self, uuid: str) -> Tuple[bool, Optional[bytes]]:
        """``tick``'s ``should_kill?`` (SISMEMBER ``_kill``) and the GET of the status it then
        merges into, in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.sismember(self.keys.status_kill, uuid)
        pipe.get(self.keys.status(uuid))
        killed, raw = pipe.execute()
        return bool(killed), raw

    def kill(self, uuids: Sequence[str]) -> None:
        """``Hash.kill``: SADD ``_kill``; the job stops at its next ``at``/``tick``."""
        if uuids:
            self.redis.sadd(self.keys.status_kill, *uuids)

    def killed(self, uuid: str) -> None:
        """``Hash.killed``: SREM ``_kill`` once the job has stopped."""
        self.redis.srem(self.keys.status_kill, uuid)

    def kill_ids(self) -> List[str]:
        return sorted(m.decode("utf-8") for m in self.redis.smembers(self.keys.status_kill))

    def remove(self, uuid: str) -> None:
        """``Hash.remove``: DEL ``status:<uuid>``, ZREM ``_statuses``."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.delete(self.keys.status(uuid))
        pipe.zrem(self.keys.statuses, uuid)
        pipe.execute()

    def status_ids(self, start: int = 0, end: int = -1) -> List[str]:
        """``Hash.status_ids``: newest first (ZREVRANGE ``_statuses``)."""
        return [m.decode("utf-8") for m in self.redis.zrevrange(self.keys.statuses, start, end)]
