"""Private ``redis-server`` processes on loopback for scale-out tests: TLS, ACL, replicas and
Sentinels. Each runs in the foreground as the test's child and is SIGKILLed by :meth:`stop`;
nothing is written outside the test's tmp directory and no shared Redis is touched.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from typing import List, Optional, Sequence

import pytest
import redis

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """One ``redis-server`` (or Sentinel) child process on 127.0.0.1."""

    def __init__(self, tmp: str, name: str, args: Sequence[str] = (), port: Optional[int] = None,
                 config: Optional[str] = None, sentinel: bool = False) -> None:
        if not os.path.exists(REDIS_SERVER):
            pytest.fail("redis-server is not installed (apt-get install redis-server); the "
                        "scale-out tests start their own servers", pytrace=False)
        self.port = port or free_port()
        self.name = name
        self.dir = os.path.join(tmp, name)
        os.makedirs(self.dir, exist_ok=True)
        self.log_path = os.path.join(self.dir, "server.log")
        argv: List[str] = [REDIS_SERVER]
        if config is not None:
            conf = os.path.join(self.dir, "server.conf")  # Sentinel rewrites its file: keep it private
            with open(conf, "w") as fh:
                fh.write(config)
            argv.append(conf)
        argv += ["--bind", "127.0.0.1", "--dir", self.dir, "--logfile", self.log_path]
        if not sentinel:
            argv += ["--save", "", "--appendonly", "no"]
        if not any(a == "--port" for a in args) and "port " not in (config or ""):
            argv += ["--port", str(self.port)]
        argv += list(args)
        if sentinel:
            argv.append("--sentinel")
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def wait_ready(self, client_factory, timeout: float = 10.0) -> None:
        """Wait until ``client_factory()`` answers PING (the client knows TLS/ACL details)."""
        deadline = time.time() + timeout
        last: Optional[BaseException] = None
        while time.time() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"{self.name} exited ({self.proc.returncode}): {self.log()}", pytrace=False)
            try:
                client = client_factory()
                client.ping()
                client.close()
                return
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                last = exc
                time.sleep(0.02)
        pytest.fail(f"{self.name} did not answer on port {self.port} in {timeout}s ({last}): "
                    f"{self.log()}", pytrace=False)

    def client(self, **kwargs) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5, decode_responses=True,
                           **kwargs)

    def log(self) -> str:
        try:
            with open(self.log_path) as fh:
                return fh.read()[-2000:]
        except OSError:
            return "(no log)"

    def kill(self) -> None:
        """SIGKILL: no shutdown save, no goodbye to replicas or Sentinels (a crashed host)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()

    stop = kill


@pytest.fixture
def redis_servers(tmp_path):
    """Factory: ``redis_servers("name", args)``; every server is killed after the test."""
    servers: List[RedisServer] = []

    def start(name: str, args: Sequence[str] = (), **kwargs) -> RedisServer:
        server = RedisServer(str(tmp_path), name, args, **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.kill()
