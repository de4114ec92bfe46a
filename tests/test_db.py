"""resque_compat.db against the real MariaDB, and the callbacks example job that uses it.

What the server itself reports (PROCESSLIST, CONNECTION_ID()) is read through a separate
monitoring connection opened before the pool, so the pool cannot hide a connection from it.
"""
from __future__ import annotations

import json
import time
from typing import Any, Callable, Dict, Iterator, List, Set

import gevent
import gevent.event
import pymysql
import pytest
from gevent.pywsgi import WSGIServer

from resque_compat import db, http
from resque_compat.errors import ConfigurationError
from tests.conftest import MYSQL_URL

PARAMS = db.parse_url(MYSQL_URL)


@pytest.fixture
def monitor() -> Iterator[pymysql.connections.Connection]:
    """A connection of our own, outside the pool; autocommit so it always sees fresh data."""
    try:
        conn = pymysql.connect(autocommit=True, **PARAMS)
    except pymysql.err.OperationalError as exc:
        pytest.fail(f"MariaDB is not answering at {db.redact(MYSQL_URL)} ({exc}); start it "
                    "(bash .ci/services does) or set RESQUE_TEST_MYSQL_URL", pytrace=False)
    with conn.cursor() as cur:
        # a bug that leaves a transaction open must fail the test, not hang DROP TABLE for a day
        cur.execute("SET SESSION lock_wait_timeout = 5, innodb_lock_wait_timeout = 5")
    yield conn
    conn.close()


@pytest.fixture
def pool() -> Iterator[Callable[..., None]]:
    """``pool(size=, timeout=)`` configures db on the test database; closed after the test."""

    def configure(size: int = 20, timeout: float = 10.0) -> None:
        db.configure(MYSQL_URL, size=size, timeout=timeout)

    yield configure
    db.close()
    db.configure(None)


@pytest.fixture
def table(monitor, unique) -> Iterator[str]:
    name = f"rc_test_rows_{unique}"
    with monitor.cursor() as cur:
        cur.execute(f"CREATE TABLE {name} (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(32)) ENGINE=InnoDB")
    yield name
    db.close()  # idle pooled connections must not hold locks on the table
    with monitor.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {name}")


def server_connection_ids(monitor) -> Set[int]:
    """Ids of every connection MariaDB has open for our user on our database."""
    with monitor.cursor() as cur:
        cur.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s AND DB = %s",
                    (PARAMS.get("user", "root"), PARAMS.get("database")))
        return {row[0] for row in cur.fetchall()}


def wait_until_gone(monitor, connection_id: int, limit: float = 5.0) -> None:
    """MariaDB drops a killed thread asynchronously; poll its own list (no event exists for it)."""
    deadline = time.monotonic() + limit
    while connection_id in server_connection_ids(monitor):
        assert time.monotonic() < deadline, f"MariaDB still lists connection {connection_id}"
        gevent.sleep(0.005)


# --- configuration ---------------------------------------------------------------------------

def test_parse_url_decodes_credentials_and_defaults_port():
    params = db.parse_url("mysql://app:p%40ss%3Aword@db.example:3307/prod?charset=latin1&pool=5")
    assert params == {"host": "db.example", "port": 3307, "user": "app", "password": "p@ss:word",
                      "database": "prod", "charset": "latin1"}
    params = db.parse_url("mysql://root@127.0.0.1/test")
    assert params["port"] == 3306 and "password" not in params and params["charset"] == "utf8mb4"


def test_bad_urls_and_sizes_are_configuration_errors(pool):
    with pytest.raises(ConfigurationError, match="mysql://"):
        db.configure("postgres://u@h/db")
    with pytest.raises(ConfigurationError, match="DB_POOL"):
        db.configure(MYSQL_URL, size=0)
    with pytest.raises(ConfigurationError, match="DB_POOL_TIMEOUT"):
        db.configure(MYSQL_URL, timeout=0)
    assert db.redact("mysql://u:secret@h/db") == "mysql://u:***@h/db"


def test_no_database_url_is_a_clear_configuration_error(pool):
    db.configure(None)
    with pytest.raises(ConfigurationError) as info:
        with db.connection():
            pass
    assert "DATABASE_URL" in str(info.value) and "--database-url" in str(info.value)
    with pytest.raises(ConfigurationError, match="DATABASE_URL"):
        with db.cursor():
            pass
    assert db.stats()["size"] == 0


# --- bounds and exclusivity ------------------------------------------------------------------

