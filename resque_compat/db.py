"""One MySQL connection pool per worker process, shared by every greenlet (DBUtils over PyMySQL).

A process runs FIBERS greenlets but opens at most DB_POOL connections: a job borrows one with
:func:`connection` or :func:`cursor` for as long as it talks to MySQL and gives it back at the
end of the ``with`` block, so 100 greenlets that spend most of their time in HTTP calls share 20
connections. Do not hold a connection across anything slow that is not MySQL.

Why slots in front of ``PooledDB``: DBUtils' ``blocking=True`` waits on a
``threading.Condition`` with no timeout, so a job could wait forever for a connection. Every
checkout first takes one of DB_POOL slots, waiting at most DB_POOL_TIMEOUT; only a slot holder
asks ``PooledDB`` (``maxconnections`` = DB_POOL, ``blocking=True`` kept as a safety net) for a
connection, so ``PooledDB`` always has one free and at most DB_POOL connections ever exist.
The slots are a FIFO hand-off (:class:`_Slots`), not a ``gevent.lock.BoundedSemaphore``: a
semaphore lets a greenlet that just gave a connection back take it again before the woken
waiter runs, and with 100 greenlets on 20 connections some waiters starved for over a second,
so a busy but healthy pool could raise PoolExhausted.

Each connection is pinged when it is handed out and replaced if MySQL restarted or dropped it
("gone away"), outside PooledDB's pool lock (as is opening one), and whatever a job left
uncommitted is rolled back when the connection comes back, so the next job never inherits a
half-done transaction (or a stale REPEATABLE READ snapshot). :func:`cursor` has just committed
when it gives the connection back, so that rollback, a round trip that can change nothing, is
skipped there (issue 17: W3 spent a quarter of its MySQL round trips on it).

The pool is created on first use, not by :func:`configure`, so that it is built after
``gevent.monkey.patch_all()`` and its locks and sockets are cooperative.
"""
from __future__ import annotations

import logging
import sys
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, Optional, Tuple
from urllib.parse import parse_qsl, unquote, urlsplit

import gevent
from gevent.event import Event

from resque_compat.common.poolstats import PoolStats
from resque_compat.common.urls import redact  # noqa: F401  db.redact is public
from resque_compat.errors import ConfigurationError, ResqueError

if TYPE_CHECKING:  # pragma: no cover
    import pymysql.connections
    import pymysql.cursors

log = logging.getLogger(__name__)

DEFAULT_PORT = 3306
DEFAULT_SIZE = 20
DEFAULT_TIMEOUT = 10.0

#: URL query parameters passed through to ``pymysql.connect``, with their types; others are
#: ignored with a warning, so a URL shared with a Rails app (``?pool=5&reconnect=true``) works.
_QUERY_PARAMS = {
    "charset": str,
    "connect_timeout": float,
    "read_timeout": float,
    "write_timeout": float,
    "unix_socket": str,
}
_SCHEMES = ("mysql", "mysql2", "mysql+pymysql", "mariadb")


class PoolExhausted(ResqueError):
    """Every connection stayed in use for DB_POOL_TIMEOUT seconds while a job waited for one."""

    def __init__(self, size: int, waited: float, timeout: float, waiting: int) -> None:
        self.size = size
        self.waited = waited
        self.timeout = timeout
        super().__init__(
            f"MySQL pool exhausted: none of its {size} connections (DB_POOL={size}) came free "
            f"in the {waited:.2f} s this job waited (DB_POOL_TIMEOUT={timeout:g} s; {waiting} more "
            "jobs waiting). Raise DB_POOL (--db-pool) or lower FIBERS, and do not hold a "
            "connection across slow work such as HTTP calls."
        )


def parse_url(url: str) -> Dict[str, Any]:
    """The ``pymysql.connect`` keyword arguments for ``mysql://user:pass@host:port/db?charset=``.

    User and password may be percent-encoded (``p%40ss`` for ``p@ss``). The port defaults to
    3306, the host to 127.0.0.1 and the charset to utf8mb4.
    """
    example = "mysql://user:password@127.0.0.1:3306/app_production"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigurationError(f"DATABASE_URL {redact(url)!r} is not a valid URL ({exc}); "
                                 f"use e.g. {example}") from None
    if parts.scheme not in _SCHEMES:
        raise ConfigurationError(
            f"DATABASE_URL {redact(url)!r} must start with mysql:// (got {parts.scheme or 'no'} "
            f"scheme); use e.g. {example}"
        )
    params: Dict[str, Any] = {
        "host": parts.hostname or "127.0.0.1",
        "port": port or DEFAULT_PORT,
        "charset": "utf8mb4",
    }
    if parts.username:
        params["user"] = unquote(parts.username)
    if parts.password is not None:
        params["password"] = unquote(parts.password)
    database = unquote(parts.path.lstrip("/"))
    if database:
        params["database"] = database
    for key, value in parse_qsl(parts.query):
        kind = _QUERY_PARAMS.get(key)
        if kind is None:
            log.warning("DATABASE_URL parameter %r is not used by resque_compat.db; ignoring it", key)
            continue
        try:
            params[key] = kind(value)
        except ValueError:
            raise ConfigurationError(f"DATABASE_URL parameter {key}={value!r} must be a "
                                     f"{kind.__name__}, e.g. {key}=10") from None
    return params


