"""Shared fixtures: the real Redis and MariaDB on loopback, never fakes.

The suite owns one Redis DB number (``RESQUE_TEST_REDIS_DB``, default 13) and runs FLUSHDB on it
before each test that asks for Redis; it never touches other DBs. A missing service fails the
test with a message saying how to start it.
"""
from __future__ import annotations

import os
import sys
import uuid

import pytest
import redis

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "fixtures", "ruby-resque-3.0")
REDIS_HOST = os.environ.get("RESQUE_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("RESQUE_TEST_REDIS_PORT", "6379"))
REDIS_DB = int(os.environ.get("RESQUE_TEST_REDIS_DB", "13"))
REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"
MYSQL_URL = os.environ.get("RESQUE_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")


def _require_redis() -> redis.Redis:
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB, decode_responses=True,
                         socket_connect_timeout=2)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis is not answering on {REDIS_URL} ({exc}); start it (bash .ci/run does) "
                    "or set RESQUE_TEST_REDIS_PORT", pytrace=False)
    return client


@pytest.fixture
def r() -> redis.Redis:
    """A client on the test DB, flushed before and after the test."""
    client = _require_redis()
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def redis_url(r) -> str:
    return REDIS_URL


@pytest.fixture
def resque(r):
    """A Resque client on the test DB (namespace ``resque``), disconnected after the test."""
    from resque_compat import Resque

    client = Resque.from_url(REDIS_URL)
    yield client
    client.redis.connection_pool.disconnect()


@pytest.fixture
def namespace() -> str:
    return "resque"


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def python() -> str:
    return sys.executable


# -- worker subprocesses ---------------------------------------------------------------------

import signal as _signal  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

JOBS_FILE = os.path.join(ROOT, "tests", "jobs.py")


def wait_for(predicate, timeout=10.0, what="condition", every=0.01):
    """Poll ``predicate`` until it returns something truthy; for waits across processes, where
    no event can be awaited. Returns that value; fails the test after ``timeout`` seconds."""
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


class WorkerProcess:
    """A real ``resque-py work`` process on the test DB (``python -m resque_compat``)."""

    def __init__(self, words, env=None, require=JOBS_FILE, extra_args=(), close_stdin=False):
        full_env = dict(os.environ)
        for name in ("QUEUE", "QUEUES", "FIBERS", "INTERVAL", "VERBOSE", "VVERBOSE"):
            full_env.pop(name, None)
        full_env.update({"REDIS_URL": REDIS_URL, "PYTHONUNBUFFERED": "1"})
        full_env.update(env or {})
        args = [sys.executable, "-m", "resque_compat", "work", *words, *extra_args]
        if require:
            args += ["-r", require]
        if close_stdin:  # as `<&-` does (issue 14: a Redis socket could then land on fd 0)
            args = ["/bin/sh", "-c", 'exec "$@" <&-', "sh", *args]
        self.proc = subprocess.Popen(args, env=full_env, cwd=ROOT, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.pid = self.proc.pid
        self.output = ""

    def wait_registered(self, r, count=1, timeout=15.0, namespace="resque"):
        """Wait until ``count`` ids with our pid are in ``workers``; returns them sorted."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            ids = sorted(w for w in r.smembers(namespace + ":workers") if f":{self.pid}:" in w)
            if len(ids) >= count:
                return ids
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited early ({self.proc.returncode}):\n{self.communicate()}")
            time.sleep(0.01)
        raise AssertionError(f"worker {self.pid} did not register {count} id(s) in {timeout}s")

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout=20.0):
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
            raise AssertionError(f"worker did not exit within {timeout}s; output:\n{out}")
        self.output += out or ""
        return self.proc.returncode

    def communicate(self):
        out, _ = self.proc.communicate()
        self.output += out or ""
        return self.output

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(_signal.SIGKILL)
            self.proc.communicate()


@pytest.fixture
def start_worker(r):
    """Factory: ``start_worker("QUEUE=critical", "FIBERS=3")``; every process is killed after."""
    procs = []

    def start(*words, env=None, require=JOBS_FILE, extra_args=()):
        proc = WorkerProcess(words, env=env, require=require, extra_args=extra_args)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.stop()


@pytest.fixture
def run_worker(r):
    """In-process: ``run_worker("QUEUE=critical", "INTERVAL=0")`` runs a Runner in this process
    until the queues are drained and returns its exit code and log (tests/inprocess.py)."""
    from tests.inprocess import run_worker as run_in_process

    def run(*words, env=None, jobs=("tests.jobs",)):
        return run_in_process(REDIS_URL, words, env, jobs)

    return run
