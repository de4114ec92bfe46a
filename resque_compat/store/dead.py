"""The Lua script that unregisters dead workers (pruning, a pool child that died), with the
code that builds its KEYS/ARGV right below it.

One atomic call per batch, so a job a dead worker held ends up failed or requeued exactly once
even when two of our pruners (a supervisor and a starting worker) take the same dead id at
once: the job is handled only if ``worker:<id>`` still holds the very bytes the caller read.
With DIRTY_EXIT=requeue the crash is counted by payload bytes in ``dirty_exit_counts`` in the
same step, and the DIRTY_EXIT_MAX-th crash fails the job instead (issue 14, requirement 4).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence

from resque_compat.wire.keys import Keys

#: KEYS: workers, workers:heartbeat, dirty_exit_counts, queues, failed_queues, then per id:
#:       worker:<id>, worker:<id>:started, stat:processed:<id>, stat:failed:<id>,
#:       its failure list, its job's queue:<q> (the failure list again when there is none).
#: ARGV: n, DIRTY_EXIT_MAX (0 = no cap), DIRTY_EXIT_WINDOW seconds, then per id:
#:       id, the worker:<id> bytes read ('' = none), mode ('' | 'fail' | 'requeue'),
#:       DirtyExit entry, entry for the capped case, failed_queues member ('' = none),
#:       the payload bytes to requeue, the job's queue name.
#: Returns per id: 0 no job, 1 failed, 2 requeued, 3 failed at the cap, -1 its job was
#: already handled by someone else (worker:<id> changed since the read).
UNREGISTER_DEAD_SCRIPT = r"""
local n = tonumber(ARGV[1])
local max = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local out = {}
for i = 1, n do
  local k = 5 + (i - 1) * 6
  local a = 3 + (i - 1) * 8
  local wid, expected, mode = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local outcome = 0
  if expected ~= '' then
    if redis.call('GET', KEYS[k + 1]) ~= expected then
      outcome = -1
    elseif mode == 'requeue' then
      local crashes = redis.call('HINCRBY', KEYS[3], ARGV[a + 7], 1)
      redis.call('EXPIRE', KEYS[3], window)
      if max > 0 and crashes >= max then
        redis.call('HDEL', KEYS[3], ARGV[a + 7])
        redis.call('RPUSH', KEYS[k + 5], ARGV[a + 5])
        outcome = 3
      else
        redis.call('SADD', KEYS[4], ARGV[a + 8])
        redis.call('LPUSH', KEYS[k + 6], ARGV[a + 7])
        outcome = 2
      end
    elseif mode == 'fail' then
      redis.call('RPUSH', KEYS[k + 5], ARGV[a + 4])
      outcome = 1
    end
    if (outcome == 1 or outcome == 3) and ARGV[a + 6] ~= '' then
      redis.call('SADD', KEYS[5], ARGV[a + 6])
    end
  end
  redis.call('SREM', KEYS[1], wid)
  redis.call('DEL', KEYS[k + 1])
  redis.call('DEL', KEYS[k + 2])
  redis.call('HDEL', KEYS[2], wid)
  redis.call('DEL', KEYS[k + 3])
  redis.call('DEL', KEYS[k + 4])
  out[i] = outcome
end
return out
"""

NO_JOB, FAILED, REQUEUED, CAPPED, ALREADY_HANDLED = 0, 1, 2, 3, -1


@dataclass(frozen=True)
class DeadWorker:
    """One dead id and what to do with the job it held (``held`` = the bytes read, or None)."""

    worker_id: str
    held: Optional[bytes] = None
    mode: str = ""  # "fail" | "requeue" | "" (no job)
    entry: str = ""  # the DirtyExit entry (fail)
    capped_entry: str = ""  # the entry written instead of the DIRTY_EXIT_MAX-th requeue
    queue: Optional[str] = None  # the job's queue (requeue; failure list of redis_multi_queue)
    item: bytes = b""  # the payload bytes to requeue


def unregister_dead_call(keys: Keys, backend: str, dead: Sequence[DeadWorker], cap: int,
                         window: float) -> tuple:
    """KEYS and ARGV of :data:`UNREGISTER_DEAD_SCRIPT` for ``dead``."""
    script_keys: List[str] = [keys.workers, keys.heartbeats, keys.dirty_exit_counts, keys.queues,
                              keys.failed_queues]
    args: List[object] = [len(dead), cap, max(1, int(window))]
    for d in dead:
        failure_list = keys.failure_list(d.queue, backend)
        script_keys += [keys.worker(d.worker_id), keys.worker_started(d.worker_id),
                        keys.worker_processed(d.worker_id), keys.worker_failed(d.worker_id),
                        failure_list, keys.queue(d.queue) if d.queue is not None else failure_list]
        args += [d.worker_id, d.held or b"", d.mode, d.entry, d.capped_entry,
                 keys.failed_queues_member(d.queue, backend) or "", d.item, d.queue or ""]
    return script_keys, args
