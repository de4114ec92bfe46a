"""QUIT, TERM and a duplicate TERM while a worker is busy with a stream (issue 5 item 7).

QUIT lets every in-flight job finish; TERM gives them RESQUE_TERM_TIMEOUT, then stops the rest
and records each as a Resque::TermException failure with its full payload; a second TERM does
not shorten the grace period. Either way the process unregisters and exits 0, and a second
worker drains what was still queued: no job is lost or handled twice.
"""
from __future__ import annotations

import json
import signal
import time

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
TERM_TIMEOUT = 1.0
LONG = FIBERS // 2  # long jobs just before the signal point, so they are in flight when it lands


@pytest.mark.timeout(300 if FULL else 60)
@pytest.mark.parametrize("signals", [["SIGQUIT"], ["SIGTERM"], ["SIGTERM", "SIGTERM"]],
                         ids=["QUIT", "TERM", "TERM-twice"])
def test_signal_under_load(r, workers, report, signals):
    quit_ = signals == ["SIGQUIT"]
    long_seconds = 1.5 if quit_ else 60.0  # QUIT waits for them; TERM must cut them short
    # Enough left after the signal point that a loaded machine cannot finish the stream before
    # the signal lands: 750 jobs of 5-40 ms on the 10 free slots are about 1.7 s of work.
    n = scaled(1000, 10000)
    signal_at = n // 4  # jobs started when the signal is sent
    stream = make_stream(n, "s", seed=5, seconds=lambda i, rng: long_seconds if signal_at - LONG <= i < signal_at
                         else round(rng.uniform(0.005, 0.04), 4))
    long_ids = set(stream.ids[signal_at - LONG:signal_at]) - stream.deliberate
    push_stream(r, stream)
    words = ["QUEUE=faults", f"FIBERS={FIBERS}", f"RESQUE_TERM_TIMEOUT={TERM_TIMEOUT}"]
    w = workers(words)
    w.wait_registered(r, FIBERS)
    wait_until(lambda: r.scard("test:faults:started") >= signal_at, 60, "a quarter of the stream", w)
    sent = time.time()
    for n, name in enumerate(signals):
        if n:
            time.sleep(0.3)
        w.signal(getattr(signal, name))
    assert w.wait(30) == 0, w.output[-3000:]
    took = time.time() - sent
    assert_clean_exit(r)
    taken = r.smembers("test:faults:started")
    ended = r.smembers("test:faults:done") | {e["payload"]["args"][0] for e in _entries(r)}
    assert taken <= ended, f"jobs left unfinished by {signals}: {sorted(taken - ended)[:10]}"
    if quit_:
        assert long_ids <= r.smembers("test:faults:done")  # QUIT waited for all of them
    else:
        assert TERM_TIMEOUT - 0.1 <= took < TERM_TIMEOUT + 5  # the second TERM did not cut it short
        stopped = {e["payload"]["args"][0]: e for e in _entries(r) if e["exception"] == "Resque::TermException"}
        assert set(stopped) == long_ids
        for entry in stopped.values():
            assert entry["payload"] == {"class": "FaultJob", "args": [entry["payload"]["args"][0], long_seconds]}
    left = r.llen("resque:queue:faults")
    assert left > 0, "the stream ended before the signal; make it longer"

    drain = workers(["QUEUE=faults", f"FIBERS={FIBERS}", "INTERVAL=0"])
    assert drain.wait(120) == 0, drain.output[-3000:]
    assert_clean_exit(r)
    ledger = settle(r, r, [stream])
    report(ledger.line(f"{'+'.join(s[3:] for s in signals)} under load",
                       f"exit 0 after {took:.1f}s; {left} left queued for the next worker"))
    ledger.assert_sound()
    assert not ledger.rerun
    assert ledger.failed == stream.deliberate | (set() if quit_ else long_ids)


def _entries(r):
    return [json.loads(e) for e in r.lrange("resque:failed", 0, -1)]
