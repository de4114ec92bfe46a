"""FAILURE_CALLBACK targets for FAILURE_BACKEND=multiple tests (imported by worker processes).

Kept apart from tests/jobs.py, which workers load with -r under another module name: importing
it again by its dotted name would register every @job twice.
"""
from __future__ import annotations

import json
import os

import redis

_client = None


def _control() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/13"))
    return _client


def record(failure: dict) -> None:
    """Report each failure where the test can read it, with whether it was already in the
    ``failed`` list when we were called (the callback must come after the write)."""
    recorded = [json.loads(e) for e in _control().lrange("resque:failed", 0, -1)]
    _control().rpush("test:callback", json.dumps(
        {"failure": failure, "recorded_when_called": failure in recorded}, ensure_ascii=False))


def explode(failure: dict) -> None:
    """A reporter that breaks: the worker must log it and keep working."""
    _control().rpush("test:callback", "exploding for " + str(failure.get("payload")))
    raise ConnectionError("the error tracker is down")


not_callable = 42
