"""The resque-loner and resque-lock-timeout fixture apps (fixtures/ruby-plugins/loner_*, lock_*)
in Python: imported by the tests (to enqueue) and loaded by workers (``-r``).

A job that must still be running when the test looks blocks on ``BLPOP test:release:<token>``
after pushing ``test:started``, so the test waits on events, not on time.
"""
from __future__ import annotations

from resque_compat import job
from tests.delayed_jobs import control


def _hold(token: str) -> None:
    control().rpush("test:started", token)
    if control().blpop(f"test:release:{token}", timeout=20) is None:
        raise RuntimeError(f"the test never released {token}")


@job("LonerJob", queue="loner", unique=True)
def loner_job(*args):
    if args and args[0] == "slow":
        _hold("slow")


@job("NotUniqueJob", queue="loner")
def not_unique_job(*args):
    pass


@job("LonerTtlJob", queue="loner", unique=True, unique_ttl=300, unique_lock_after_execution_period=120)
def loner_ttl_job(*args):
    control().rpush("test:ran", "LonerTtlJob")


@job("LockedJob", queue="locked", lock_timeout=60)
def locked_job(number, mapping, nested, seconds):
    _hold("locked")


@job("LockedNoTimeoutJob", queue="locked", lock_timeout=0)
def locked_no_timeout_job(name, seconds):
    _hold("no-timeout")


@job("LonerLockJob", queue="locked", lock_timeout=30, lock_loner=True)
def loner_lock_job(a, b):
    _hold("loner-lock")
