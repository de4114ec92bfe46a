"""Issue 14, requirement 1: every Redis socket has a connect/TLS bound and a read bound, set in
REDIS_URL's query, and a client command that runs out of either fails in one line naming the
address and what timed out. The blackhole fault scenarios (tests/faults/test_blackhole.py)
prove the worker's side: a reserve trip that timed out is read back, nothing lost.
"""
from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest
import redis
from gevent.server import StreamServer

from resque_compat.cli.main import main
from resque_compat.client import Resque
from resque_compat.runtime.heartbeat import store_factory
from resque_compat.store import timeouts
from resque_compat.store.connection import connect
from tests.conftest import REDIS_HOST, REDIS_PORT, ROOT
from tests.test_cli import CLI_ENV, one_line_error
from tests.test_one_line_errors import COMMANDS, NEEDS


@pytest.fixture
def silent():
    """A TCP port that accepts and reads, and never answers: a Redis behind a dead link."""
    def swallow(sock, _address):
        while sock.recv(65536):
            pass

    server = StreamServer(("127.0.0.1", 0), swallow)
    server.start()
    yield server.server_port
    server.stop()


@pytest.fixture
def full_backlog():
    """A port whose listen queue is full, so the kernel drops new SYNs: connect never completes."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    yield port
    for sock in fillers + [listener]:
        sock.close()


def test_defaults_are_5s_to_connect_and_10s_per_reply_and_the_url_overrides_them():
    pool = connect(f"redis://{REDIS_HOST}:{REDIS_PORT}/0").connection_pool
    assert pool.connection_class is timeouts.BoundedConnection
    assert (pool.connection_kwargs["socket_connect_timeout"], pool.connection_kwargs["socket_timeout"]) == (5.0, 10.0)
    pool = connect("rediss://h:6380/0?socket_connect_timeout=1.5&socket_timeout=30").connection_pool
    assert pool.connection_class is timeouts.BoundedSSLConnection
    assert (pool.connection_kwargs["socket_connect_timeout"], pool.connection_kwargs["socket_timeout"]) == (1.5, 30.0)
    pool = connect("redis+sentinel://127.0.0.1:1/mymaster/0?socket_timeout=7").connection_pool
    assert pool.connection_class is timeouts.BoundedSentinelConnection
    assert (pool.connection_kwargs["socket_connect_timeout"], pool.connection_kwargs["socket_timeout"]) == (5.0, 7.0)
    # The heartbeat thread's own client and the clients of the commands come from connect() too.
    url = f"redis://{REDIS_HOST}:{REDIS_PORT}/0?socket_timeout=3"
    for client in (store_factory(url, "resque")().redis, Resque.from_url(url).redis):
        assert client.connection_pool.connection_class is timeouts.BoundedConnection
        assert client.connection_pool.connection_kwargs["socket_timeout"] == 3.0


@pytest.mark.parametrize("query", ["socket_timeout=0", "socket_connect_timeout=-1"])
def test_a_bound_that_is_not_above_zero_is_refused_with_the_fix(query):
    with pytest.raises(ValueError, match=r"must be a number of seconds above 0 .* e\.g\. \?socket_"):
        connect(f"redis://127.0.0.1:6379/0?{query}")


def test_each_bound_says_where_and_what_timed_out_and_is_counted(silent, full_backlog):
    before = dict(timeouts.TIMEOUTS)
    cases = [
        (f"redis://127.0.0.1:{silent}/0?socket_timeout=0.2", "read",
         f"no reply from redis://127.0.0.1:{silent}/0 within 0.2s (socket_timeout in the Redis URL)"),
        (f"rediss://127.0.0.1:{silent}/0?socket_connect_timeout=0.2", "tls",
         f"the TLS handshake with rediss://127.0.0.1:{silent}/0 timed out after 0.2s (socket_connect_timeout"),
        (f"redis://127.0.0.1:{full_backlog}/0?socket_connect_timeout=0.2", "connect",
         f"connecting to redis://127.0.0.1:{full_backlog}/0 timed out after 0.2s (socket_connect_timeout"),
    ]
    for url, what, message in cases:
        client = connect(url)
        with pytest.raises(redis.TimeoutError) as caught:
            client.ping()
        assert str(caught.value).startswith(message), (what, str(caught.value))
        assert timeouts.TIMEOUTS[what] == before[what] + 1, what
        client.connection_pool.disconnect()


def test_a_connection_closes_with_a_reset_so_no_timed_out_request_arrives_later(r):
    """SO_LINGER 0 (timeouts.py docstring): the kernel drops unsent bytes at close."""
    client = connect(f"redis://{REDIS_HOST}:{REDIS_PORT}/0")
    conn = client.connection_pool.get_connection()
    try:
        linger = conn._sock.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8)
        assert linger == timeouts._LINGER_RESET
    finally:
        client.connection_pool.release(conn)
        client.connection_pool.disconnect()


@pytest.mark.parametrize("scheme,query,what", [("redis", "socket_timeout=0.2", "no reply from"),
                                               ("rediss", "socket_connect_timeout=0.2", "TLS handshake")])
@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_fails_in_one_line_naming_the_address_and_the_bound(r, silent, monkeypatch, capsys,
                                                                           tmp_path, command, scheme, query, what):
    for name in CLI_ENV:
        monkeypatch.delenv(name, raising=False)
    pool_config = tmp_path / "resque-pool.yml"
    pool_config.write_text("q: 1\n")
    url = f"{scheme}://127.0.0.1:{silent}/0?{query}"
    needs = [str(pool_config) if w == "POOL_CONFIG" else w for w in NEEDS.get(command, [])]
    got = main([*command, *needs, "--redis", url])
    err = capsys.readouterr().err
    assert got == 1, f"resque-py {' '.join(command)} exited {got}:\n{err}"
    line = one_line_error(err)
    assert what in line and f"{scheme}://127.0.0.1:{silent}/0" in line, line


def test_rediss_to_a_plain_redis_port_prints_one_line_and_exits_1_after_the_5s_bound(r):
    """The issue's report, as a user runs it (default bounds): it hung for over 120 s."""
    url = f"rediss://{REDIS_HOST}:{REDIS_PORT}/0"
    argvs = [["info"], ["enqueue", "q", "X", "[]"], ["work", "QUEUE=q", "-r", "tests/jobs.py"]]
    env = {k: v for k, v in __import__("os").environ.items() if k not in CLI_ENV}
    started = time.monotonic()
    procs = [subprocess.Popen([sys.executable, "-m", "resque_compat", "--redis", url, *argv], cwd=ROOT,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for argv in argvs]
    for argv, proc in zip(argvs, procs):
        out, err = proc.communicate(timeout=60)  # a hang fails here
        assert proc.returncode == 1, (argv, err)
        line = one_line_error(err)
        assert f"the TLS handshake with {url} timed out after 5s" in line and "use redis://" in line, line
    print(f"rediss to a plain port: 3 commands failed in {time.monotonic() - started:.1f}s", file=sys.stderr)


def test_ping_names_the_url_when_the_error_does_not(r):
    with pytest.raises(Exception, match=r"cannot reach Redis at redis://127\.0\.0\.1:1/0: .*refused"):
        Resque.from_url("redis://127.0.0.1:1/0").ping()


def test_silent_sentinels_time_out_in_one_line_naming_each(r, silent, capsys, monkeypatch):
    for name in CLI_ENV:
        monkeypatch.delenv(name, raising=False)
    url = f"redis+sentinel://127.0.0.1:{silent},127.0.0.1:{silent}/mymaster/0?socket_connect_timeout=0.2"
    assert main(["info", "--redis", url]) == 1
    line = one_line_error(capsys.readouterr().err)
    assert line.startswith(f"resque-py: cannot reach Redis at {url}: No master found for 'mymaster' : "
                           f"Sentinel 127.0.0.1:{silent} - RedisTimeout('no reply from redis://127.0.0.1:{silent}/0 "
                           "within 0.2s"), line
    assert line.count("Sentinel 127.0.0.1") == 2 and len(line) < 600, line
