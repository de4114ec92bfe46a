"""What every fault scenario shares: the scale, job streams, waiting, and the ledger.

Terms used in every report line:

* **ok**: the job recorded its completion (``test:faults:done``) and has no failure entry;
* **failed**: its payload is in the failed list (a deliberate failure, a TermException, or a
  DirtyExit for a job its killed worker still held);
* **re-run**: it completed more than once (at-least-once after DIRTY_EXIT=requeue);
* **lost**: neither done nor failed nor still queued: the thing that must never happen.

Two cases are counted apart because they are not our worker's doing: **dropped** jobs were still
queued in a Redis that restarted empty (Redis lost them, no worker ever held them), and
**done, then killed** jobs finished their work in a worker that was ``kill -9``-ed before it
could record that, so Ruby's rules (DIRTY_EXIT=fail) record them as DirtyExit: the window
between a job's last line and its ``done_working`` round trip, which no worker can close.
"""
from __future__ import annotations

import collections
import json
import os
import random
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Set

import redis

FULL = os.environ.get("FAULTS_SCALE", "short") == "full"
QUEUE = "faults"
#: This suite's private redis-server port (6391-6399 are reserved for it; never the shared one).
PRIVATE_PORT = 6391
STARTED, DONE, RUNS, LOG = "test:faults:started", "test:faults:done", "test:faults:runs", "test:faults:log"


def scaled(short, full):
    """The short value inside ``make test``, the full one under ``make faults``."""
    return full if FULL else short


@dataclass
class Stream:
    """Jobs with unique ids, as pushed: ``{"class":"FaultJob","args":[id, seconds]}``."""

    ids: List[str]
    payloads: List[str]
    deliberate: Set[str] = field(default_factory=set)  # fail on purpose (seconds < 0)


def make_stream(n: int, prefix: str, seed: int, fail_every: int = 97,
                seconds: Optional[Callable[[int, random.Random], float]] = None) -> Stream:
    rng = random.Random(seed)
    stream = Stream([], [])
    for i in range(n):
        job_id = f"{prefix}{i}"
        if fail_every and i % fail_every == fail_every - 1:
            secs = -1.0
            stream.deliberate.add(job_id)
        else:
            secs = seconds(i, rng) if seconds else round(rng.uniform(0.002, 0.03), 4)
        stream.ids.append(job_id)
        stream.payloads.append(json.dumps({"class": "FaultJob", "args": [job_id, secs]},
                                          separators=(",", ":")))
    return stream


def push_stream(client: redis.Redis, stream: Stream) -> None:
    pipe = client.pipeline(transaction=False)
    pipe.sadd("resque:queues", QUEUE)
    for start in range(0, len(stream.payloads), 1000):
        pipe.rpush("resque:queue:" + QUEUE, *stream.payloads[start:start + 1000])
    pipe.execute()


