"""``resque_compat.redis.client()``: one Redis client shared by every greenlet's job bodies.

It is a ``redis.Redis`` (every command method of redis-py, same signatures and return values)
over a bounded, blocking pool on the worker's Redis (``JOB_REDIS_URL`` points it elsewhere),
and it **auto-pipelines**: the commands that different greenlets issue in the same turn of the
gevent hub are written to Redis in one round trip, and each greenlet gets its own reply or its
own exception, in order. A hundred jobs each doing ``INCR`` cost a few round trips, not a
hundred (issue 17: this is what ioredis does for node-resque; redis-py has no equivalent).

What cannot share a connection with other greenlets' commands:

* ``MULTI``/``EXEC``/``DISCARD``/``WATCH``/``UNWATCH``, ``SELECT``, ``AUTH``, ``HELLO``,
  ``RESET``, ``QUIT``, ``MONITOR`` and the ``SUBSCRIBE`` family are refused with
  :class:`SharedConnectionError`: use ``client().pipeline()`` (a transaction, on its own
  pooled connection, as in redis-py), ``client().pubsub()`` or ``client().lock(...)``.
* Blocking commands (``BLPOP``, ``BRPOP``, ``BLMOVE``, ``BZPOPMIN``, ``XREAD``, ``WAIT``, ...)
  run alone on a pooled connection, which they hold while they wait.

A command in a batch is sent once and never retried: when the connection is lost in the middle
of a batch, the commands already answered keep their replies and every command of that batch
still waiting raises ``redis.ConnectionError`` (it may or may not have run, as with any lost
reply). Commands of other batches are not affected. ``client(auto_pipeline=False)`` gives the
plain redis-py client on the same pool.
"""
from __future__ import annotations

import inspect
import logging
from typing import Any, List, Optional, Tuple

import gevent
import redis
from gevent.event import AsyncResult

from resque_compat.errors import ResqueError
from resque_compat.store.connection import connect

log = logging.getLogger("resque_compat.redis")

#: Commands that change or take over the connection: with other greenlets' commands on the
#: same connection they would act on those commands too.
REFUSED = frozenset({
    "MULTI", "EXEC", "DISCARD", "WATCH", "UNWATCH", "SELECT", "AUTH", "HELLO", "RESET", "QUIT",
    "MONITOR", "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE", "SUNSUBSCRIBE",
})
#: Commands that wait on the server: batched, they would hold up every command behind them.
BLOCKING = frozenset({
    "BLPOP", "BRPOP", "BRPOPLPUSH", "BLMOVE", "BLMPOP", "BZPOPMIN", "BZPOPMAX", "BZMPOP",
    "XREAD", "XREADGROUP", "WAIT", "WAITAOF",
})

# redis-py 5.3+ deprecates get_connection's command name; 4.x and 5.0 require it.
_NAME_ARGS: Tuple[str, ...] = (
    () if inspect.signature(redis.ConnectionPool.get_connection).parameters["command_name"].default
    is not inspect.Parameter.empty else ("PING",))


class SharedConnectionError(ResqueError):
    """A command that would change the shared connection for other greenlets' commands."""


class AutoPipelineRedis(redis.Redis):
    """``redis.Redis`` whose commands from one hub turn go to Redis as one pipeline."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._batch: List[Tuple[tuple, dict, AsyncResult]] = []
        #: Batches written and not all answered yet (at most the pool's size).
        self.batches_in_flight = 0
        #: Round trips and commands sent batched, for stats().
        self.round_trips = 0
        self.commands = 0

    def execute_command(self, *args: Any, **options: Any) -> Any:
        name = str(args[0]).upper()
        if name in REFUSED or (name == "CLIENT" and len(args) > 1 and str(args[1]).upper() == "REPLY"):
            raise SharedConnectionError(
                f"{name} cannot run on resque_compat.redis's shared connection (other jobs' "
                "commands share it): use client().pipeline() for MULTI/EXEC and WATCH, "
                "client().pubsub() for SUBSCRIBE, or a redis.Redis of your own")
        if name in BLOCKING:
            return super().execute_command(*args, **options)  # alone, on a pooled connection
        result: AsyncResult = AsyncResult()
        self._batch.append((args, options, result))
        if len(self._batch) == 1:
            # Starts after the greenlets already runnable in this hub turn: their commands
            # join this batch.
            gevent.spawn(self._send_batch)
        return result.get()

    def _send_batch(self) -> None:
        pool = self.connection_pool
        try:
            connection = pool.get_connection(*_NAME_ARGS)
        except BaseException as exc:  # pool timeout, Redis down at connect: fail this batch
            batch, self._batch = self._batch, []
            for _, _, result in batch:
                result.set_exception(exc)
            if not isinstance(exc, Exception):
                raise  # GreenletExit and the like end the sender too, after failing the batch
            return
        # Taken after the connection: commands issued while we waited for one ride along.
        batch, self._batch = self._batch, []
        self.batches_in_flight += 1
        self.round_trips += 1
        self.commands += len(batch)
        answered = 0
        try:
            connection.send_packed_command(connection.pack_commands([args for args, _, _ in batch]))
            for args, options, result in batch:
                try:
                    reply = self.parse_response(connection, args[0], **options)
                except redis.ResponseError as exc:  # this command's own error; the stream is intact
                    result.set_exception(exc)
                else:
                    result.set(reply)
                answered += 1
        except BaseException as exc:
            # The connection is in an unknown state: drop it, and fail the commands that have
            # no reply yet (they may have run; none is sent again).
            connection.disconnect()
            lost = exc if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)) else \
                redis.ConnectionError(f"lost the Redis connection in the middle of a pipeline: {exc!r}")
            for _, _, result in batch[answered:]:
                result.set_exception(lost)
            if not isinstance(exc, Exception):
                raise
        finally:
            self.batches_in_flight -= 1
            pool.release(connection)


_client: Optional[AutoPipelineRedis] = None
_plain: Optional[redis.Redis] = None


def configure(url: str, max_connections: int = 8) -> None:
    """The job client's Redis and pool bound (the runner calls this with JOB_REDIS_URL or
    REDIS_URL, and REDIS_POOL). No connection is made until a job sends a command."""
    global _client, _plain
    close()
    pool = connect(url, max_connections=max_connections).connection_pool
    _client = AutoPipelineRedis(connection_pool=pool)
    _plain = redis.Redis(connection_pool=pool)


def client(auto_pipeline: bool = True) -> redis.Redis:
    """The shared client (module docstring). Outside ``resque-py work`` it is built on first
    use from JOB_REDIS_URL, else REDIS_URL."""
    if _client is None:
        from resque_compat.settings import connection_settings

        settings = connection_settings()
        configure(settings.effective_job_redis_url, settings.effective_redis_pool)
    assert _client is not None and _plain is not None
    return _client if auto_pipeline else _plain


def stats() -> dict:
    """Round trips and commands sent batched since start-up (commands / round trips = the
    batching achieved)."""
    if _client is None:
        return {"round_trips": 0, "commands": 0, "in_flight": 0}
    return {"round_trips": _client.round_trips, "commands": _client.commands,
            "in_flight": _client.batches_in_flight}


def close() -> None:
    """Close the pool's connections (tests; the runner at shutdown)."""
    global _client, _plain
    if _client is not None:
        _client.connection_pool.disconnect()
    _client = _plain = None
