"""Unregistering workers known dead (issue 14): a pool child's ids without the pruning lock, the
poison-job cap of DIRTY_EXIT=requeue, and exactly-once when two of our pruners take one id."""
from __future__ import annotations

import json
import socket
import subprocess
import time

import pytest

from resque_compat.runtime.pruning import DirtyExitPolicy, unregister_dead_process
from resque_compat.store import dead
from resque_compat.store.store import Store, connect
from resque_compat.wire.keys import Keys
from tests.conftest import REDIS_URL

HOST = socket.gethostname()
PAYLOAD = '{"class":"CrashJob","args":["poison", 1.50]}'  # odd spacing: bytes are the identity


@pytest.fixture
def store(r):
    s = Store(connect(REDIS_URL), Keys("resque"))
    yield s
    s.redis.close()


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def hold(r, wid, payload=PAYLOAD, queue="poison"):
    r.sadd("resque:workers", wid)
    r.hset("resque:workers:heartbeat", wid, "2026-12-07T10:00:00+00:00")
    r.set(f"resque:worker:{wid}:started", "2026-12-07 10:00:00 +0000")
    r.set(f"resque:worker:{wid}", f'{{"queue":"{queue}","run_at":"2026-12-07T10:00:01Z","payload":{payload}}}')


def test_a_dead_pids_ids_go_without_the_pruning_lock_and_only_that_pids(r, store):
    pid = dead_pid()
    mine = [f"{HOST}:{pid}:a,b:{slot}" for slot in range(3)]
    for wid in mine:
        hold(r, wid)
    r.hset("resque:workers:heartbeat", f"{HOST}:{pid}:c:9", "2026-12-07T10:00:00+00:00")  # beat only
    others = [f"{HOST}:{pid}1:a,b:0", f"otherhost:{pid}:a,b:0"]
    for wid in others:
        r.sadd("resque:workers", wid)
    r.set("resque:pruning_dead_workers_in_progress", "vm:1:x", ex=60)

    ids = unregister_dead_process(store, HOST, pid, DirtyExitPolicy("fail"), time.time)

    assert sorted(ids) == sorted(mine + [f"{HOST}:{pid}:c:9"])
    assert r.smembers("resque:workers") == set(others)
    assert r.hkeys("resque:workers:heartbeat") == []
    assert r.keys(f"resque:worker:{HOST}:{pid}:*") == []
    entries = [json.loads(e) for e in r.lrange("resque:failed", 0, -1)]
    assert [(e["exception"], e["error"], e["worker"]) for e in entries] == \
        [("Resque::DirtyExit", "Job still being processed", wid) for wid in mine]


def test_requeue_counts_crashes_by_payload_bytes_and_fails_at_the_cap(r, store):
    policy = DirtyExitPolicy("requeue", cap=3, window=3600)
    for crash in range(1, 4):
        pid = dead_pid()
        hold(r, f"{HOST}:{pid}:poison:0")
        unregister_dead_process(store, HOST, pid, policy, time.time)
        if crash < 3:
            assert r.lpop("resque:queue:poison") == PAYLOAD  # the exact bytes, at the head
            assert int(r.hget("resque:dirty_exit_counts", PAYLOAD)) == crash
            assert 3590 < r.ttl("resque:dirty_exit_counts") <= 3600
            assert r.llen("resque:failed") == 0
    assert r.llen("resque:queue:poison") == 0
    [entry] = [json.loads(e) for e in r.lrange("resque:failed", 0, -1)]
    assert entry["exception"] == "Resque::DirtyExit"
    assert entry["error"] == "Job crashed its worker 3 times within 1h (DIRTY_EXIT_MAX=3); not requeued again"
    assert entry["payload"] == json.loads(PAYLOAD) and entry["queue"] == "poison"
    assert not r.hexists("resque:dirty_exit_counts", PAYLOAD)
    assert int(r.get("resque:stat:failed") or 0) == 0  # a DirtyExit is never counted, as in Ruby


def test_cap_zero_requeues_for_ever(r, store):
    for _ in range(5):
        pid = dead_pid()
        hold(r, f"{HOST}:{pid}:poison:0")
        unregister_dead_process(store, HOST, pid, DirtyExitPolicy("requeue", cap=0), time.time)
        assert r.lpop("resque:queue:poison") == PAYLOAD
    assert r.llen("resque:failed") == 0


@pytest.mark.parametrize("mode", ["fail", "requeue"])
def test_two_pruners_reading_one_dead_id_handle_its_job_once(r, store, mode):
    """The second one's read is stale by the time it writes: its job is not handled again."""
    pid = dead_pid()
    wid = f"{HOST}:{pid}:poison:0"
    hold(r, wid)
    raw = r.get(f"resque:worker:{wid}").encode()
    work = dead.DeadWorker(wid, raw, mode, entry='{"entry":1}', capped_entry='{"entry":2}',
                           queue="poison", item=PAYLOAD.encode())
    assert store.unregister_dead_workers([work], cap=3, window=60) == \
        [dead.FAILED if mode == "fail" else dead.REQUEUED]
    assert store.unregister_dead_workers([work], cap=3, window=60) == [dead.ALREADY_HANDLED]
    assert r.llen("resque:failed") + r.llen("resque:queue:poison") == 1
    assert not r.sismember("resque:workers", wid)
