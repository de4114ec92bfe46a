"""Job doubles for the resque-status and resque-pause tests (``-r tests/plugin_jobs.py``).

``StatusJob`` is the Python twin of the job class the fixtures' Ruby workers ran
(fixtures/ruby-plugins, ``app_status.rb``): ``at(i, total, "At i of total")`` per step, and
``fail_at`` raises at that step. Where the Ruby job slept ``sleep`` seconds after a step, this one
waits for the test to push ``test:go:<uuid>``, so the test can look at the working state and
request a kill without sleeping.
"""
from __future__ import annotations

import os

from resque_compat import job, status
from tests.delayed_jobs import control

if os.environ.get("TEST_STATUS_EXPIRE_IN"):
    status.configure(expire_in=int(os.environ["TEST_STATUS_EXPIRE_IN"]))


@job("StatusJob", status=True)
def status_job(options):
    total = options.get("total", 1)
    for step in range(1, total + 1):
        if options.get("fail_at") == step:
            raise RuntimeError('boom at step 2 ✗ "quoted"')
        status.at(step, total, f"At {step} of {total}")
        if options.get("sleep"):
            if control().blpop(f"test:go:{status.uuid()}", timeout=20) is None:
                raise TimeoutError("the test never said go")


@job("SetsItsOwnStatusJob", status=True)
def sets_its_own_status(options):
    status.tick("thinking")
    status.set(rows=options["rows"])
    status.completed(url="https://example.test/x.csv")


@job("PausableJob", queue="pausable", pause=True, pause_check_interval=0.2)
def pausable_job(name, *options):
    control().rpush("test:ran", f"PausableJob:{name}")


@job("MidwayJob", queue="midway", pause=True, pause_check_interval=0.2)
class MidwayJob:
    """Pauses its own queue once, after it was reserved and before the plugin's check (Ruby's
    hooks run in name order, and the plugin's come after the job's own here too): an operator
    pausing the queue at that moment (fixtures/ruby-plugins/pause_05)."""

    @staticmethod
    def before_perform_0_pause_own_queue(*args):
        if control().set("test:paused-once", "1", nx=True):
            control().set("resque:pause:queue:midway", "true")

    @staticmethod
    def perform(name, *rest):
        control().rpush("test:ran", f"MidwayJob:{name}")


@job("OtherJob", queue="other")
def other_job(name):
    control().rpush("test:ran", f"OtherJob:{name}")
