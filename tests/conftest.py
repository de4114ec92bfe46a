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
def namespace() -> str:
    return "resque"


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def python() -> str:
    return sys.executable
