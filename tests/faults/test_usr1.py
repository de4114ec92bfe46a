"""USR1 again and again while a worker is busy with a stream (issue 14, requirement 5): each
stops the jobs in flight, recorded as Ruby records the child its USR1 kills
(``Resque::DirtyExit``, "Child process received unhandled signal pid <pid> SIGKILL (signal 9)"),
and every slot keeps working: the worker drains the rest and exits 0, lost 0.
"""
from __future__ import annotations

import signal

import pytest

from tests.faults.harness import (
    FULL,
    assert_clean_exit,
    make_stream,
    push_stream,
    scaled,
    settle,
    wait_until,
)

FIBERS = 20


@pytest.mark.timeout(300 if FULL else 90)
def test_usr1_under_load(r, workers, report):
    n, signals = scaled(600, 10000), scaled(3, 10)
    stream = make_stream(n, "u", seed=15, seconds=lambda i, rng: round(rng.uniform(0.05, 0.4), 3))
    push_stream(r, stream)
    w = workers(["QUEUE=faults", f"FIBERS={FIBERS}", "INTERVAL=0"])
    w.wait_registered(r, FIBERS)
    for k in range(1, signals + 1):
        wait_until(lambda: r.scard("test:faults:started") >= k * n // (signals + 1), 120,
                   f"{k}/{signals + 1} of the stream started", w)
        w.signal(signal.SIGUSR1)
    assert w.wait(300) == 0, w.output[-3000:]
    assert_clean_exit(r)

    ledger = settle(r, r, [stream])
    killed = [e for e in ledger.entries if e["exception"] == "Resque::DirtyExit"]
    report(ledger.line(f"USR1 x{signals} under load", f"{len(killed)} jobs stopped as DirtyExit; "
                       "every slot kept working"))
    ledger.assert_sound()
    assert not ledger.rerun and not ledger.queued
    assert 0 < len(killed) <= signals * FIBERS
    assert {e["error"] for e in killed} == {
        f"Child process received unhandled signal pid {w.pid} SIGKILL (signal 9)"}
    assert ledger.failed == stream.deliberate | {e["payload"]["args"][0] for e in killed}
    raised = [e for e in ledger.entries if e["exception"] == "RuntimeError"]
    assert int(r.get("resque:stat:failed") or 0) == len(raised)  # DirtyExit is never counted
    assert int(r.get("resque:stat:processed")) == n