@dataclass(frozen=True)
class _Config:
    url: Optional[str]
    size: int = DEFAULT_SIZE
    timeout: float = DEFAULT_TIMEOUT
    params: Dict[str, Any] = field(default_factory=dict)


class _Slots:
    """``size`` permits handed to waiters strictly first come, first served (see module doc).

    A released permit goes straight to the longest waiter, and nobody takes a free permit while
    others wait, so a wait is bounded by the work queued ahead, never by luck.
    """

    __slots__ = ("free", "_waiters")

    def __init__(self, size: int) -> None:
        self.free = size
        self._waiters: "deque[Event]" = deque()

    def try_acquire(self) -> bool:
        if self.free > 0 and not self._waiters:
            self.free -= 1
            return True
        return False

    def acquire(self, timeout: float) -> bool:
        """Wait in line up to ``timeout`` seconds; True if a permit was handed to us."""
        waiter = Event()
        self._waiters.append(waiter)
        try:
            waiter.wait(timeout)
        except BaseException:
            # Killed while waiting: give back a permit that arrived meanwhile, else leave the line.
            if waiter.is_set():
                self.release()
            else:
                self._waiters.remove(waiter)
            raise
        if waiter.is_set():  # also when the hand-off raced the timer: the permit is ours
            return True
        self._waiters.remove(waiter)
        return False

    def release(self) -> None:
        if self._waiters:
            self._waiters.popleft().set()
        else:
            self.free += 1


def _creator(pymysql: Any) -> Callable[..., Any]:
    """``pymysql.connect`` with one TLS context for every connection of the pool.

    PyMySQL 1.2 with no ``ssl*`` option uses TLS if the server offers it ("preferred") and
    builds a new default SSL context, loading the system's CA certificates, for every
    connection: 19 ms of CPU each, 0.4 s for a pool of 20 before the first jobs could finish
    (issue 17, W3). The preferred-mode context has no per-connection state, so one is built and
    shared; explicit ``ssl*`` options still get their own, as before.
    """
    shared: Dict[str, Any] = {}

    class Connection(pymysql.connections.Connection):
        def _create_ssl_ctx(self, sslp: Any) -> Any:
            if sslp != {}:
                return super()._create_ssl_ctx(sslp)
            if "preferred" not in shared:
                shared["preferred"] = super()._create_ssl_ctx(sslp)
            return shared["preferred"]

    def connect(*args: Any, **kwargs: Any) -> Any:
        return Connection(*args, **kwargs)

    # What DBUtils reads from a creator: the DB-API module's exceptions and thread safety.
    connect.dbapi = pymysql  # type: ignore[attr-defined]
    connect.threadsafety = pymysql.threadsafety  # type: ignore[attr-defined]
    return connect


