"""Job doubles for tests (``fixtures/`` holds Ruby data, so these live here).

The worker subprocesses load this file with ``-r tests/jobs.py``. Jobs that tests wait on report
through Redis lists (``test:*`` keys outside the Resque namespace), so a test can BLPOP an event
instead of sleeping.
"""
from __future__ import annotations

import os
import signal

import gevent
import redis

from resque_compat import job

_client = None


def control() -> redis.Redis:
    global _client
    if _client is None:
        # TEST_CONTROL_REDIS_URL: a Redis the test does not restart (tests/faults restart the
        # worker's own Redis, and a job's record of having run must survive that).
        url = os.environ.get("TEST_CONTROL_REDIS_URL") or os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/13")
        _client = redis.Redis.from_url(url)
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


# -- issue 5: limits, hostile input, faults -------------------------------------------------------

@job("TimeLimitedJob", queue="critical", timeout=0.3)
def time_limited_job(seconds):
    """Sleeps ``seconds`` under its own 0.3 s limit (``@job(timeout=...)``)."""
    gevent.sleep(seconds)
    control().rpush("test:finished", repr(seconds))


_hoard = []


@job("MemoryJob", queue="critical")
def memory_job(megabytes, seconds):
    """Keep ``megabytes`` of touched memory for good, then run ``seconds`` more (MAX_MEMORY)."""
    _hoard.append(b"\x01" * (int(megabytes) * 1024 * 1024))  # written, so resident
    control().rpush("test:started", "memory")
    gevent.sleep(seconds)
    control().rpush("test:finished", "memory")


@job("TallyJob", queue="hostile")
def tally_job(tag, *values):
    """Count runs per tag; ``values`` are whatever hostile arguments the test generated."""
    control().hincrby("test:tally", str(tag), 1)


@job("FaultJob", queue="faults")
def fault_job(job_id, seconds=0.0):
    """For tests/faults: say it started (``test:faults:started``), run ``seconds`` (a negative
    value fails on purpose), then record completion in one MULTI on the control Redis: member of
    ``test:faults:done``, a run counter (re-runs) and ``"<id> <pid>"`` in ``test:faults:log``."""
    control().sadd("test:faults:started", job_id)
    if seconds < 0:
        raise RuntimeError(f"deliberate failure of {job_id}")
    if seconds:
        gevent.sleep(seconds)
    pipe = control().pipeline(transaction=True)
    pipe.sadd("test:faults:done", job_id)
    pipe.hincrby("test:faults:runs", job_id, 1)
    pipe.rpush("test:faults:log", f"{job_id} {os.getpid()}")
    pipe.execute()


@job("CrashJob", queue="faults")
def crash_job(job_id, how):
    """For the poison-job cap (issue 14): count the run, then kill the whole worker process as a
    segfaulting C extension or the OOM killer would (``os._exit``) or ``kill -9`` itself."""
    control().hincrby("test:crash:runs", job_id, 1)
    if how == "exit":
        os._exit(1)
    os.kill(os.getpid(), signal.SIGKILL)


@job("DbJob", queue="critical")
def db_job(table, value):
    """Insert one row through the shared MySQL pool (resque_compat.db)."""
    from resque_compat import db

    with db.cursor() as cur:
        cur.execute(f"INSERT INTO {table} (v) VALUES (%s)", (value,))


@job("PidJob", queue="pool")
def pid_job(tag, seconds=0.0):
    """Record ``"<tag> <pid>"`` in ``test:pids`` after ``seconds``: which process ran it (pools)."""
    if seconds:
        gevent.sleep(seconds)
    control().rpush("test:pids", f"{tag} {os.getpid()}")
