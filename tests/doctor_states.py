"""The broken keyspaces the doctor tests plant (WIRE §3.4's values), as named builders.

tests/test_doctor.py checks our findings and ``--fix`` on them;
fixtures/ruby-interop/doctor_capture.py shows the same states, before and after ``--fix``, to
real Ruby (resque-web and a Resque 3.0 worker), and tests/test_ruby_doctor_interop.py rebuilds
them to compare today's ``--fix`` with the keyspace Ruby accepted.
"""
from __future__ import annotations

import subprocess
import sys
from typing import Callable, Dict, List, Tuple

import redis

from resque_compat.wire import codec
from resque_compat.wire.keys import Keys
from tests.keyspace import load_fixture, load_keys

#: The host the doctor takes as its own. Not the real one: the fixtures' ids are ``vm:<pid>``
#: and this machine may be called vm too; pid checks still probe this machine's processes.
HOST = "doctorhost"
K = Keys()


def now_beat(r: redis.Redis) -> str:
    secs, _ = r.time()
    return codec.iso8601_local(secs)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def busy_fixture(r: redis.Redis) -> dict:
    """Fixture 03 (a Ruby worker running a job on host ``vm``) with a fresh heartbeat."""
    fixture = load_fixture("03_worker_busy.json")
    load_keys(r, fixture["keys"])
    for wid in r.hkeys(K.heartbeats):
        r.hset(K.heartbeats, wid, now_beat(r))
    # load_keys drops TTLs; Ruby's pruning lock had one (SET NX EX 60), and one without it is
    # a finding of its own (pruning_lock_without_ttl).
    r.expire(K.pruning_lock, fixture["keys"][K.pruning_lock]["ttl"])
    return fixture


def healthy(r: redis.Redis) -> None:
    """Fixture 03 plus an idle ``vm:1:q`` with a fresh heartbeat: what each plant breaks."""
    busy_fixture(r)
    r.sadd(K.workers, "vm:1:q")
    r.hset(K.heartbeats, "vm:1:q", now_beat(r))
    r.set(K.worker_started("vm:1:q"), "2026-11-27 11:55:41 +0000")


_ACTIVEJOB = ('{"queue":"q","run_at":"x","payload":{"class":'
              '"ActiveJob::QueueAdapters::ResqueAdapter::JobWrapper","args":[]}}')


def _started_of_wrong_type(r: redis.Redis) -> None:
    r.delete(K.worker_started("vm:1:q"))
    r.hset(K.worker_started("vm:1:q"), "a", "b")


#: (name, plant on top of :func:`healthy`, the one critical check it must raise). Keys only:
#: each can be shown to Ruby on any Redis DB.
KEY_PLANTS: List[Tuple[str, Callable[[redis.Redis], object], str]] = [
    ("id_garbage", lambda r: r.sadd(K.workers, "garbage"), "bad_worker_id"),
    ("id_one_colon", lambda r: r.sadd(K.workers, "vm:123"), "bad_worker_id"),
    ("id_no_queue", lambda r: r.sadd(K.workers, "vm:123:"), "bad_worker_id"),
    ("heartbeat_field_one_colon", lambda r: r.hset(K.heartbeats, "vm:123", now_beat(r)), "bad_heartbeat_field"),
    ("heartbeat_field_one_colon_expired",  # what Ruby's pruner reads: only expired fields
     lambda r: r.hset(K.heartbeats, "vm:123", codec.iso8601_local(r.time()[0] - 400)), "bad_heartbeat_field"),
    ("heartbeat_garbage", lambda r: r.hset(K.heartbeats, "vm:1:q", "garbage"), "bad_heartbeat"),
    ("heartbeat_epoch", lambda r: r.hset(K.heartbeats, "vm:1:q", "1795780541"), "bad_heartbeat"),
    ("record_not_json", lambda r: r.set(K.worker("vm:1:q"), "{not json"), "bad_worker_record"),
    ("record_empty", lambda r: r.set(K.worker("vm:1:q"), ""), "bad_worker_record"),
    ("record_array", lambda r: r.set(K.worker("vm:1:q"), "[1]"), "bad_worker_record"),
    ("record_no_payload", lambda r: r.set(K.worker("vm:1:q"), '{"queue":"q","run_at":"x"}'), "bad_worker_record"),
    ("record_null_payload", lambda r: r.set(K.worker("vm:1:q"), '{"queue":"q","payload":null}'),
     "bad_worker_record"),
    ("record_activejob_no_args", lambda r: r.set(K.worker("vm:1:q"), _ACTIVEJOB), "bad_worker_record"),
    ("started_wrong_type", _started_of_wrong_type, "wrong_type"),
]

#: Server settings: only on a private redis-server whose CONFIG is the test's to change.
CONFIG_PLANTS: List[Tuple[str, Callable[[redis.Redis], object], str]] = [
    ("maxmemory_policy", lambda r: r.config_set("maxmemory-policy", "allkeys-lru"), "maxmemory_policy"),
    ("no_persistence", lambda r: r.config_set("appendonly", "no") and r.config_set("save", ""), "no_persistence"),
]