def test_100_greenlets_share_20_connections_and_mariadb_never_sees_more(pool, monitor):
    baseline = server_connection_ids(monitor)
    pool(size=20, timeout=10)
    done = gevent.event.Event()
    observed: List[int] = []
    seen_ids: Set[int] = set()

    def watch() -> None:
        while not done.is_set():
            observed.append(len(server_connection_ids(monitor) - baseline))

    def work() -> None:
        with db.cursor() as cur:
            cur.execute("SELECT CONNECTION_ID(), SLEEP(0.05)")
            seen_ids.add(cur.fetchone()[0])

    watcher = gevent.spawn(watch)
    gevent.joinall([gevent.spawn(work) for _ in range(100)], raise_error=True)
    done.set()
    watcher.get(timeout=5)  # the monitor connection is the watcher's until it stops
    observed.append(len(server_connection_ids(monitor) - baseline))  # idle ones still count

    assert len(observed) >= 3, "the monitor should have sampled while the jobs ran"
    assert max(observed) == 20, observed
    assert len(seen_ids) == 20
    stats = db.stats()
    assert stats["max_in_use"] == 20 and stats["size"] == 20
    assert stats["checkouts"] == 100 and stats["in_use"] == 0 and stats["waiting"] == 0
    assert stats["max_wait_seconds"] > 0  # 80 of them had to queue


def test_exhausted_pool_fails_after_the_timeout_naming_its_size(pool):
    pool(size=1, timeout=0.2)
    holding, release = gevent.event.Event(), gevent.event.Event()

    def hold() -> None:
        with db.connection():
            holding.set()
            release.wait(10)

    holder = gevent.spawn(hold)
    assert holding.wait(5)
    started = time.perf_counter()
    with pytest.raises(db.PoolExhausted) as info:
        with db.connection():
            pass
    waited = time.perf_counter() - started
    assert 0.2 <= waited < 2.0
    message = str(info.value)
    assert "DB_POOL=1" in message and "FIBERS" in message and "0.2 s" in message
    assert info.value.size == 1
    stats = db.stats()
    assert stats["timeouts"] == 1 and stats["waiting"] == 0 and stats["in_use"] == 1

    release.set()
    holder.get(timeout=5)
    with db.cursor() as cur:  # the slot came back
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)


def test_a_connection_is_never_used_by_two_greenlets_at_once(pool):
    pool(size=5, timeout=10)
    holder_of: Dict[int, Any] = {}
    objects: Set[int] = set()
    problems: List[str] = []

    def work() -> None:
        me = gevent.getcurrent()
        for _ in range(3):
            with db.connection() as conn:
                key = id(conn)
                objects.add(key)
                if key in holder_of:
                    problems.append(f"connection {conn.thread_id()} already held by {holder_of[key]}")
                holder_of[key] = me
                with conn.cursor() as cur:
                    cur.execute("SELECT CONNECTION_ID(), SLEEP(0.01)")
                    server_id = cur.fetchone()[0]
                if server_id != conn.thread_id():
                    problems.append(f"server says {server_id}, connection says {conn.thread_id()}")
                if holder_of.get(key) is not me:
                    problems.append("another greenlet took the connection while it was in use")
                del holder_of[key]

    gevent.joinall([gevent.spawn(work) for _ in range(30)], raise_error=True)
    assert problems == []
    assert len(objects) == 5
    assert db.stats()["max_in_use"] == 5


def wait_for_waiters(n: int) -> None:
    """Let other greenlets run until ``n`` are queued for a connection (yields, never sleeps)."""
    deadline = time.monotonic() + 5
    while db.stats()["waiting"] != n:
        assert time.monotonic() < deadline, db.stats()
        gevent.sleep(0)


def test_waiters_are_served_first_come_first_served(pool):
    pool(size=1, timeout=5)
    order: List[str] = []
    holding, release = gevent.event.Event(), gevent.event.Event()

    def greedy() -> None:
        with db.connection():
            order.append("greedy 1")
            holding.set()
            release.wait(5)
        with db.connection():  # straight back in line: must not overtake the one waiting
            order.append("greedy 2")

    def patient() -> None:
        with db.connection():
            order.append("patient")

    first = gevent.spawn(greedy)
    assert holding.wait(5)
    quitter = gevent.spawn(patient)
    wait_for_waiters(1)
    quitter.kill(block=True, timeout=5)  # a killed waiter must leave the line
    assert db.stats()["waiting"] == 0
    second = gevent.spawn(patient)
    wait_for_waiters(1)
    release.set()
    gevent.joinall([first, second], raise_error=True)
    assert order == ["greedy 1", "patient", "greedy 2"]
    assert db.stats()["in_use"] == 0


