"""The Redis commands of the Ruby plugins whose state the worker shares with Ruby: resque-loner
and resque-lock-timeout, command for command as the gems send them (fixtures/ruby-plugins/).

Like the gems, these are plain command sequences, not scripts: Ruby workers race on the same
keys with the same commands, so a stronger guarantee here would be a false one (README pitfall 9).
"""
from __future__ import annotations

from typing import Optional, Union

import redis

Lock = Union[int, bool]


# -- resque-loner --------------------------------------------------------------------------------

def push_unique(client: redis.Redis, queues_key: str, queue_key: str, queue: str, item: str,
                loner_key: str, ttl: Optional[int]) -> bool:
    """``Job.create`` with resque-loner: ``GET`` the loner key and refuse when it is ``"1"``;
    else ``MULTI; SADD queues; RPUSH; SET key 1; [EXPIRE key ttl]; EXEC`` (loner_01)."""
    if client.get(loner_key) in (b"1", "1"):
        return False
    pipe = client.pipeline(transaction=True)
    pipe.sadd(queues_key, queue)
    pipe.rpush(queue_key, item)
    pipe.set(loner_key, 1)
    if ttl is not None:
        pipe.expire(loner_key, ttl)
    pipe.execute()
    return True


def unqueue_loner(client: redis.Redis, loner_key: str, keep_for: int) -> None:
    """``mark_loner_as_unqueued``: ``DEL``, or ``EXPIRE keep_for`` when the class sets
    ``@loner_lock_after_execution_period`` (loner_02a, loner_03b)."""
    if keep_for:
        client.expire(loner_key, keep_for)
    else:
        client.delete(loner_key)


def forget_loners(client: redis.Redis, pattern: str) -> int:
    """``cleanup_loners`` after ``Resque.remove_queue``: delete every loner key of the queue.
    The gem uses ``KEYS``; SCAN gives the same result without blocking Redis."""
    removed = 0
    batch = []
    for key in client.scan_iter(match=pattern, count=500):
        batch.append(key)
        if len(batch) == 500:
            removed += int(client.delete(*batch))
            batch = []
    if batch:
        removed += int(client.delete(*batch))
    return removed


# -- resque-lock-timeout -------------------------------------------------------------------------

def acquire_lock(client: redis.Redis, key: str, timeout: int, now: int) -> Lock:
    """``acquire_lock_impl!``: the expiry epoch (or True without a timeout) when taken, False
    when another holds it. Without a timeout: ``SETNX key true``. With one: ``SETNX key
    <now+timeout>``; if held, ``GET`` it, and take it over with ``GETSET`` if it has expired,
    else ``SETNX`` once more (lock_01, lock_05)."""
    if timeout <= 0:
        return bool(client.setnx(key, "true"))
    until = now + timeout
    if client.setnx(key, until):
        return until
    current = client.get(key)
    if current is not None and _to_i(current) < now:
        previous = client.getset(key, until)
        return until if previous is None or _to_i(previous) < now else False
    return until if client.setnx(key, until) else False


def lock_held(client: redis.Redis, key: str, timeout: int, now: int) -> bool:
    """``inspect_lock``: with a timeout, the stored expiry is in the future; else the key exists."""
    value = client.get(key)
    if timeout > 0:
        return _to_i(value) > now
    return value is not None


def release(client: redis.Redis, key: str) -> None:
    client.delete(key)


def _to_i(value: Optional[Union[bytes, str]]) -> int:
    """Ruby's ``String#to_i`` (nil.to_i = 0): the leading integer, 0 if none."""
    if value is None:
        return 0
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    digits = ""
    for i, ch in enumerate(text.lstrip()):
        if ch.isdigit() or (i == 0 and ch in "+-"):
            digits += ch
        else:
            break
    try:
        return int(digits)
    except ValueError:
        return 0
