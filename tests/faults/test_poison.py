"""A poison job under DIRTY_EXIT=requeue (issue 14, requirement 4): a job that kills its worker
process (``os._exit``, ``kill -9`` of itself: a segfault, the OOM killer) is requeued after each
crash until it has crashed DIRTY_EXIT_MAX workers within DIRTY_EXIT_WINDOW; that crash makes it
a ``Resque::DirtyExit`` failure saying so, and the pool goes on with the rest of the stream.
"""
from __future__ import annotations

import json

import pytest

from tests.conftest import JOBS_FILE
from tests.faults.harness import FULL, QUEUE, make_stream, push_stream, scaled, settle, wait_until
from tests.faults.pools import work_off_then_quit
from tests.test_supervisor import start_pool  # noqa: F401  the fixture

CRASHES = "test:crash:runs"


@pytest.mark.timeout(300 if FULL else 120)
@pytest.mark.parametrize("how", ["exit", "kill"])
def test_a_job_that_kills_its_worker_is_failed_at_the_cap(r, start_pool, report, how):
    n, cap = scaled(200, 2000), 3
    stream = make_stream(n, "p", seed=4, fail_every=0)
    poison = json.dumps({"class": "CrashJob", "args": ["poison", how]}, separators=(",", ":"))
    r.rpush("resque:queue:" + QUEUE, poison)  # first in line, ahead of the stream
    push_stream(r, stream)
    pool = start_pool("work", f"QUEUE={QUEUE}", "FIBERS=4", "PROCESSES=2", "-r", JOBS_FILE,
                      env={"DIRTY_EXIT": "requeue", "DIRTY_EXIT_MAX": str(cap)})

    def poison_failed():
        return [e for e in map(json.loads, r.lrange("resque:failed", 0, -1))
                if e["payload"]["class"] == "CrashJob"]
    # Back-off between crash restarts: 0.5 + 1 s, then the cap.
    [entry] = wait_until(poison_failed, 60, "the poison job to be failed at the cap")
    work_off_then_quit(r, pool)

    ledger = settle(r, r, [stream])
    runs = int(r.hget(CRASHES, "poison"))
    bystanders = [e for e in ledger.entries if e["payload"]["class"] == "FaultJob"]
    report(ledger.line(f"poison job ({how}) beside a {n}-job stream, DIRTY_EXIT=requeue, "
                       f"DIRTY_EXIT_MAX={cap}", f"the poison job ran {runs} times, then failed; "
                       f"{len(bystanders)} bystanders failed with it"))
    assert runs == cap  # requeued cap-1 times, never again after the cap-th crash
    assert entry["exception"] == "Resque::DirtyExit" and entry["backtrace"] == []
    assert entry["error"] == (f"Job crashed its worker {cap} times within 72h "
                              f"(DIRTY_EXIT_MAX={cap}); not requeued again")
    assert entry["payload"] == {"class": "CrashJob", "args": ["poison", how]} and entry["queue"] == QUEUE
    assert len(poison_failed()) == 1
    assert not r.hexists("resque:dirty_exit_counts", poison)  # a retry from resque-web starts afresh
    ledger.assert_sound()
    assert not ledger.queued
    # Which job killed a process nobody can tell, so the jobs the other slots of the crashed
    # process held count a crash each too; requeued together at the head, they may reach the
    # cap with the poison job. Each is then a retriable DirtyExit saying so, never lost.
    assert all(e["error"] == entry["error"] for e in bystanders)
    assert len(bystanders) <= 3 * (4 - 1) and ledger.ok | ledger.failed == set(stream.ids)