def test_yields_a_pymysql_connection():
    # cheap guard for the DBUtils internals db._Pool._raw relies on
    db.configure(MYSQL_URL, size=1)
    try:
        with db.connection() as conn:
            assert isinstance(conn, pymysql.connections.Connection)
    finally:
        db.close()
        db.configure(None)


# --- healing ---------------------------------------------------------------------------------

def test_a_killed_server_connection_heals_on_the_next_checkout(pool, monitor):
    pool(size=1, timeout=5)
    with db.cursor() as cur:
        cur.execute("SELECT CONNECTION_ID()")
        first = cur.fetchone()[0]
    with monitor.cursor() as cur:
        cur.execute("KILL %s", (first,))  # what a MySQL restart does to every pooled connection
    wait_until_gone(monitor, first)

    with db.cursor() as cur:
        cur.execute("SELECT CONNECTION_ID()")
        second = cur.fetchone()[0]
    assert second != first
    assert db.stats()["errors"] == 0


def test_a_job_killed_mid_query_does_not_poison_the_pool(pool):
    pool(size=1, timeout=5)
    sent = gevent.event.Event()

    def slow() -> None:
        with db.cursor() as cur:
            sent.set()  # the kill lands while execute() waits for the reply
            cur.execute("SELECT SLEEP(3)")

    job = gevent.spawn(slow)
    assert sent.wait(5)
    started = time.perf_counter()
    job.kill(block=True, timeout=5)
    with db.cursor() as cur:
        cur.execute("SELECT 42")
        assert cur.fetchone() == (42,)
    # the stale SLEEP reply was dropped with its socket, not waited for
    assert time.perf_counter() - started < 2.0
    assert db.stats()["in_use"] == 0


def test_reconfiguring_closes_the_old_pool(pool, monitor):
    pool(size=2)
    with db.cursor() as cur:
        cur.execute("SELECT CONNECTION_ID()")
        old = cur.fetchone()[0]
    pool(size=2)
    wait_until_gone(monitor, old)


# --- transactions ----------------------------------------------------------------------------

def test_cursor_commits_on_success_and_rolls_back_on_error(pool, monitor, table):
    pool(size=2)
    with pytest.raises(RuntimeError):
        with db.cursor() as cur:
            cur.execute(f"INSERT INTO {table} (v) VALUES ('lost')")
            raise RuntimeError("job failed after writing")
    with db.cursor() as cur:
        cur.execute(f"INSERT INTO {table} (v) VALUES ('kept')")
    with monitor.cursor() as cur:
        cur.execute(f"SELECT v FROM {table} ORDER BY id")
        assert cur.fetchall() == (("kept",),)


def test_uncommitted_work_on_a_returned_connection_is_rolled_back(pool, monitor, table):
    pool(size=1)
    with db.connection() as conn:
        with conn.cursor() as cur:
            cur.execute(f"INSERT INTO {table} (v) VALUES ('forgotten')")
    with db.connection() as conn:  # same connection, next job
        with conn.cursor() as cur:
            cur.execute(f"SELECT COUNT(*) FROM {table}")
            assert cur.fetchone() == (0,)
        conn.commit()
    with monitor.cursor() as cur:
        cur.execute(f"SELECT COUNT(*) FROM {table}")
        assert cur.fetchone() == (0,)


# --- examples/callbacks: the job the demo runs -----------------------------------------------

class Receiver:
    """A callback endpoint in this process: /ok waits for ``release``, /fail answers 500."""

    def __init__(self, expect: int) -> None:
        self.expect = expect
        self.arrived = gevent.event.Event()
        self.release = gevent.event.Event()
        self.bodies: List[bytes] = []
        self.content_types: List[str] = []

    def __call__(self, environ, start_response):
        self.bodies.append(environ["wsgi.input"].read())
        self.content_types.append(environ.get("CONTENT_TYPE", ""))
        if environ["PATH_INFO"] == "/fail":
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
            return [b"receiver broke"]
        if len(self.bodies) >= self.expect:
            self.arrived.set()
        self.release.wait(10)
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b'{"ok":true}']


