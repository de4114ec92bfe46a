"""A Ruby resque-scheduler 5.0 leader, emulated by the commands it sends, for the handover tests
(CI has no Ruby). tests/test_ruby_scheduler_interop.py checks each helper against the commands
the real Ruby scheduler sent (fixtures/ruby-interop/scheduler.json, from MONITOR)."""
from __future__ import annotations

import datetime as dt

from resque_compat.wire import codec
from resque_compat.wire.keys import Keys

K = Keys()
LOCK = K.scheduler_master_lock()
RUBY = "localhost:12837"  # Lock::Base#value: hostname:pid
UTC = dt.timezone.utc

#: Lock::Resilient's two scripts as it loads them (its heredocs with the timeout interpolated).
ACQUIRE = ("if redis.call('SETNX', KEYS[1], ARGV[1]) == 1\nthen\n  redis.call('EXPIRE', KEYS[1], {timeout})\n"
           "  return 1\nelse\n  return 0\nend\n")
LOCKED = ("if redis.call('GET', KEYS[1]) == ARGV[1]\nthen\n  redis.call('EXPIRE', KEYS[1], {timeout})\n\n"
          "  if redis.call('GET', KEYS[1]) == ARGV[1]\n  then\n    return 1\n  end\nend\n\nreturn 0\n")


def ruby_leads(r, timeout: int = 180) -> bool:
    """``master_lock.acquire!``: SCRIPT LOAD, then EVALSHA (SETNX, and EXPIRE if it took it)."""
    sha = r.script_load(ACQUIRE.format(timeout=timeout))
    return r.evalsha(sha, 1, LOCK, RUBY) == 1


def ruby_quits(r, timeout: int = 180) -> None:
    """SIGQUIT, ``release_master_lock``: ``locked?`` (EVALSHA: GET, EXPIRE, GET), then DEL."""
    sha = r.script_load(LOCKED.format(timeout=timeout))
    if r.evalsha(sha, 1, LOCK, RUBY) == 1:
        r.delete(LOCK)


def ruby_runs(r, name: str, at: str, zone_suffix: str = "+0000", queue: str = "minutely") -> None:
    """One recurring run (``enqueue_recurring``): SADD queues + RPUSH (``Resque::Job.create``
    of a class it cannot load), then HSET last_enqueued_at ``Time.now.to_s`` (its own zone)."""
    r.sadd(K.queues, queue)
    r.rpush(K.queue(queue), codec.encode_job("ScheduledJob", []))
    local = dt.datetime.fromisoformat(at).replace(tzinfo=UTC)
    if zone_suffix == "+0100":
        local = local.astimezone(dt.timezone(dt.timedelta(hours=1)))
    r.hset(K.last_enqueued_at, name, local.strftime("%Y-%m-%d %H:%M:%S ") + zone_suffix)
