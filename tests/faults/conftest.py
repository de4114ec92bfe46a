"""Fixtures of the fault suite: the report line, and worker processes that never outlive a test."""
from __future__ import annotations

import socket

import pytest

from tests.conftest import WorkerProcess
from tests.faults.harness import PRIVATE_PORT
from tests.redis_servers import RedisServer


@pytest.fixture
def report(capsys):
    """Print a scenario's figures even while pytest captures output (``make faults`` shows
    them; so does ``make test``)."""
    def emit(line: str) -> None:
        with capsys.disabled():
            print("\n[faults] " + line, flush=True)
    return emit


@pytest.fixture
def workers():
    """Factory: ``workers(words, env)`` starts ``resque-py work``; all are SIGKILLed after."""
    procs = []

    def start(words, env=None, **options) -> WorkerProcess:
        proc = WorkerProcess(list(words), env=env, **options)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.stop()


@pytest.fixture
def private_redis(tmp_path):
    """Factory: ``private_redis(name, args)`` starts (or, with the same name, restarts on the
    same port and directory) a redis-server on :data:`PRIVATE_PORT`; all are SIGKILLed after."""
    servers = []

    def start(name: str, args=()) -> RedisServer:
        with socket.socket() as probe:  # never mistake someone else's server for ours
            assert probe.connect_ex(("127.0.0.1", PRIVATE_PORT)) != 0, \
                f"port {PRIVATE_PORT} is already in use; stop whatever listens there"
        server = RedisServer(str(tmp_path), name, args, port=PRIVATE_PORT)
        servers.append(server)
        server.wait_ready(server.client)
        return server

    start.started = servers
    yield start
    for server in servers:
        server.kill()
