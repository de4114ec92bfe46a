"""Jobs with Resque hooks, and worker hooks, for real worker runs (``-r tests/hook_jobs.py``).

Every hook appends a line to the ``test:events`` list (outside the Resque namespace), so a test
reads back the exact order in which a worker ran them.
"""
from __future__ import annotations

import os

import gevent

from resque_compat import DontPerform, hooks, job
from tests.jobs import control


def event(text):
    control().rpush("test:events", text)


@job("Hooked::Job", queue="hooks")
class HookedJob:
    @staticmethod
    def before_perform_b(n):
        event(f"before_perform_b {n}")

    @staticmethod
    def before_perform(n):
        event(f"before_perform {n}")

    @staticmethod
    def around_perform(n):
        event(f"around enter {n}")
        try:
            yield
        finally:
            event(f"around exit {n}")

    @staticmethod
    def after_perform(n):
        event(f"after_perform {n}")

    @staticmethod
    def on_failure(exc, n):
        event(f"on_failure {n} {type(exc).__name__}: {exc}")

    @staticmethod
    def perform(n):
        event(f"perform {n}")
        gevent.sleep(float(n) / 10)  # overlapping jobs: queue_empty must wait for all of them
        if n == 0:
            raise ValueError("zero")


@job("Hooked::Skip", queue="hooks")
def skip_job(reason):
    event("skip_job performed")


@hooks.before_perform(skip_job)
def refuse(reason):
    event(f"refuse {reason}")
    raise DontPerform(reason)


@job("Hooked::BadFailureHook", queue="hooks")
def bad_failure_hook_job():
    raise KeyError("original")


@hooks.on_failure("Hooked::BadFailureHook")
def broken_failure_hook(exc):
    raise ValueError("the hook broke")


def _worker_event(name):
    def record(runner):
        pids = [wid.split(b":")[1] for wid in control().smembers("resque:workers")]
        registered = str(os.getpid()).encode() in pids
        event(f"{name} registered={registered} slots={len(runner.ids)}")
    return record


#: Every worker hook, recording itself; an in-process test removes them when it is done, so
#: later runs in the same test process do not report to ``test:events``.
WORKER_EVENTS = {name: hooks.worker_hook(name)(_worker_event(name)) for name in hooks.WORKER_HOOKS}
