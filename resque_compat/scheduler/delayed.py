"""resque-scheduler 5.0's delayed-job keys: item bytes, release rules and Redis commands
(WIRE §7.1; fixtures 08b, 09, 09b), for :mod:`scheduler`'s client API and process.

An item ``{"class","args","queue"}`` is pushed with resque-scheduler's three commands, in its
order: RPUSH ``delayed:<ts>``, SADD ``timestamps:<item>`` ``delayed:<ts>``, ZADD
``delayed_queue_schedule`` ts ts. Releasing moves each batch of one timestamp in one Lua script
(:data:`RELEASE_SCRIPT`), so a crash at any point leaves every item either still delayed or
enqueued exactly once.
"""
from __future__ import annotations

import datetime as _dt
import logging
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

import redis

from resque_compat import registry
from resque_compat.errors import (
    JobNotRegistered,
    NoClassError,
    NoQueueError,
    ResqueError,
)
from resque_compat.wire import codec
from resque_compat.wire.keys import Keys

log = logging.getLogger("resque_compat.scheduler")

When = Union[int, float, _dt.datetime]

#: resque-scheduler's defaults: poll every 5 s (RESQUE_SCHEDULER_INTERVAL), move at most 100
#: items per transaction (DELAYED_REQUEUE_BATCH_SIZE), leader lock TTL 3 minutes.
DEFAULT_INTERVAL = 5.0
DEFAULT_BATCH_SIZE = 100
DEFAULT_LOCK_TIMEOUT = 180

#: Move one batch of one timestamp, all or nothing (Ruby: WATCH delayed:<ts>, MULTI).
#:
#: Python read the batch with LRANGE and prepared each item's target; the script first checks
#: that the list still starts with exactly those items (else returns -1: someone changed it, read
#: again), then per item: SREM its ``timestamps:`` entry, push the plain job (SADD queues + RPUSH
#: queue:<q>, or RPUSH to the failed list when it cannot be released), then LTRIM the batch off
#: and, once the list is empty, DEL it and ZREM the timestamp. Returns the number moved.
#:
#: KEYS: delayed:<ts>, delayed_queue_schedule, queues, then per item: timestamps:<item>, target.
#: ARGV: delayed member (``delayed:<ts>``, no namespace), ts, n, then per item: raw item, queue
#:       name ('' = target is the failed list), value to push.
RELEASE_SCRIPT = r"""
local n = tonumber(ARGV[3])
if n > 0 then
  local head = redis.call('LRANGE', KEYS[1], 0, n - 1)
  if #head ~= n then return -1 end
  for i = 1, n do
    if head[i] ~= ARGV[1 + 3 * i] then return -1 end
  end
  for i = 1, n do
    local a = 1 + 3 * i
    redis.call('SREM', KEYS[2 + 2 * i], ARGV[1])
    if ARGV[a + 1] ~= '' then
      redis.call('SADD', KEYS[3], ARGV[a + 1])
    end
    redis.call('RPUSH', KEYS[3 + 2 * i], ARGV[a + 2])
  end
  redis.call('LTRIM', KEYS[1], n, -1)
end
if redis.call('LLEN', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[2])
end
return n
"""

#: Ruby's ``Lock::Resilient#locked?``: still ours? then extend it.
RENEW_LOCK_SCRIPT = r"""
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

#: Ruby's ``Lock::Resilient#release``: delete only a lock we still hold.
RELEASE_LOCK_SCRIPT = r"""
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


# -- pure helpers ------------------------------------------------------------------------------

def timestamp_of(when: When) -> int:
    """Ruby's ``timestamp.to_i``: epoch seconds, truncated. A naive datetime is local time."""
    if isinstance(when, bool):
        raise TypeError("a delayed job's time must be epoch seconds or a datetime, not a bool")
    if isinstance(when, (int, float)):
        return int(when)
    if isinstance(when, _dt.datetime):
        return int(when.timestamp())
    raise TypeError(f"a delayed job's time must be epoch seconds or a datetime, not {type(when).__name__} "
                    f"{when!r} (for a date, pass datetime.combine(day, time()))")


def delayed_item(queue: str, class_name: str, args: Sequence[Any]) -> str:
    """``{"class":..,"args":[..],"queue":..}``: resque-scheduler's item, in that key order."""
    return codec.encode({"class": class_name, "args": list(args), "queue": queue})


class UnreleasableItem(ResqueError):
    """A delayed item that cannot become a job; it goes to the failed list instead of blocking
    every later timestamp (``ruby_name`` is the failure entry's ``exception``)."""

    def __init__(self, message: str, ruby_name: str) -> None:
        super().__init__(message)
        self.ruby_name = ruby_name


def released_job(raw: bytes, fallback_queue: Callable[[str], Optional[str]]) -> Tuple[str, str]:
    """(queue, ``{class,args}`` JSON) that releasing ``raw`` pushes; raises UnreleasableItem.

    Ruby's ``enqueue_from_config``: the queue is the item's ``queue`` (else the class's), the
    ``queue`` key is dropped, ``args`` becomes ``[args]`` if it is a hash and ``Array(args)``
    otherwise, and the job is re-encoded as ``Job.create`` would.
    """
    try:
        item = codec.decode(raw)
    except codec.DecodeError as exc:
        raise UnreleasableItem(f"the delayed item is not valid JSON ({exc})",
                               "Resque::Helpers::DecodeException") from None
    if not isinstance(item, dict) or not isinstance(item.get("class"), str) or not item["class"]:
        raise UnreleasableItem('the delayed item is not an object with a "class" string',
                               NoClassError.ruby_name)
    class_name = item["class"]
    args = item.get("args")
    if isinstance(args, dict):
        params: List[Any] = [args]
    else:
        params = [] if args is None else args if isinstance(args, list) else [args]
    queue = item.get("queue")
    if queue is None or queue is False:  # "" is a queue name in Ruby, so only nil/false fall back
        queue = fallback_queue(class_name)
    if not isinstance(queue, str):
        raise UnreleasableItem(
            f"no queue for {class_name}: the delayed item has no \"queue\" and no @job registers "
            "one in the scheduler (load it with -r, or enqueue with a queue)", NoQueueError.ruby_name)
    return queue, codec.encode_job(class_name, params)


