"""What the pool scenarios (dead child, poison job) share."""
from __future__ import annotations

import signal

from tests.faults.harness import QUEUE, wait_until


def work_off_then_quit(r, pool) -> str:
    """Wait until the stream's queue is empty and no slot holds a job, QUIT the pool, and
    return its output once it has exited 0."""
    wait_until(lambda: r.llen("resque:queue:" + QUEUE) == 0 and not [
        k for k in r.keys("resque:worker:*") if not k.endswith(":started") and r.get(k)],
        120, "the stream to be worked off")
    pool.signal(signal.SIGQUIT)
    code = pool.wait(60)
    out = pool.output()
    assert code == 0, out[-3000:]
    return out