def warnings_and_notes(r: redis.Redis) -> Dict[str, str]:
    """Ghosts, orphans, a dead scheduler, pauses and an unwatched queue: nothing critical.
    Returns the ids whose pid or age is made up on the spot."""
    busy_fixture(r)
    old = codec.iso8601_local(r.time()[0] - 400)
    r.sadd(K.workers, "otherhost:7:critical")
    r.hset(K.heartbeats, "otherhost:7:critical", old)                       # expired heartbeat
    dead = f"{HOST}:{dead_pid()}:critical"
    r.sadd(K.workers, dead)                                                  # dead pid, this host
    r.sadd(K.workers, "farhost:9:critical")                                  # no heartbeat at all
    r.set(K.worker_started("gone:1:critical"), "2026-11-27 11:55:41 +0000")  # orphans
    r.set(K.worker_processed("gone:1:critical"), 3)
    r.set(K.worker("gone:2:critical"), '{"queue":"critical","run_at":"2026-11-27T11:55:41Z",'
                                       '"payload":{"class":"Lost","args":[1]}}')
    r.rpush(K.queue("nobody"), '{"class":"X","args":[]}')                    # nobody listens
    r.set(K.scheduler_master_lock(), f"{HOST}:{dead_pid()}", ex=180)        # dead scheduler
    r.set(K.pause_all_workers, " TRUE ")
    r.set(K.paused_queue("critical"), "true")
    r.set(K.pause_all, "true")
    return {"dead": dead}


def held_job(name: str) -> str:
    return codec.encode({"queue": "critical", "run_at": "2026-11-27T11:55:41Z",
                         "payload": {"class": "Held", "args": [name]}})


def every_safe_fault(r: redis.Redis) -> dict:
    """Every fault ``--fix`` repairs at once, beside a live Ruby worker and a waiting job.
    Returns fixture 03 (the live worker)."""
    fixture = busy_fixture(r)
    r.rpush(K.queue("critical"), '{"class":"Waiting","args":[1]}')
    old = codec.iso8601_local(r.time()[0] - 400)
    plants = {
        "garbage": None, "vm:123:": "not json at all",          # bad ids, one holding bytes
        "otherhost:7:critical": held_job("expired"),             # expired heartbeat, a job
        f"{HOST}:{dead_pid()}:critical": held_job("dead-pid"),   # dead pid on this host
    }
    for wid, record in plants.items():
        r.sadd(K.workers, wid)
        r.set(K.worker_started(wid), "2026-11-27 11:55:41 +0000")
        if record is not None:
            r.set(K.worker(wid), record)
    r.hset(K.heartbeats, "otherhost:7:critical", old)
    r.hset(K.heartbeats, "vm:123", now_beat(r))                 # bad field name
    r.sadd(K.workers, "vm:5:critical")
    r.hset(K.heartbeats, "vm:5:critical", now_beat(r))
    r.hset(K.heartbeats, "vm:6:critical", "1795780541")          # bad value
    r.set(K.worker("vm:5:critical"), '{"queue":"critical","payload":null}')
    r.set(K.worker("gone:2:critical"), held_job("orphan"))       # orphaned record with a job
    r.set(K.worker_failed("gone:3:critical"), 1)
    r.set(K.scheduler_master_lock(), f"{HOST}:{dead_pid()}", ex=180)
    return fixture


#: Processes a state started to stand for a live worker; :func:`stop_live` ends them.
LIVE: List[subprocess.Popen] = []


def _live_pid() -> int:
    """A running process whose title is no Resque worker's (Ruby's ``ps`` grep misses it)."""
    proc = subprocess.Popen(["sleep", "300"])
    LIVE.append(proc)
    return proc.pid


def stop_live() -> None:
    while LIVE:
        proc = LIVE.pop()
        proc.kill()
        proc.wait()


def untitled_live_worker(r: redis.Redis) -> None:
    """A live process of this host registered under its plain pid, and one under ``<pid>+1``
    (node-resque's style): both critical, neither fixable, since they are alive."""
    healthy(r)
    for wid in (f"{HOST}:{_live_pid()}:critical", f"{HOST}:{_live_pid()}+1:critical"):
        r.sadd(K.workers, wid)
        r.hset(K.heartbeats, wid, now_beat(r))


def _plant(plant: Callable[[redis.Redis], object]) -> Callable[[redis.Redis], object]:
    def build(r: redis.Redis) -> None:
        healthy(r)
        plant(r)
    return build


#: Every state shown to Ruby, by name: the key plants (on :func:`healthy`), live workers Ruby's
#: pruner takes for dead, the warnings, and all safe faults at once (also with
#: ``--backend redis_multi_queue``, see BACKENDS). Call :func:`stop_live` after each.
STATES: Dict[str, Callable[[redis.Redis], object]] = {
    **{name: _plant(plant) for name, plant, _ in KEY_PLANTS},
    "untitled_live_worker": untitled_live_worker,
    "warnings_and_notes": warnings_and_notes,
    "every_safe_fault": every_safe_fault,
    "every_safe_fault_multi_queue": every_safe_fault,
}
#: The failure backend a state's ``--fix`` (and Ruby) use; ``redis`` when not named here.
BACKENDS = {"every_safe_fault_multi_queue": "redis_multi_queue"}