class _Pool:
    """One PooledDB and the slots that bound and time checkouts from it."""

    def __init__(self, config: _Config, stats: PoolStats) -> None:
        _warn_if_unpatched()
        # Imported here, not at module level, so importing resque_compat.db before monkey
        # patching cannot bind DBUtils' Condition/PyMySQL's sockets to blocking versions.
        import pymysql
        from dbutils.pooled_db import PooledDB

        self.size = config.size
        self.timeout = config.timeout
        self.stats = stats
        self.closed = False
        self._slots = _Slots(config.size)
        self._pooled = PooledDB(
            _creator(pymysql),
            mincached=0,
            maxcached=config.size,
            maxshared=0,  # dedicated connections only: never two greenlets on one connection
            maxconnections=config.size,
            blocking=True,  # never waits: the slots admit at most `size` holders
            # 2 = "when a cursor is made", which never happens through DBUtils here: checkout
            # pings (and reconnects) itself, outside the pool lock PooledDB would hold for it.
            ping=2,
            reset=False,  # checkin rolls back itself, unless the borrower has just committed
            **config.params,
        )
        self._raw_type = pymysql.connections.Connection

    def checkout(self) -> Tuple[Any, Any]:
        """A slot and a connection: (raw PyMySQL connection, DBUtils lease to give back)."""
        stats = self.stats
        if not self._slots.try_acquire():
            stats.waiting += 1
            started = time.perf_counter()
            try:
                got = self._slots.acquire(timeout=self.timeout)
            finally:
                stats.waiting -= 1
                waited = time.perf_counter() - started
                stats.waited(waited)
            if not got:
                stats.timeouts += 1
                raise PoolExhausted(self.size, waited, self.timeout, stats.waiting)
        try:
            if not self._pooled._idle_cache:
                self._connect_idle()
            lease = self._pooled.connection(shareable=False)
        except BaseException:
            stats.errors += 1
            self._slots.release()
            raise
        try:
            lease._con._ping_check(2)  # ping when handed out; reconnect if MySQL dropped it
            raw = self._raw(lease)
            if not raw.open:
                # DBUtils hands out the connection even when its ping's reconnect failed; a
                # reconnect here raises MySQL's own error (2003 Can't connect ...), which tells
                # the job's failure entry what is wrong instead of InterfaceError (0, '').
                stats.errors += 1
                raw.connect()
        except BaseException:
            lease.close()
            self._slots.release()
            raise
        stats.acquired()
        return raw, lease

    def _connect_idle(self) -> None:
        """Open a connection into PooledDB's idle list. PooledDB opens a missing connection,
        and pings a cached one, while holding its pool lock, so every other checkout and
        checkin waited for each MySQL handshake and ping: 20 connects in a row at start-up
        (W3's first job finished after 0.8 s, issue 17), one ping at a time afterwards."""
        connection = self._pooled.steady_connection()
        with self._pooled._lock:
            self._pooled._idle_cache.append(connection)
            self._pooled._lock.notify()

    def checkin(self, lease: Any, clean: bool, committed: bool = False) -> None:
        """Give a connection back; ``clean`` is False when the job left it mid-conversation,
        ``committed`` True when its last statement was a successful COMMIT."""
        try:
            if clean and not committed:
                _roll_back(self._raw(lease))
            if not clean:
                # A kill or gevent.Timeout can stop a job between sending a query and reading
                # its reply; rolling back over that socket would read the stale reply and hand
                # the next job a desynchronised connection. Dropping the socket makes PooledDB's
                # rollback fail and replace the connection; MySQL rolls back the dropped one.
                _force_close(self._raw(lease))
            lease.close()  # PooledDB.cache(): back to the idle list
        except BaseException:
            # Interrupted inside PooledDB.cache() (a kill during its rollback): PooledDB has
            # not yet counted the connection back, so finish the return where the kill cannot
            # reach, or the pool would shrink for good. The slot is released there, after it.
            if _lease_open(lease):
                _force_close(self._raw(lease))
                gevent.spawn(self._finish_checkin, lease)
            else:
                self._release()
            raise
        self._release()

    def _finish_checkin(self, lease: Any) -> None:
        try:
            lease.close()
        except Exception:  # pragma: no cover - defensive; PooledDB suppresses rollback errors
            log.exception("could not return a MySQL connection to the pool")
        finally:
            self._release()

    def _release(self) -> None:
        if self.closed:
            self._pooled.close()  # closes the idle connection we just returned
        self.stats.released()
        self._slots.release()

    def _raw(self, lease: Any) -> "pymysql.connections.Connection":
        # PooledDedicatedDBConnection._con is the SteadyDBConnection, whose _con is the PyMySQL
        # connection (replaced when a ping fails, so read it after every checkout).
        raw = getattr(getattr(lease, "_con", None), "_con", None)
        if not isinstance(raw, self._raw_type):
            raise ResqueError(
                "DBUtils' pooled connection no longer exposes the PyMySQL connection where "
                "resque_compat.db expects it; install DBUtils>=3,<4 as setup.cfg requires"
            )
        return raw

    def close(self) -> None:
        self.closed = True
        self._pooled.close()


def _roll_back(raw: Any) -> None:
    try:
        raw.rollback()
    except Exception:
        # As PooledDB's own reset did: never an error for the job; a dead connection is
        # dropped here and replaced by the next checkout's ping.
        log.debug("rollback of a returned MySQL connection raised", exc_info=True)
        _force_close(raw)


