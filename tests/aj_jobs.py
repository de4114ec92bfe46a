"""Python jobs that Rails' ActiveJob payloads (fixture 08) name; loaded with ``-r tests/aj_jobs.py``.

Each reports what it received as a pickle on the ``test:aj`` list (outside the Resque namespace),
so a test compares real Python values, datetimes and Decimals included.
"""
from __future__ import annotations

import pickle

from resque_compat import activejob, hooks, job
from tests.jobs import control


def report(kind, *args, **kwargs):
    meta = activejob.current()
    record = {"kind": kind, "args": args, "kwargs": kwargs, "meta": meta}
    control().rpush("test:aj", pickle.dumps(record).hex())  # hex: tests read with decode_responses


@job("AjJob")
def aj_job(*args, **kwargs):
    report("AjJob", *args, **kwargs)


@job("AjFailJob")
def aj_fail_job(*args, **kwargs):
    raise RuntimeError(f"AjFailJob failed for {args[0]!r}")


@job("Mailers::AjHooked")
class AjHooked:
    """A class target: its Resque hooks must run when Rails' JobWrapper dispatches to it."""

    @classmethod
    def before_perform_audit(cls, *args, **kwargs):
        control().rpush("test:aj_hooks", "before " + repr(args) + repr(kwargs))

    @staticmethod
    def perform(user, *, greeting):
        control().rpush("test:aj_hooks", f"perform {user} {greeting}")


@hooks.after_perform("Mailers::AjHooked")
def after_hooked(user, *, greeting):
    control().rpush("test:aj_hooks", f"after {user}")


@job("AjSlowJob", timeout=0.2)
def aj_slow_job(*args, **kwargs):
    import gevent

    gevent.sleep(10)
