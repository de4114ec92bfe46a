"""Counters for a shared pool (MySQL connections, HTTP requests) that cost a few integer updates.

Every greenlet of a worker process updates the same :class:`PoolStats`. Under gevent only one
greenlet runs at a time and none of these methods switches, so plain attribute updates are
exact without a lock; adding one would cost more than the counting. Under real threads the
numbers are approximate, never wrong enough to matter for a dashboard.
"""
from __future__ import annotations

from typing import Any, Dict


class PoolStats:
    """How busy one bounded pool is, and how long callers waited for it.

    ``size`` is the bound (0 = unbounded or unknown); ``in_use`` and ``waiting`` are now;
    ``max_in_use``, ``checkouts``, ``wait_seconds`` and ``max_wait_seconds`` are since the pool
    was (re)configured; ``timeouts`` counts callers that gave up waiting and ``errors`` uses that
    ended in an error the pool owner chose to count.
    """

    __slots__ = ("size", "in_use", "waiting", "max_in_use", "checkouts", "wait_seconds",
                 "max_wait_seconds", "timeouts", "errors")

    def __init__(self, size: int = 0) -> None:
        self.size = size
        self.in_use = 0
        self.waiting = 0
        self.max_in_use = 0
        self.checkouts = 0
        self.wait_seconds = 0.0
        self.max_wait_seconds = 0.0
        self.timeouts = 0
        self.errors = 0

    def acquired(self) -> None:
        """One more user holds a slot."""
        self.checkouts += 1
        in_use = self.in_use + 1
        self.in_use = in_use
        if in_use > self.max_in_use:
            self.max_in_use = in_use

    def released(self) -> None:
        """A user gave its slot back."""
        self.in_use -= 1

    def waited(self, seconds: float) -> None:
        """A caller had to wait ``seconds`` for a slot (whether or not it then got one)."""
        self.wait_seconds += seconds
        if seconds > self.max_wait_seconds:
            self.max_wait_seconds = seconds

    def snapshot(self) -> Dict[str, Any]:
        """A copy of every counter, safe to log or serialise as JSON."""
        return {
            "size": self.size,
            "in_use": self.in_use,
            "waiting": self.waiting,
            "max_in_use": self.max_in_use,
            "checkouts": self.checkouts,
            "wait_seconds": round(self.wait_seconds, 6),
            "max_wait_seconds": round(self.max_wait_seconds, 6),
            "timeouts": self.timeouts,
            "errors": self.errors,
        }

    def __repr__(self) -> str:
        return f"PoolStats({self.snapshot()!r})"
