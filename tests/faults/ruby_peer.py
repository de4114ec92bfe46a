"""A Ruby Resque 3.0 worker's registration, heartbeat and ``prune_dead_workers``, command for
command, in a separate process (no Ruby on the test machines).

Run as ``python -m tests.faults.ruby_peer URL QUEUES HEARTBEAT PRUNE_INTERVAL EVERY``. It does
what ``Worker#startup`` does (title ``resque: Starting``, ``start_heartbeat``: HDEL its own
field then a thread that HSETs ``Time.at(TIME).iso8601`` every HEARTBEAT seconds; then
``register_worker``: SADD + SET started) and then, instead of working jobs, calls
``prune_dead_workers`` every EVERY seconds, exactly as lib/resque/worker.rb v3.0.0 lines 639-681
and data_store.rb 241-282 do:

1. ``SET pruning_dead_workers_in_progress <id> NX EX <HEARTBEAT>``; skip if taken;
2. ``Worker.all``: SMEMBERS workers (``find`` with ``skip_exists``: no read);
3. ``worker_pids``: ``ps -A -o pid,command | grep -E "[r]esque:work|[r]esque: Starting|
   [r]esque-[0-9]" | grep -v "resque-web"``, first column, as strings;
4. ``all_workers_with_expired_heartbeats``: HGETALL workers:heartbeat, TIME; every field
   older than PRUNE_INTERVAL: GET worker:<id> (``job(false)``), then ``unregister_worker``
   with PruneDeadWorkerDirtyExit;
5. every other registered id of this host, same queue set (or ``*`` in ours) whose pid string
   is not in ps: ``unregister_worker`` (DirtyExit "Job still being processed");

``unregister_worker``: GET worker:<id> (``processing``); if it held a job, RPUSH the failure
entry to ``failed`` (Ruby's Redis backend); then one pipeline SREM workers, DEL worker:<id>,
DEL worker:<id>:started, HDEL heartbeat, DEL stat:processed:<id>, DEL stat:failed:<id>.

It logs each pruned id to stdout (``pruned <id> <reason>``) for the test to read.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone

import redis
from setproctitle import setproctitle

NS = "resque:"


def iso8601(epoch: float) -> str:
    return datetime.fromtimestamp(int(epoch), timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def ruby_time_parse(value: str) -> float:
    return datetime.strptime(value.replace("Z", "+00:00"), "%Y-%m-%dT%H:%M:%S%z").timestamp()


def server_time(r: redis.Redis) -> float:
    secs, _ = r.time()
    return float(secs)  # Ruby: Time.at(time) with the seconds only


def worker_pids() -> list:
    out = subprocess.run("ps -A -o pid,command | grep -E \"[r]esque:work|[r]esque: Starting|"
                         "[r]esque-[0-9]\" | grep -v \"resque-web\"", shell=True,
                         stdin=subprocess.DEVNULL, capture_output=True, text=True,
                         errors="replace").stdout
    return [line.split()[0] for line in out.splitlines() if line.split()]


def unregister_worker(r: redis.Redis, wid: str, exception: str, error: str) -> None:
    raw = r.get(NS + "worker:" + wid)  # processing (job with reload)
    if raw:
        record = json.loads(raw)
        entry = {"failed_at": time.strftime("%Y/%m/%d %H:%M:%S %Z"), "payload": record.get("payload"),
                 "exception": exception, "error": error, "backtrace": [], "worker": wid,
                 "queue": record.get("queue")}
        r.rpush(NS + "failed", json.dumps(entry, separators=(",", ":")))
    pipe = r.pipeline(transaction=False)
    pipe.srem(NS + "workers", wid)
    pipe.delete(NS + "worker:" + wid)
    pipe.delete(NS + "worker:" + wid + ":started")
    pipe.hdel(NS + "workers:heartbeat", wid)
    pipe.delete(NS + "stat:processed:" + wid)
    pipe.delete(NS + "stat:failed:" + wid)
    pipe.execute()


def prune_dead_workers(r: redis.Redis, own_id: str, queues: list, hostname: str,
                       heartbeat: int, prune_interval: float) -> None:
    if not r.set(NS + "pruning_dead_workers_in_progress", own_id, nx=True, ex=heartbeat):
        return
    all_workers = [w.decode() for w in r.smembers(NS + "workers")]
    known = worker_pids()
    beats = {k.decode(): v.decode() for k, v in r.hgetall(NS + "workers:heartbeat").items()}
    now = server_time(r)
    expired = [wid for wid, beat in beats.items() if int(now - ruby_time_parse(beat)) > prune_interval]
    for wid in expired:
        raw = r.get(NS + "worker:" + wid)  # job(false)
        try:
            job_class = json.loads(raw)["payload"]["class"]
        except Exception:
            job_class = None
        print(f"pruned {wid} heartbeat", flush=True)
        unregister_worker(r, wid, "Resque::PruneDeadWorkerDirtyExit",
                          f"Worker {wid} did not gracefully exit while processing "
                          f"{job_class or '<Unknown Job>'}")
    for wid in all_workers:
        if wid in expired:
            continue
        host, pid, queues_raw = (wid.split(":") + ["", "", ""])[:3]
        if not ("*" in queues or set(queues_raw.split(",")) == set(queues)):
            continue
        if host != hostname or pid in known:
            continue
        print(f"pruned {wid} ps", flush=True)
        unregister_worker(r, wid, "Resque::DirtyExit", "Job still being processed")


def main() -> None:
    url, queues_text, heartbeat, prune_interval, every = sys.argv[1:6]
    queues = queues_text.split(",")
    hostname = socket.gethostname()
    own_id = f"{hostname}:{os.getpid()}:{queues_text}"
    r = redis.Redis.from_url(url)
    setproctitle("resque: Starting")
    r.hdel(NS + "workers:heartbeat", own_id)

    def beat_forever() -> None:
        beats = redis.Redis.from_url(url)
        try:
            while True:
                beats.hset(NS + "workers:heartbeat", own_id, iso8601(server_time(beats)))
                time.sleep(int(heartbeat))
        except BaseException as exc:  # a silent dead heartbeat would get us pruned: say so
            print(f"heartbeat thread died: {exc!r}", flush=True)
            os._exit(1)
    threading.Thread(target=beat_forever, daemon=True).start()
    prune_dead_workers(r, own_id, queues, hostname, int(heartbeat), float(prune_interval))
    pipe = r.pipeline(transaction=False)
    pipe.sadd(NS + "workers", own_id)
    pipe.set(NS + "worker:" + own_id + ":started", time.strftime("%Y-%m-%d %H:%M:%S %z"))
    pipe.execute()
    setproctitle(f"resque-3.0.0: Waiting for {queues_text}")
    print("registered " + own_id, flush=True)
    while True:
        time.sleep(float(every))
        prune_dead_workers(r, own_id, queues, hostname, int(heartbeat), float(prune_interval))


if __name__ == "__main__":
    main()
