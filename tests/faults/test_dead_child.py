"""``kill -9`` of one pool child (issue 14, requirement 3): the supervisor knows that pid is
dead, so it unregisters the child's ids at once, before the replacement starts, with Ruby's
unregister and DIRTY_EXIT for the jobs they held, and without waiting for Ruby's pruning lock
(held here by a "sibling" for a minute, which used to leave the dead ids for 60 s).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import JOBS_FILE, REDIS_URL, ROOT
from tests.faults.harness import (
    FULL,
    QUEUE,
    job_id_of,
    make_stream,
    push_stream,
    scaled,
    settle,
    wait_until,
)
from tests.faults.pools import work_off_then_quit
from tests.test_supervisor import start_pool  # noqa: F401  the fixture

LOCK = "resque:pruning_dead_workers_in_progress"
FIBERS = 3
#: The issue's bound: no id of the dead pid in resque-web's list within 2 s of the kill.
GONE_BOUND = 2.0


def ids_of_pid(r, pid):
    """The ids of ``pid`` in ``workers`` or ``workers:heartbeat``."""
    return sorted({w for w in r.smembers("resque:workers") | set(r.hkeys("resque:workers:heartbeat"))
                   if w.split(":")[1] == str(pid)})


def workers_command_output():
    env = dict(os.environ, REDIS_URL=REDIS_URL)
    return subprocess.run([sys.executable, "-m", "resque_compat", "workers"], env=env, cwd=ROOT,
                          capture_output=True, text=True, check=True).stdout


@pytest.mark.timeout(600 if FULL else 120)
@pytest.mark.parametrize("dirty_exit", ["requeue", "fail"])
def test_a_dead_childs_ids_go_at_once_and_its_jobs_once(r, start_pool, report, dirty_exit):  # noqa: F811
    n, kills = scaled(300, 3000), scaled(2, 10)
    stream = make_stream(n, "dc", seed=14, seconds=lambda i, rng: round(rng.uniform(0.05, 0.3), 3))
    push_stream(r, stream)
    pool = start_pool("work", f"QUEUE={QUEUE}", f"FIBERS={FIBERS}", "PROCESSES=2", "-r", JOBS_FILE,
                      env={"DIRTY_EXIT": dirty_exit})
    gone_after, held_ids, victims = [], set(), []
    for _ in range(kills):
        kids = pool.wait_children(lambda p: len(p) == 2, timeout=30)
        wait_until(lambda: all(len([w for w in ids_of_pid(r, k) if w in r.smembers("resque:workers")])
                               == FIBERS for k in kids), 30, "both children registered")
        wait_until(lambda: any(r.exists(f"resque:worker:{w}") for w in ids_of_pid(r, kids[0])),
                   30, "the child to hold a job")
        victim = kids[0]
        r.set(LOCK, "vm:1:sibling", ex=60)  # a sibling won Ruby's pruning lock a moment ago
        held = [json.loads(v) for v in r.mget([f"resque:worker:{w}" for w in ids_of_pid(r, victim)]) if v]
        held_ids |= {job_id_of(h["payload"]) for h in held}
        os.kill(victim, signal.SIGKILL)
        killed = time.time()
        wait_until(lambda: not ids_of_pid(r, victim), GONE_BOUND + 3,
                   f"the ids of dead child {victim} to be unregistered")
        gone_after.append(time.time() - killed)
        assert f":{victim}:" not in workers_command_output()
        victims.append(str(victim))
        r.delete(LOCK)
    out = work_off_then_quit(r, pool)

    ledger = settle(r, r, [stream])
    dirty = [e for e in ledger.entries if e["exception"] == "Resque::DirtyExit"]
    report(ledger.line(f"kill -9 of a pool child x{kills}, DIRTY_EXIT={dirty_exit}",
                       f"ids gone in max {max(gone_after):.3f}s; {len(held_ids)} jobs held at the "
                       f"kills, {len(dirty)} DirtyExit, {len(ledger.rerun)} re-run"))
    assert max(gone_after) <= GONE_BOUND, gone_after
    ledger.assert_sound()
    assert not ledger.queued
    assert stream.deliberate <= ledger.failed
    if dirty_exit == "requeue":
        assert not dirty and held_ids <= ledger.ok | ledger.failed  # requeued, then run once
    else:
        assert not ledger.rerun and 0 < len(dirty) <= len(held_ids)
        assert {job_id_of(e["payload"]) for e in dirty} <= held_ids
        for entry in dirty:  # Ruby's unregister_worker entry, naming the dead child's id
            assert entry["error"] == "Job still being processed" and entry["backtrace"] == []
            assert entry["worker"].split(":")[1] in victims
    for victim in victims:  # cleaned up first, then the restart (and its back-off) is decided
        cleaned = out.index(f"unregistered {FIBERS} worker id(s) of exited process {victim}")
        assert cleaned < out.index(f"worker process {victim} (QUEUE={QUEUE}) was killed by SIGKILL")
