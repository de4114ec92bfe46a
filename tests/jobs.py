"""Job doubles for tests (``fixtures/`` holds Ruby data, so these live here).

The worker subprocesses load this file with ``-r tests/jobs.py``. Jobs that tests wait on report
through Redis lists (``test:*`` keys outside the Resque namespace), so a test can BLPOP an event
instead of sleeping.
"""
from __future__ import annotations

import os

import gevent
import redis

from resque_compat import job

_client = None


def control() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/13"))
    return _client


@job("OkJob", queue="critical")
def ok_job(*args):
    control().rpush("test:ran", repr(args))


@job("FailJob", queue="critical")
def fail_job(*args):
    raise RuntimeError("Bööm – ünïcödé failure ✗ \"quoted\" 日本語 😀")


@job("SleepJob", queue="critical")
def sleep_job(seconds, *rest):
    control().rpush("test:started", repr([seconds, *rest]))
    gevent.sleep(seconds)
    control().rpush("test:finished", repr([seconds, *rest]))


@job("WaitJob", queue="critical")
def wait_job(token):
    """Start, say so, then block until the test pushes to ``test:release:<token>``."""
    control().rpush("test:started", token)
    control().blpop(["test:release:" + token], timeout=0)
    control().rpush("test:finished", token)


@job("Jobs::Nested", queue="low")
class Nested:
    @staticmethod
    def perform(*args):
        control().rpush("test:ran", "nested " + repr(args))


@job("CpuJob", queue="critical")
def cpu_job(seconds):
    """Hog the hub (no gevent switch) for ``seconds``: heartbeats must still flow."""
    import time

    control().rpush("test:started", "cpu")
    end = time.time() + seconds
    while time.time() < end:
        pass
    control().rpush("test:finished", "cpu")


@job("OrderJob")
def order_job(queue, n):
    control().rpush("test:order", f"{queue}/{n}")


@job("StampJob", queue="critical")
def stamp_job(enqueued_at):
    """Report pickup latency: enqueue time (from the test) to the moment the job started."""
    import time

    control().rpush("test:latency", repr(time.time() - float(enqueued_at)))


@job("NoopJob", queue="critical")
def noop_job(*args):
    pass
