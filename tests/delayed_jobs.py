"""Job doubles for the scheduler and retry tests (``-r tests/delayed_jobs.py``).

Each job reports through Redis lists outside the Resque namespace (``test:*``), so a test can
wait on a Redis condition instead of sleeping.
"""
from __future__ import annotations

import os

import redis

from resque_compat import job

_client = None


def control() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/13"),
                                       decode_responses=True)
    return _client


def _run(name: str, token: str) -> int:
    """Record one run of ``name`` for ``token``; returns which run this is (1, 2, ...)."""
    control().rpush("test:ran", f"{name}:{token}")
    return int(control().incr(f"test:runs:{token}"))


@job("DelayedJob", queue="critical")
def delayed_job(*args):
    control().rpush("test:ran", "DelayedJob:" + repr(list(args)))


@job("FlakyJob", queue="critical", retry_limit=3)
def flaky_job(token, failures):
    """Fails its first ``failures`` runs, then succeeds."""
    if _run("FlakyJob", token) <= failures:
        raise TimeoutError(f"flaky run for {token}")


@job("AlwaysFailsJob", queue="critical", retry_limit=2)
def always_fails_job(token):
    _run("AlwaysFailsJob", token)
    raise RuntimeError("always fails")


@job("GiveUpJob", queue="critical", retry_limit=5, give_up_on=(ValueError,))
def give_up_job(token, error):
    _run("GiveUpJob", token)
    raise {"value": ValueError, "runtime": RuntimeError}[error](f"{error} error")


@job("PickyJob", queue="critical", retry_limit=5, retry_on=(TimeoutError,))
def picky_job(token, error):
    _run("PickyJob", token)
    raise {"timeout": TimeoutError, "runtime": RuntimeError}[error](f"{error} error")


@job("BackoffJob", queue="critical", backoff=[1])
def backoff_job(token):
    """Fails once; the retry is delayed 1 s through resque-scheduler's keys."""
    if _run("BackoffJob", token) == 1:
        raise ConnectionError("try again later")


@job("AjFlakyJob", retry_limit=3)
def aj_flaky_job(token):
    """Retry options on a job Rails enqueues: ActiveJob's own retry_on applies, not ours."""
    _run("AjFlakyJob", token)
    raise RuntimeError("fails under ActiveJob")


@job("BadRetryJob", queue="critical", retry_limit="3")
def bad_retry_job(token):
    _run("BadRetryJob", token)
