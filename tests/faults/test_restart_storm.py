"""``kill -9`` and restart, again and again, under a job stream, beside a peer that prunes as a
Ruby Resque 3.0 worker does (issue 14 item 0).

The peer (:mod:`tests.faults.ruby_peer`, Ruby's startup, heartbeat and ``prune_dead_workers``
command for command) heartbeats every 2 s, treats a heartbeat older than 10 s as dead and prunes
every 2.5 s, so it races every restart of ours for the pruning lock and for the dead worker's
ids. Each worker is started with stdin closed, as in the report: its first Redis socket used to
land on fd 0, where the ``ps`` of our start-up pruning turned it blocking and hung the process
before it registered.

Checked after every restart: all FIBERS ids of the new pid in ``workers`` and in
``workers:heartbeat`` within :data:`REGISTER_BOUND` seconds, and still all there while it works
(sampled until the kill). At the end, the books: lost 0, nothing handled twice.
"""
from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time

import gevent
import pytest

from tests.conftest import REDIS_URL, ROOT
from tests.faults.harness import (
    FULL,
    QUEUE,
    Stream,
    assert_clean_exit,
    scaled,
    settle,
    wait_until,
)

FIBERS = 20
QUEUES = f"{QUEUE},low"
#: The issue's bound: every restarted worker registered, with heartbeats, within 5 s.
REGISTER_BOUND = 5.0
#: The peer's Resque.heartbeat_interval, Resque.prune_interval and pruning period (the report's).
PEER_HEARTBEAT, PEER_PRUNE_INTERVAL, PEER_EVERY = 2, 10, 2.5


def ids_of(r, key_members, pid):
    return [w for w in key_members if f":{pid}:" in w]


#: resque v3.0.0's lib/ (e.g. ``git archive v3.0.0 lib``): then the peer is real Ruby Resque
#: (tests/faults/ruby_peer.rb), else its command-for-command emulation (ruby_peer.py).
RUBY_LIB = os.environ.get("RESQUE_RUBY_LIB")


