"""Job bodies for bench/soak.py: no-ops, short sleeps, and failures."""
from __future__ import annotations

import gevent

from resque_compat.registry import job


@job("Soak::Noop")
def noop(n: int, filler: str) -> None:
    pass


@job("Soak::Sleep")
def sleep(n: int, filler: str) -> None:
    gevent.sleep(0.05)


@job("Soak::Fail")
def fail(n: int, filler: str) -> None:
    raise RuntimeError(f"soak failure {n}")