def registered_queue(class_name: str) -> Optional[str]:
    try:
        return registry.lookup(class_name).queue
    except JobNotRegistered:
        return None


# -- Redis commands ----------------------------------------------------------------------------

class DelayedQueue:
    """resque-scheduler's Redis commands over one client (bytes in, bytes out) and namespace."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys
        self._release = client.register_script(RELEASE_SCRIPT)
        self._renew = client.register_script(RENEW_LOCK_SCRIPT)
        self._unlock = client.register_script(RELEASE_LOCK_SCRIPT)

    def member(self, timestamp: int) -> str:
        """``delayed:<ts>`` as stored in ``timestamps:`` sets: without the namespace (fixture 09)."""
        return self.keys.strip(self.keys.delayed(timestamp))

    def delayed_push(self, timestamp: int, item: str) -> None:
        """RPUSH, SADD, ZADD in Ruby's order; in one MULTI so no reader sees a half-pushed item."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.rpush(self.keys.delayed(timestamp), item)
        pipe.sadd(self.keys.timestamps(item), self.member(timestamp))
        pipe.zadd(self.keys.delayed_queue_schedule, {str(timestamp): timestamp})
        pipe.execute()

    def remove(self, item: str) -> int:
        """``remove_delayed_job``: LREM the exact item from every timestamp that holds it."""
        members = sorted(m.decode() for m in self.redis.smembers(self.keys.timestamps(item)))
        if not members:
            return 0
        pipe = self.redis.pipeline(transaction=True)
        for member in members:
            pipe.lrem(self.keys.delayed(int(member.rpartition(":")[2])), 0, item)
            pipe.srem(self.keys.timestamps(item), member)
        return sum(int(n) for n in pipe.execute()[::2])

    def timestamps(self, start: int = 0, count: int = -1) -> List[int]:
        stop = -1 if count < 0 else start + count - 1
        return [int(ts) for ts in self.redis.zrange(self.keys.delayed_queue_schedule, start, stop)]

    def schedule_size(self) -> int:
        return int(self.redis.zcard(self.keys.delayed_queue_schedule))

    def timestamp_size(self, timestamp: int) -> int:
        return int(self.redis.llen(self.keys.delayed(timestamp)))

    def total_size(self) -> int:
        pipe = self.redis.pipeline(transaction=False)
        for ts in self.timestamps():
            pipe.llen(self.keys.delayed(ts))
        return sum(int(n) for n in pipe.execute())

    def items(self, timestamp: int, start: int = 0, count: int = -1) -> List[bytes]:
        stop = -1 if count < 0 else start + count - 1
        return list(self.redis.lrange(self.keys.delayed(timestamp), start, stop))

    def next_due(self, now: float) -> Optional[int]:
        """The earliest timestamp at or before ``now`` (ZRANGEBYSCORE -inf now LIMIT 0 1)."""
        due = self.redis.zrangebyscore(self.keys.delayed_queue_schedule, "-inf", int(now), start=0, num=1)
        return int(due[0]) if due else None

    def release_batch(self, timestamp: int, batch_size: int,
                      failure: Callable[[bytes, UnreleasableItem], str],
                      fallback_queue: Callable[[str], Optional[str]] = registered_queue) -> int:
        """Move up to ``batch_size`` items of ``timestamp`` to their queues in one script call.

        Returns how many moved (0 once the timestamp is empty and cleaned up), or -1 when the
        list changed between our read and the script, in which case nothing moved.
        """
        raws = self.items(timestamp, 0, batch_size)
        keys: List[Any] = [self.keys.delayed(timestamp), self.keys.delayed_queue_schedule, self.keys.queues]
        args: List[Any] = [self.member(timestamp), timestamp, len(raws)]
        # The item's exact bytes name its timestamps set, whatever their encoding.
        timestamps_prefix = self.keys.timestamps("").encode("utf-8")
        for raw in raws:
            try:
                queue, value = released_job(raw, fallback_queue)
                target = self.keys.queue(queue)
            except UnreleasableItem as exc:
                log.error("cannot release a delayed item due at %d, recording a failure: %s", timestamp, exc)
                queue, value, target = "", failure(raw, exc), self.keys.failed
            keys += [timestamps_prefix + raw, target]
            args += [raw, queue, value]
        return int(self._release(keys=keys, args=args))

    # -- the leader lock (resque-scheduler's Lock::Resilient) --------------------------------
    def acquire_lock(self, key: str, value: str, ttl: int) -> bool:
        return bool(self.redis.set(key, value, nx=True, ex=ttl))

    def renew_lock(self, key: str, value: str, ttl: int) -> bool:
        return bool(int(self._renew(keys=[key], args=[value, ttl])))

    def release_lock(self, key: str, value: str) -> bool:
        return bool(int(self._unlock(keys=[key], args=[value])))

    def lock_holder(self, key: str) -> Optional[str]:
        value = self.redis.get(key)
        return value.decode("utf-8", errors="replace") if value is not None else None
