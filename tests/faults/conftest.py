"""Fixtures of the fault suite: the report line, and worker processes that never outlive a test."""
from __future__ import annotations

import pytest

from tests.conftest import WorkerProcess


@pytest.fixture
def report(capsys):
    """Print a scenario's figures even while pytest captures output (``make faults`` shows
    them; so does ``make test``)."""
    def emit(line: str) -> None:
        with capsys.disabled():
            print("\n[faults] " + line, flush=True)
    return emit


@pytest.fixture
def workers():
    """Factory: ``workers(words, env)`` starts ``resque-py work``; all are SIGKILLed after."""
    procs = []

    def start(words, env=None) -> WorkerProcess:
        proc = WorkerProcess(list(words), env=env)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.stop()