def wait_until(predicate: Callable[[], object], timeout: float, what: str,
               alive: Optional[object] = None) -> object:
    """Poll a cross-process condition; ``alive`` (a WorkerProcess) must not exit meanwhile, and
    is killed on a time-out so that its output can be shown."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        if alive is not None and alive.proc.poll() is not None:
            raise AssertionError(f"worker exited ({alive.proc.returncode}) while waiting for "
                                 f"{what}:\n{alive.communicate()[-3000:]}")
        time.sleep(0.02)
    if alive is not None:  # the test fails anyway: its worker's log says what it was doing
        alive.proc.kill()
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; the worker's output:\n"
                             f"{alive.communicate()[-3000:]}")
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def job_id_of(payload: object) -> Optional[str]:
    if isinstance(payload, dict) and isinstance(payload.get("args"), list) and payload["args"]:
        return str(payload["args"][0])
    return None


@dataclass
class Ledger:
    """The books of one scenario, settled after every worker has exited."""

    enqueued: int = 0
    ok: Set[str] = field(default_factory=set)
    failed: Set[str] = field(default_factory=set)
    rerun: Set[str] = field(default_factory=set)
    lost: Set[str] = field(default_factory=set)
    dropped: Set[str] = field(default_factory=set)
    queued: Set[str] = field(default_factory=set)
    done_then_killed: Set[str] = field(default_factory=set)
    double: Set[str] = field(default_factory=set)  # failed twice, or failed by one worker and done by another
    completions: int = 0
    entries: List[dict] = field(default_factory=list)

    def line(self, name: str, extra: str = "") -> str:
        text = (f"{name}: enqueued {self.enqueued} / processed ok {len(self.ok)} / failed "
                f"{len(self.failed)} / re-run {len(self.rerun)} / lost {len(self.lost)}")
        if self.done_then_killed:
            text += f" (failed includes {len(self.done_then_killed)} done, then killed)"
        if self.dropped:
            text += f"; dropped by the empty Redis {len(self.dropped)}"
        if self.queued:
            text += f"; still queued {len(self.queued)}"
        return text + (f"; {extra}" if extra else "")

    def assert_sound(self) -> None:
        """Nothing lost, nothing handled twice, every count accounted for."""
        assert not self.lost, f"lost {len(self.lost)} job(s): {sorted(self.lost)[:20]}"
        assert not self.double, f"handled twice: {sorted(self.double)[:20]}"
        accounted = len(self.ok) + len(self.failed) + len(self.dropped) + len(self.queued)
        assert accounted == self.enqueued, (accounted, self.enqueued)


def settle(control: redis.Redis, store: redis.Redis, streams: Iterable[Stream],
           dropped_if_never_started: bool = False) -> Ledger:
    """Read both sides and classify every enqueued id (see the module docstring)."""
    done = control.smembers(DONE)
    runs = {k: int(v) for k, v in control.hgetall(RUNS).items()}
    started = control.smembers(STARTED)
    ran_in: Dict[str, Set[str]] = collections.defaultdict(set)
    log = control.lrange(LOG, 0, -1)
    for item in log:
        job_id, pid = item.split()
        ran_in[job_id].add(pid)
    entries = [json.loads(e) for e in store.lrange("resque:failed", 0, -1)]
    failures: Dict[str, List[dict]] = collections.defaultdict(list)
    for entry in entries:
        failures[job_id_of(entry["payload"])].append(entry)
    queued = {job_id_of(json.loads(p)) for p in store.lrange("resque:queue:" + QUEUE, 0, -1)}
    held = {job_id_of(json.loads(v).get("payload")) for v in
            (store.get(k) for k in store.keys("resque:worker:*")) if v and v.startswith("{")}
    ledger = Ledger(completions=len(log), entries=entries)
    for stream in streams:
        ledger.enqueued += len(stream.ids)
        for job_id in stream.ids:
            if runs.get(job_id, 0) > 1:
                ledger.rerun.add(job_id)
            mine = failures.get(job_id, [])
            if len(mine) > 1:
                ledger.double.add(job_id)
            if mine:
                ledger.failed.add(job_id)
                if job_id in done:
                    if _killed_after_finishing(mine[0], ran_in[job_id]):
                        ledger.done_then_killed.add(job_id)
                    else:
                        ledger.double.add(job_id)
            elif job_id in done:
                ledger.ok.add(job_id)
            elif job_id in queued:
                ledger.queued.add(job_id)
            elif dropped_if_never_started and job_id not in started and job_id not in held:
                ledger.dropped.add(job_id)
            else:
                ledger.lost.add(job_id)
    return ledger


def _killed_after_finishing(entry: dict, ran_in: Set[str]) -> bool:
    """A DirtyExit for a job that completed in the very process the entry names as dead."""
    parts = str(entry.get("worker", "")).split(":")
    return entry.get("exception") in ("Resque::DirtyExit", "Resque::PruneDeadWorkerDirtyExit") \
        and len(parts) > 1 and ran_in == {parts[1]}


def assert_clean_exit(store: redis.Redis) -> None:
    """After the last worker exited: nothing registered, held or heartbeating (WIRE §3.5)."""
    assert store.smembers("resque:workers") == set()
    assert store.keys("resque:worker:*") == []
    assert store.hgetall("resque:workers:heartbeat") == {}