@pytest.fixture
def jobs(monitor, unique, monkeypatch):
    from examples.callbacks import jobs as module

    name = f"rc_test_callbacks_{unique}"
    module.create_schema(monitor, name)
    monkeypatch.setattr(module, "TABLE", name)
    yield module
    db.close()
    with monitor.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {name}")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    app = Receiver(expect=3)
    server = WSGIServer(("127.0.0.1", 0), app, log=None)
    server.start()
    app.url = f"http://127.0.0.1:{server.server_port}"
    yield app
    app.release.set()
    server.stop(timeout=1)
    http.close()


def rows(monitor, table: str) -> List[Dict[str, Any]]:
    with monitor.cursor(pymysql.cursors.DictCursor) as cur:
        cur.execute(f"SELECT * FROM {table} ORDER BY id")
        return list(cur.fetchall())


def test_deliver_posts_payloads_without_holding_a_connection_during_http(pool, monitor, jobs, receiver):
    pool(size=1, timeout=5)  # one connection for three jobs: only possible if HTTP holds none
    ids = jobs.insert_callbacks(3, receiver.url + "/ok")
    assert len(ids) == 3
    greenlets = [gevent.spawn(jobs.deliver, callback_id) for callback_id in ids]
    assert receiver.arrived.wait(5), "all three callbacks should be in flight at once"
    in_use_during_http = db.stats()["in_use"]
    receiver.release.set()
    gevent.joinall(greenlets, raise_error=True)

    assert in_use_during_http == 0
    assert sorted(json.loads(body)["seq"] for body in receiver.bodies) == [0, 1, 2]
    assert receiver.content_types == ["application/json"] * 3
    stored = rows(monitor, jobs.TABLE)
    assert [r["id"] for r in stored] == ids
    for row in stored:
        assert row["status"] == "delivered" and row["attempts"] == 1
        assert row["last_error"] is None and row["delivered_at"] is not None

    jobs.deliver(ids[0])  # a retried job must not send a delivered callback again
    assert len(receiver.bodies) == 3


def test_deliver_records_a_500_then_raises(pool, monitor, jobs, receiver):
    pool(size=2)
    (callback_id,) = jobs.insert_callbacks(1, receiver.url + "/fail", payload={"order": 7})
    with pytest.raises(http.HTTPError) as info:
        jobs.deliver(callback_id)
    assert info.value.status == 500 and "/fail" in str(info.value)
    assert receiver.bodies == [b'{"order":7}']
    (row,) = rows(monitor, jobs.TABLE)
    assert row["status"] == "failed" and row["attempts"] == 1 and row["delivered_at"] is None
    assert "500" in row["last_error"] and "receiver broke" in row["last_error"]


def test_deliver_of_a_missing_row_says_so(pool, jobs):
    pool(size=1)
    with pytest.raises(jobs.CallbackNotFound, match="424242"):
        jobs.deliver(424242)


def _session_rollbacks(conn: Any) -> int:
    with conn.cursor() as cur:
        cur.execute("SHOW SESSION STATUS LIKE 'Com_rollback'")
        return int(cur.fetchone()[1])


def test_cursor_commits_and_skips_the_useless_rollback_connection_rolls_back(pool):
    """One connection (size=1), so each block gets the same MySQL session and its own
    Com_rollback counter: cursor() has just committed, so giving the connection back sends no
    ROLLBACK (issue 17); connection() without a commit is rolled back, so the next borrower
    never inherits its transaction."""
    pool(size=1)
    with db.cursor() as cur:
        cur.execute("SELECT 1")
    with db.connection() as conn:
        assert _session_rollbacks(conn) == 0
    with db.connection() as conn:  # the previous block did not commit: it was rolled back
        assert _session_rollbacks(conn) == 1


def test_connections_share_one_tls_context_and_open_outside_the_pool_lock(pool):
    """PyMySQL 1.2 builds a TLS context (19 ms of CPU) for every connection it opens; the pool's
    connections share one (issue 17). Opening them happens outside PooledDB's lock: 20
    connections opened at once by 20 greenlets all succeed, each on its own connection."""
    pool(size=20)
    seen, release = [], gevent.event.Event()

    def hold() -> None:
        with db.connection() as conn:
            seen.append(conn)
            if len(seen) == 20:
                release.set()
            release.wait(10)

    gevent.joinall([gevent.spawn(hold) for _ in range(20)], raise_error=True)
    assert len({id(conn) for conn in seen}) == 20
    contexts = {id(getattr(conn, "ctx", None)) for conn in seen}
    assert len(contexts) == 1