def start_peer(heartbeat=PEER_HEARTBEAT, prune_interval=PEER_PRUNE_INTERVAL, every=PEER_EVERY):
    args = [REDIS_URL, QUEUES, str(heartbeat), str(prune_interval), str(every)]
    if RUBY_LIB:
        command = ["ruby", os.path.join(ROOT, "tests", "faults", "ruby_peer.rb"), *args]
    else:
        command = [sys.executable, "-m", "tests.faults.ruby_peer", *args]
    return subprocess.Popen(command, cwd=ROOT, env=dict(os.environ, RUBYLIB=RUBY_LIB or ""),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def stream_jobs(r, stream, per_second, seconds):
    """Push 50 ms FaultJobs at ``per_second`` until told to stop; every id goes into ``stream``."""
    i = 0
    while True:
        batch = []
        for _ in range(per_second // 10):
            job_id = f"rs{i}"
            i += 1
            stream.ids.append(job_id)
            batch.append(json.dumps({"class": "FaultJob", "args": [job_id, seconds]},
                                    separators=(",", ":")))
        pipe = r.pipeline(transaction=False)
        pipe.sadd("resque:queues", QUEUE)
        pipe.rpush("resque:queue:" + QUEUE, *batch)
        pipe.execute()
        gevent.sleep(0.1)


@pytest.mark.timeout(1800 if FULL else 180)
@pytest.mark.parametrize("dirty_exit", ["requeue", "fail"])
def test_kill_9_and_restart_beside_a_ruby_pruner(r, workers, report, dirty_exit):
    cycles = scaled(3, 100)
    rng = random.Random(14)
    peer = start_peer()
    stream = Stream([], [])
    pusher = None
    try:
        wait_until(lambda: r.sismember("resque:workers", f"{socket.gethostname()}:{peer.pid}:{QUEUES}")
                   or peer.poll() is not None, 10, "the Ruby-style peer to register")
        assert peer.poll() is None, peer.communicate()[0]
        pusher = gevent.spawn(stream_jobs, r, stream, 100, 0.05)
        words = [f"QUEUE={QUEUES}", f"FIBERS={FIBERS}"]
        env = {"RESQUE_HEARTBEAT_INTERVAL": str(PEER_HEARTBEAT), "DIRTY_EXIT": dirty_exit}
        register_times, dead_pids, gaps = [], [], []
        for _ in range(cycles):
            started = time.time()
            w = workers(words, env, close_stdin=True)

            def registered():
                return (len(ids_of(r, r.smembers("resque:workers"), w.pid)) == FIBERS
                        and len(ids_of(r, r.hkeys("resque:workers:heartbeat"), w.pid)) == FIBERS)
            try:
                wait_until(registered, REGISTER_BOUND, f"worker {w.pid} to register {FIBERS} ids "
                           "with heartbeats", alive=w)
            except AssertionError as exc:  # wait_until killed the worker and shows its output
                raise AssertionError(f"restart {len(dead_pids) + 1}: not registered within "
                                     f"{REGISTER_BOUND}s; {exc}") from None
            register_times.append(time.time() - started)
            # Work for a while, with every id registered all along (a peer's prune must not
            # remove a live worker's ids).
            until = time.time() + rng.uniform(0.3, 1.5)
            while time.time() < until:
                present = len(ids_of(r, r.smembers("resque:workers"), w.pid))
                if present != FIBERS:
                    gaps.append((w.pid, present))
                time.sleep(0.05)
            w.signal(signal.SIGKILL)
            w.wait()
            dead_pids.append(str(w.pid))
        pusher.kill()
        assert peer.poll() is None, "the Ruby-style peer died"
        # The peer or a later start prunes the last dead ids; then drain what is left.
        wait_until(lambda: not [x for x in r.smembers("resque:workers")
                                if x.split(":")[1] in dead_pids], 30, "the dead ids to be pruned")
    finally:
        if pusher is not None:
            pusher.kill()
        peer.kill()
        peer_log = peer.communicate()[0]
    peer_id = f"{socket.gethostname()}:{peer.pid}:{QUEUES}"
    assert r.sismember("resque:workers", peer_id), f"the peer was pruned:\n{peer_log[-3000:]}"
    r.srem("resque:workers", peer_id)  # a killed Ruby worker's leftovers
    r.hdel("resque:workers:heartbeat", peer_id)
    r.delete(f"resque:worker:{peer_id}:started")
    last = workers([f"QUEUE={QUEUES}", f"FIBERS={FIBERS}", "INTERVAL=0"], {"DIRTY_EXIT": dirty_exit})
    assert last.wait(300) == 0, last.output[-3000:]
    assert_clean_exit(r)

    ledger = settle(r, r, [stream])
    peer_pruned = peer_log.count("pruned ") + peer_log.count("Pruning dead worker")
    report(ledger.line(
        f"kill -9 + restart x{len(dead_pids)} beside a {'real Ruby' if RUBY_LIB else 'Ruby-style'} "
        f"pruner, DIRTY_EXIT={dirty_exit}",
        f"registered in max {max(register_times):.2f}s / median "
        f"{sorted(register_times)[len(register_times) // 2]:.2f}s; {peer_pruned} ids pruned "
        f"by the peer; {ledger.completions} completions"))
    assert not gaps, f"live workers lost ids from workers: {gaps[:10]}"
    assert max(register_times) <= REGISTER_BOUND
    ledger.assert_sound()
    assert not ledger.queued


@pytest.mark.timeout(120)
def test_restart_that_wins_the_pruning_lock_registers(r, workers):
    """The hang without luck: the lock is free, so the new worker's own start-up pruning runs
    ``ps`` and then reads the dead worker's jobs on the same connection. With stdin closed that
    connection was fd 0, made blocking by ``ps``: the worker never registered."""
    words = [f"QUEUE={QUEUES}", f"FIBERS={FIBERS}"]
    env = {"RESQUE_HEARTBEAT_INTERVAL": "1"}  # the lock's TTL: free again within a second
    dead = None
    for _ in range(3):
        wait_until(lambda: not r.exists("resque:pruning_dead_workers_in_progress"), 5,
                   "the pruning lock to expire")
        w = workers(words, env, close_stdin=True)
        w.wait_registered(r, FIBERS, timeout=REGISTER_BOUND)
        if dead is not None:
            assert not [x for x in r.smembers("resque:workers") if x.split(":")[1] == dead]
        w.signal(signal.SIGKILL)
        w.wait()
        dead = str(w.pid)


@pytest.mark.timeout(60)
def test_live_ids_pruned_by_a_ruby_peers_short_prune_interval_come_back_with_a_warning(r, workers):
    """The report's other case (418 jobs run, no id in ``workers``): our heartbeat every 60 s,
    the Ruby apps' Resque.prune_interval 10 s, so every Ruby prune removes our live ids by
    heartbeat age. Here scaled down (3 s vs 1 s): the next beat puts them back and the log says
    which setting to line up."""
    w = workers([f"QUEUE={QUEUES}", "FIBERS=2"], {"RESQUE_HEARTBEAT_INTERVAL": "3"})
    w.wait_registered(r, 2)
    peer = start_peer(heartbeat=1, prune_interval=1, every=1)
    try:
        wait_until(lambda: not [x for x in r.smembers("resque:workers") if f":{w.pid}:" in x], 15,
                   "the peer to prune our live ids", alive=w)
        w.wait_registered(r, 2, timeout=10)  # our next beat re-registers them
    finally:
        peer.kill()
        peer_log = peer.communicate()[0]
    w.signal(signal.SIGQUIT)
    assert w.wait() == 0
    assert f":{w.pid}:" in peer_log
    assert "set RESQUE_HEARTBEAT_INTERVAL to the Ruby apps' Resque.heartbeat_interval" in w.output
