"""Bounds on every Redis socket we open: connect and TLS handshake, then each reply (issue 14).

Without them, a Redis whose packets are silently dropped (a failover that moved the address, a
security-group change, a dead NAT entry) hangs every worker until the kernel gives up on TCP,
about 15 minutes, and ``rediss://`` pointed at a plain port hangs forever in the handshake.
Ruby's redis client gives up after 5 s and reconnects; so do we.

Both bounds come from REDIS_URL's query, with redis-py's names (its URL parser reads them):
``?socket_connect_timeout=5`` (TCP connect, then the TLS handshake, each) and
``?socket_timeout=10`` (each reply, and each send that cannot proceed). The read bound must stay
above the slowest command we send, or a slow but healthy Redis looks dead: the slowest is the
reserve script, which pops at most one job per waiting slot and finishes the ended ones: Redis'
SLOWLOG gave 21 ms for 1,000 failed endings plus 1,000 jobs taken from 20 queues, and 8 ms for
1,000 jobs from the last of 20 queues (a shared 2-core machine), 500 times below the bound.

Every timeout says which bound ran out and where, as one line (``resque-py info`` prints it).

Sockets close with a reset (SO_LINGER 0). After a timeout, the request may still sit
unacknowledged in the kernel's send queue; with an ordinary close the kernel keeps retransmitting
it, so when the network heals it reaches Redis and runs, after the fetcher has already read
``worker:<id>`` back and concluded that its reserve trip did not run (fetcher.py). A reset drops
the queue: a trip whose reply timed out either ran before the timeout or never runs. That holds
for a lost network, not for a Redis blocked longer than the read bound by another client's slow
command: the request already sits in Redis' socket and runs when Redis reads it (README).
"""
from __future__ import annotations

import socket
import struct
import threading
from typing import Any, Dict

import redis
from redis.sentinel import SentinelManagedConnection, SentinelManagedSSLConnection

#: Seconds for a TCP connect, and again for the TLS handshake (Ruby's redis-rb: 5).
DEFAULT_CONNECT_TIMEOUT = 5.0
#: Seconds to wait for each reply: twice redis-rb's 5, since the reserve script serves every
#: waiting slot of the process in one call (module docstring).
DEFAULT_READ_TIMEOUT = 10.0
#: The URL query names of the two bounds (redis-py's), for error messages and README.
CONNECT_NAME, READ_NAME = "socket_connect_timeout", "socket_timeout"

_LINGER_RESET = struct.pack("ii", 1, 0)
_lock = threading.Lock()  # the heartbeat thread counts too
#: Timeouts since the process started, by what timed out (``resque_redis_timeouts_total``).
TIMEOUTS: Dict[str, int] = {"connect": 0, "tls": 0, "read": 0, "write": 0}


class RedisTimeout(redis.TimeoutError):
    """A bound of this module ran out; the message says which, where and how to change it."""


def _count(what: str) -> None:
    with _lock:
        TIMEOUTS[what] += 1


class _Bounded:
    """Mixed into each redis-py connection class we use (see :data:`BOUNDED`)."""

    host: str
    port: int
    db: int
    socket_timeout: Any
    socket_connect_timeout: Any

    def _where(self) -> str:
        scheme = "rediss" if isinstance(self, redis.SSLConnection) else "redis"
        return f"{scheme}://{self.host}:{self.port}/{self.db}"

    def _connect(self) -> Any:
        try:
            sock = super()._connect()  # type: ignore[misc]
        except socket.timeout:
            _count("connect")
            raise RedisTimeout(
                f"connecting to {self._where()} timed out after {self.socket_connect_timeout:g}s "
                f"({CONNECT_NAME} in the Redis URL)") from None
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        return sock

    def _wrap_socket_with_ssl(self, sock: Any) -> Any:
        sock.settimeout(self.socket_connect_timeout)
        try:
            wrapped = super()._wrap_socket_with_ssl(sock)  # type: ignore[misc]
        except socket.timeout:
            _count("tls")
            raise RedisTimeout(
                f"the TLS handshake with {self._where()} timed out after "
                f"{self.socket_connect_timeout:g}s ({CONNECT_NAME} in the Redis URL); is that port "
                "a TLS Redis? use redis:// for a plain one") from None
        wrapped.settimeout(self.socket_timeout)
        return wrapped

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)  # type: ignore[misc]
        except RedisTimeout:
            raise
        except redis.TimeoutError as exc:
            _count("read")
            raise RedisTimeout(
                f"no reply from {self._where()} within {self.socket_timeout:g}s "
                f"({READ_NAME} in the Redis URL)") from exc

    def send_packed_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().send_packed_command(*args, **kwargs)  # type: ignore[misc]
        except RedisTimeout:  # connecting first, or the handshake's reply
            raise
        except redis.TimeoutError as exc:
            _count("write")
            raise RedisTimeout(
                f"sending to {self._where()} timed out after {self.socket_timeout:g}s "
                f"({READ_NAME} in the Redis URL)") from exc


class BoundedConnection(_Bounded, redis.Connection):
    pass


class BoundedSSLConnection(_Bounded, redis.SSLConnection):
    pass


class BoundedSentinelConnection(_Bounded, SentinelManagedConnection):
    pass


class BoundedSentinelSSLConnection(_Bounded, SentinelManagedSSLConnection):
    pass


#: redis-py's class (as its URL parser or Sentinel pool picks it) -> ours. A Unix socket has no
#: network to lose, so it keeps redis-py's class (and the read bound, which the pool passes it).
BOUNDED = {
    redis.Connection: BoundedConnection,
    redis.SSLConnection: BoundedSSLConnection,
    SentinelManagedConnection: BoundedSentinelConnection,
    SentinelManagedSSLConnection: BoundedSentinelSSLConnection,
}


def bound(pool: Any) -> Any:
    """Make ``pool`` open bounded connections (it opens them lazily, so nothing is open yet),
    after checking the bounds it was given. Returns the pool."""
    pool.connection_class = BOUNDED.get(pool.connection_class, pool.connection_class)
    for name, default in ((CONNECT_NAME, DEFAULT_CONNECT_TIMEOUT), (READ_NAME, DEFAULT_READ_TIMEOUT)):
        value = pool.connection_kwargs.get(name)
        if not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"{name} must be a number of seconds above 0 (got {value!r}), "
                             f"e.g. ?{name}={default:g}")
    return pool