def _lease_open(lease: Any) -> bool:
    return getattr(lease, "_con", None) is not None


def _force_close(raw: Any) -> None:
    """Drop the socket without a QUIT round trip (the stream may be mid-reply)."""
    try:
        raw._force_close()
    except Exception:  # pragma: no cover - closing a dead socket
        log.debug("error closing a MySQL connection", exc_info=True)


def _warn_if_unpatched() -> None:
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and not monkey.is_module_patched("socket"):
        log.warning("the MySQL pool is being created before gevent.monkey.patch_all(); queries "
                    "will block every greenlet. Patch first (resque-py does) or create the pool later")


_config: Optional[_Config] = None
_pool: Optional[_Pool] = None
_stats = PoolStats(0)


def configure(url: Optional[str], size: int = DEFAULT_SIZE, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Set the pool up from DATABASE_URL, DB_POOL and DB_POOL_TIMEOUT; no connection is made yet.

    ``url=None`` means no database: a job asking for a connection gets a ConfigurationError.
    Calling it again closes the previous pool (connections in use close when given back).
    """
    global _config, _stats
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigurationError(f"DB_POOL must be a whole number of at least 1, e.g. DB_POOL=20 (got {size!r})")
    if not timeout > 0:
        raise ConfigurationError(
            f"DB_POOL_TIMEOUT must be more than 0 seconds, e.g. DB_POOL_TIMEOUT=10 (got {timeout!r})")
    params = parse_url(url) if url is not None else {}
    close()
    _config = _Config(url=url, size=size, timeout=float(timeout), params=params)
    _stats = PoolStats(size if url is not None else 0)
    if url is not None:
        log.debug("MySQL pool: %s, %d connections, %.3g s checkout timeout", redact(url), size, timeout)


def _get_pool() -> _Pool:
    global _pool
    pool = _pool
    if pool is not None:
        return pool
    config = _config
    if config is None or config.url is None:
        raise ConfigurationError(
            "no MySQL database is configured for this worker: set DATABASE_URL="
            "mysql://user:password@host:3306/dbname (or pass --database-url) and restart it"
            + ("" if config is not None else "; outside resque-py, call resque_compat.db.configure(url) first")
        )
    pool = _pool = _Pool(config, _stats)
    return pool


@contextmanager
def connection() -> Iterator["pymysql.connections.Connection"]:
    """Borrow a PyMySQL connection for the ``with`` block; it goes back to the pool after it.

    Commit what you want kept: anything uncommitted is rolled back when the connection is given
    back. Do not close it or change session settings (autocommit, time zone) that the next
    borrower would inherit. Waits up to DB_POOL_TIMEOUT for a free connection, then raises
    :class:`PoolExhausted`.
    """
    with _borrowed() as (raw, _):
        yield raw


@contextmanager
def _borrowed() -> Iterator[Tuple[Any, Dict[str, bool]]]:
    """A connection and a flag its user sets when it has just committed (no rollback needed)."""
    pool = _get_pool()
    raw, lease = pool.checkout()
    done = {"committed": False}
    try:
        yield raw, done
    except Exception:
        pool.checkin(lease, clean=True)
        raise
    except BaseException:
        pool.checkin(lease, clean=False)
        raise
    else:
        pool.checkin(lease, clean=True, committed=done["committed"])


@contextmanager
def cursor(cursor_class: Optional[type] = None) -> Iterator["pymysql.cursors.Cursor"]:
    """A cursor on a borrowed connection: commits if the block succeeds, rolls back if it raises.

    ``cursor_class`` is a PyMySQL cursor class, e.g. ``pymysql.cursors.DictCursor``.
    """
    with _borrowed() as (conn, done):
        cur = conn.cursor(cursor_class) if cursor_class is not None else conn.cursor()
        try:
            yield cur
        except Exception:
            try:
                conn.rollback()
            except Exception:
                # The job's own error is the one to report; the pool replaces a dead connection.
                log.debug("rollback after a failed job raised", exc_info=True)
            raise
        else:
            cur.close()
            conn.commit()
            done["committed"] = True


def stats() -> Dict[str, Any]:
    """Pool counters (size, in_use, waiting, max_in_use, checkouts, waits, timeouts, errors)."""
    return _stats.snapshot()


def close() -> None:
    """Close the pool's idle connections now and the busy ones as they are given back.

    The configuration is kept: a later :func:`connection` opens a new pool.
    """
    global _pool
    pool, _pool = _pool, None
    if pool is not None:
        pool.close()
