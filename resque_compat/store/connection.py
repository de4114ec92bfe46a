"""Redis clients for every part of a worker process: plain, TLS, ACL and Sentinel URLs.

Every client the worker, the heartbeat thread and :class:`~resque_compat.client.Resque` make
comes from :func:`connect`, over a **bounded, blocking** pool: greenlets wait for one of at
most ``max_connections`` connections instead of opening one each (a hundred idle greenlets must
not hold a hundred connections), for Sentinel too.

URL forms (issue 7, "Scaling out"):

- ``redis://[user:password@]host:port/db``: ACL user and password (``AUTH user password``;
  no user = the ``default`` user, as ``requirepass``). Percent-encode ``@ : /`` in them.
- ``rediss://...``: the same over TLS; ``ssl_*`` query arguments reach the socket, e.g.
  ``?ssl_ca_certs=/etc/ssl/redis-ca.pem``, ``&ssl_certfile=...&ssl_keyfile=...`` (client
  certificates), ``&ssl_cert_reqs=none`` (no verification: tests only).
- ``unix:///path/redis.sock?db=0``.
- ``redis+sentinel://[user:password@]host1:26379,host2:26379/<service>[/<db>]``: ask the
  Sentinels which server is the master of ``<service>`` (the name in ``sentinel monitor``),
  and follow failovers. ``user:password`` are for the master (its ACL); the Sentinels' own
  credentials, if they have any, go in ``?sentinel_username=...&sentinel_password=...``. A
  host without a port means 26379; ``<db>`` defaults to 0. Other query arguments
  (``socket_timeout``...) apply to the master's connections, as for ``redis://``.

Every form bounds connect, TLS handshake and each reply (``?socket_connect_timeout=5`` and
``?socket_timeout=10`` by default; see :mod:`~resque_compat.store.timeouts`).
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Tuple
from urllib.parse import parse_qsl, unquote

import redis
from redis.connection import URL_QUERY_ARGUMENT_PARSERS
from redis.sentinel import Sentinel, SentinelConnectionPool

from resque_compat.common.urls import parse_host_port, redact
from resque_compat.errors import ConfigurationError
from resque_compat.store.timeouts import DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT, bound

log = logging.getLogger("resque_compat.connection")


class RedisURLError(ConfigurationError, ValueError):
    """A Redis URL we cannot use (a ValueError too, as redis-py's own URL errors are)."""


SENTINEL_SCHEME = "redis+sentinel://"
DEFAULT_SENTINEL_PORT = 26379
SENTINEL_EXAMPLE = "redis+sentinel://127.0.0.1:26379,127.0.0.2:26379/mymaster/0"


class _CountingPool:
    """Counts callers that find every connection taken and wait (the ``waiting`` metric)."""

    waiting = 0

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        if not self.pool.empty():  # type: ignore[attr-defined]
            return super().get_connection(*args, **kwargs)  # type: ignore[misc]
        self.waiting += 1
        try:
            return super().get_connection(*args, **kwargs)  # type: ignore[misc]
        finally:
            self.waiting -= 1


class BoundedPool(_CountingPool, redis.BlockingConnectionPool):
    """redis-py's blocking pool, counting waiters."""


class BoundedSentinelPool(_CountingPool, SentinelConnectionPool, redis.BlockingConnectionPool):
    """redis-py's Sentinel pool (each new connection asks the Sentinels for the master; a reply
    of READONLY from a demoted master drops the connection) with the blocking pool's bound:
    at most ``max_connections``, and a caller waits ``timeout`` seconds for one to be free.

    redis-py ships no such class. The Sentinel behaviour lives in ``SentinelManagedConnection``
    and in ``owns_connection``/``reset``, which compose with ``BlockingConnectionPool``'s
    queue; only ``disconnect`` differs: Sentinel's proxy calls it with
    ``inuse_connections=False`` when the master moves, which the blocking pool does not accept.
    """

    def disconnect(self, inuse_connections: bool = True) -> None:
        if inuse_connections:
            super().disconnect()
            return
        # Only the idle ones, which sit in the queue; busy ones are dropped on release, because
        # owns_connection() no longer matches the new master's address.
        for connection in list(self.pool.queue):
            if connection is not None:
                connection.disconnect()

    def release(self, connection: Any) -> None:
        owned = self.owns_connection(connection)
        super().release(connection)
        if not owned:  # a connection to a former master: forget it, or the list grows per failover
            try:
                self._connections.remove(connection)
            except ValueError:
                pass


def connect(url: str, max_connections: int = 10, timeout: float = 20.0,
            connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
            read_timeout: float = DEFAULT_READ_TIMEOUT) -> redis.Redis:
    """A client over a bounded, blocking pool for any URL form in the module docstring.

    ``timeout`` is how long a greenlet waits for a free connection; ``connect_timeout`` bounds
    each TCP connect and TLS handshake (and each question to a Sentinel), ``read_timeout`` each
    reply; the URL's ``socket_connect_timeout`` / ``socket_timeout`` override them. Raises
    ConfigurationError for a URL it cannot use, naming the fix.
    """
    common: Dict[str, Any] = dict(
        max_connections=max_connections,
        timeout=timeout,
        socket_connect_timeout=connect_timeout,
        socket_timeout=read_timeout,
        socket_keepalive=True,
        health_check_interval=30,
    )
    try:
        if url.startswith(SENTINEL_SCHEME):
            return redis.Redis(connection_pool=bound(sentinel_pool(url, common)))
        pool = bound(BoundedPool.from_url(url, **common))
    except RedisURLError:
        raise
    except ValueError as exc:
        raise RedisURLError(f"cannot use Redis URL {redact(url)!r}: {exc}; check --redis / "
                                 "REDIS_URL (redis://, rediss://, unix:// or redis+sentinel://)") from None
    return redis.Redis(connection_pool=pool)


def sentinel_pool(url: str, common: Dict[str, Any]) -> BoundedSentinelPool:
    """The master pool of a ``redis+sentinel://`` URL (see the module docstring)."""
    sentinels, service, db, username, password, query = parse_sentinel_url(url)
    master_kwargs = dict(common, db=db, **query)
    ask_within = master_kwargs["socket_connect_timeout"]
    sentinel_kwargs: Dict[str, Any] = {"socket_connect_timeout": ask_within, "socket_timeout": ask_within}
    for name in ("sentinel_username", "sentinel_password"):
        if name in master_kwargs:
            sentinel_kwargs[name[len("sentinel_"):]] = master_kwargs.pop(name)
    if username:
        master_kwargs["username"] = username
    if password:
        master_kwargs["password"] = password
    manager = Sentinel(sentinels, sentinel_kwargs=sentinel_kwargs)
    # Bounded like every other socket, and named in one short phrase: redis-py's "No master
    # found" error lists each Sentinel by its client's repr, a line of 600 characters each.
    manager.sentinels = [_SentinelClient(connection_pool=bound(s.connection_pool)) for s in manager.sentinels]
    log.debug("Redis via Sentinel: service %s on %s", service, sentinels)
    return BoundedSentinelPool(service, manager, is_master=True, **master_kwargs)


class _SentinelClient(redis.Redis):
    def __repr__(self) -> str:
        kwargs = self.connection_pool.connection_kwargs
        return f"Sentinel {kwargs.get('host')}:{kwargs.get('port')}"


def parse_sentinel_url(url: str) -> Tuple[List[Tuple[str, int]], str, int, str, str, Dict[str, Any]]:
    """``redis+sentinel://[user:pass@]h1:p1,h2:p2/<service>[/<db>][?query]`` ->
    (sentinels, service, db, user, password, typed query arguments)."""
    def bad(why: str) -> RedisURLError:
        return RedisURLError(f"cannot use Redis URL {redact(url)!r}: {why}; the form is "
                                  f"{SENTINEL_EXAMPLE} (see README, Scaling out)")

    rest = url[len(SENTINEL_SCHEME):]
    rest, _, query_text = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts_text = netloc.rpartition("@")
    username, _, password = userinfo.partition(":") if at else ("", "", "")
    sentinels: List[Tuple[str, int]] = []
    for item in hosts_text.split(","):
        try:
            sentinels.append(parse_host_port(item, default_port=DEFAULT_SENTINEL_PORT))
        except ValueError as exc:
            raise bad(f"sentinel address {item.strip()!r}: {exc}") from None
    parts = [unquote(p) for p in path.split("/") if p]
    if not parts or len(parts) > 2:
        raise bad("the path must be /<service name>[/<db>]")
    try:
        db = int(parts[1]) if len(parts) == 2 else 0
    except ValueError:
        raise bad(f"the db {parts[1]!r} is not a number") from None
    query: Dict[str, Any] = {}
    for name, value in parse_qsl(query_text):
        parser = URL_QUERY_ARGUMENT_PARSERS.get(name)
        try:
            query[name] = parser(value) if parser else value
        except (TypeError, ValueError):
            raise bad(f"invalid value for {name!r}") from None
    if "db" in query:
        db = int(query.pop("db"))
    return sentinels, parts[0], db, unquote(username), unquote(password), query


def pool_usage(client: redis.Redis) -> Dict[str, int]:
    """``size``, ``in_use`` and ``waiting`` of a client made by :func:`connect` (metrics)."""
    pool = client.connection_pool
    size = int(getattr(pool, "max_connections", 0) or 0)
    free = pool.pool.qsize() if hasattr(pool, "pool") else size
    return {"size": size, "in_use": max(0, size - free), "waiting": int(getattr(pool, "waiting", 0))}
