"""Resque's job hooks around ``perform`` (WIRE §6.5).

For now a job is performed directly; hook support (before/around/after_perform, on_failure,
enqueue/dequeue hooks) plugs in here so the worker's per-job flow does not change.
"""
from __future__ import annotations

from typing import Any, Sequence

from .registry import JobSpec


def perform(spec: JobSpec, args: Sequence[Any]) -> Any:
    """Run one job: ``klass.perform(*args)``."""
    return spec.perform(*args)
