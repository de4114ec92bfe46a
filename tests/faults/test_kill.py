"""``kill -9`` a worker again and again during a job stream (issue 5 items 1 and 7).

Each replacement worker starts on the same host and queues, so its start-up pruning (Ruby's
rules, WIRE §3.5) unregisters the dead worker's ids and deals with the jobs they held: pushed
back to the head of the queue (DIRTY_EXIT=requeue) or written as Resque::DirtyExit failures with
the full payload (DIRTY_EXIT=fail, Ruby's behaviour).
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

LOCK = "resque:pruning_dead_workers_in_progress"
FIBERS = 20


@pytest.mark.timeout(600 if FULL else 120)
@pytest.mark.parametrize("dirty_exit", ["requeue", "fail"])
def test_kill_9_during_a_stream(r, workers, report, dirty_exit):
    n, kills = scaled(1000, 10000), scaled(3, 20)
    stream = make_stream(n, "k", seed=9)
    push_stream(r, stream)
    words = ["QUEUE=faults", f"FIBERS={FIBERS}", "INTERVAL=0"]
    # Heartbeat 1 s: the pruning lock (TTL = heartbeat interval) frees up within a second.
    env = {"RESQUE_HEARTBEAT_INTERVAL": "1", "DIRTY_EXIT": dirty_exit}
    dead_pids = []
    for k in range(1, kills + 1):
        wait_until(lambda: not r.exists(LOCK), 5, "the previous pruning lock to expire")
        w = workers(words, env)
        w.wait_registered(r, FIBERS, timeout=30)
        registered = r.smembers("resque:workers")
        assert not [wid for wid in registered if wid.split(":")[1] in dead_pids], \
            "a replacement worker did not prune the dead worker's ids"
        target = k * n // (kills + 1)
        wait_until(lambda: r.scard("test:faults:started") >= target or w.proc.poll() is not None,
                   120, f"{target} jobs started")
        if w.proc.poll() is None:
            w.signal(signal.SIGKILL)
            w.wait()
            dead_pids.append(str(w.pid))
    wait_until(lambda: not r.exists(LOCK), 5, "the last pruning lock to expire")
    last = workers(words, env)
    assert last.wait(300) == 0, last.output[-3000:]
    assert_clean_exit(r)

    ledger = settle(r, r, [stream])
    report(ledger.line(f"kill -9 x{len(dead_pids)}, DIRTY_EXIT={dirty_exit}",
                       f"{ledger.completions} completions"))
    assert len(dead_pids) == kills
    ledger.assert_sound()
    assert not ledger.queued and stream.deliberate <= ledger.failed
    dirty = [e for e in ledger.entries if e["exception"].endswith("DirtyExit")]
    if dirty_exit == "requeue":
        assert not dirty and ledger.failed == stream.deliberate
        assert len(ledger.rerun) <= kills * FIBERS  # only jobs a killed worker held run twice
    else:
        assert not ledger.rerun  # nothing was pushed back, so nothing may run twice
        assert len(dirty) <= kills * FIBERS
        for entry in dirty:  # Ruby's shape, with the full payload (retriable from resque-web)
            assert entry["error"] == "Job still being processed" and entry["backtrace"] == []
            assert entry["payload"]["class"] == "FaultJob" and len(entry["payload"]["args"]) == 2
            assert entry["worker"].split(":")[1] in dead_pids and entry["queue"] == "faults"
    # Ruby counts raised jobs in stat:failed, never DirtyExit entries (WIRE §4.4).
    raised = [e for e in ledger.entries if e["exception"] == "RuntimeError"]
    assert int(r.get("resque:stat:failed") or 0) == len(raised)
