"""resque-lock-timeout against the gem's fixtures (fixtures/ruby-plugins/lock_*): the run lock,
the dropped duplicate, the lock without timeout and the loner mode, with real workers, and a
Ruby worker's lock respected by a Python worker."""
from __future__ import annotations

import time

import pytest

from resque_compat.loner import lock_identifier
from resque_compat.wire.keys import Keys
from tests import loner_lock_jobs  # noqa: F401  registers LockedJob, LonerLockJob, ... here too
from tests.conftest import ROOT, wait_for
from tests.keyspace import dump
from tests.plugin_fixtures import assert_ttls, load_plugin_fixture, load_plugin_state, plugin_state

JOBS = ROOT + "/tests/loner_lock_jobs.py"
LOCKED_ARGS = (42, {"k": "v"}, [1, [2, "x y"]], 6)
LOCK_KEY = 'resque:lock:LockedJob:42-{"k"=>"v"}-1-2-x y-6'


def state(r):
    return plugin_state(dump(r), epoch_values=True)


def fixture_state(name):
    return plugin_state(load_plugin_fixture(name)["keys"], epoch_values=True)


def worker(start_worker):
    return start_worker("QUEUE=locked", "INTERVAL=0.1", require=JOBS)


def started(r, token, w):
    assert r.blpop("test:started", timeout=15) == ("test:started", token), w.output


def assert_expiry(r, key, timeout, before):
    """The value is the expiry epoch (now + timeout), and the key has no Redis TTL."""
    assert before + timeout <= int(r.get(key)) <= int(time.time()) + timeout
    assert r.ttl(key) == -1


def test_the_identifier_and_key_names_are_the_gems():
    fx = load_plugin_fixture("lock_01_locked_running.json")
    assert lock_identifier(LOCKED_ARGS) == fx["identifier_from_plugin"]
    assert Keys().run_lock("LockedJob", lock_identifier(LOCKED_ARGS)) == "resque:" + fx["lock_key_from_plugin"] \
        == LOCK_KEY
    fx = load_plugin_fixture("lock_04_no_timeout_running.json")
    assert Keys().run_lock("LockedNoTimeoutJob", lock_identifier(["no-timeout", 3])) == \
        "resque:" + fx["lock_key_from_plugin"]
    fx = load_plugin_fixture("lock_05_loner_enqueued.json")
    assert Keys().loner_lock("LonerLockJob", lock_identifier([7, 3])) == "resque:" + fx["loner_key_from_plugin"]


def test_run_lock_duplicate_dropped_and_released_like_lock_01_to_03(r, resque, start_worker):
    before = int(time.time())
    resque.enqueue("LockedJob", *LOCKED_ARGS)
    a = worker(start_worker)
    started(r, "locked", a)
    assert state(r) == fixture_state("lock_01_locked_running.json")
    assert_expiry(r, LOCK_KEY, 60, before)
    held = r.get(LOCK_KEY)
    resque.enqueue("LockedJob", *LOCKED_ARGS)
    b = worker(start_worker)
    wait_for(lambda: r.get("resque:stat:processed") == "1", 15, "worker B to drop the duplicate")
    assert state(r) == fixture_state("lock_02_duplicate_dropped.json"), b.output
    assert r.get(LOCK_KEY) == held and r.llen("resque:failed") == 0
    r.rpush("test:release:locked", "go")
    wait_for(lambda: r.get("resque:stat:processed") == "2", 15, "worker A to finish")
    assert state(r) == fixture_state("lock_03_released.json")
    assert r.llen("test:started") == 0  # the duplicate never ran


def test_a_ruby_workers_lock_makes_a_python_worker_drop_the_job(r, resque, start_worker):
    """lock_01 as Ruby left it, with A still inside its 60 s: our worker must not run it too."""
    load_plugin_state(r, load_plugin_fixture("lock_01_locked_running.json")["keys"])
    r.set(LOCK_KEY, int(time.time()) + 60)  # Ruby's worker A took it just now
    resque.enqueue("LockedJob", *LOCKED_ARGS)
    w = worker(start_worker)
    wait_for(lambda: r.get("resque:stat:processed") == "1", 15, "the duplicate to be dropped")
    assert state(r) == fixture_state("lock_02_duplicate_dropped.json"), w.output
    assert r.llen("test:started") == 0


def test_an_expired_ruby_lock_is_taken_over(r, resque, start_worker):
    r.set(LOCK_KEY, int(time.time()) - 5)  # a Ruby worker died holding it, and it expired
    before = int(time.time())
    resque.enqueue("LockedJob", *LOCKED_ARGS)
    w = worker(start_worker)
    started(r, "locked", w)
    assert_expiry(r, LOCK_KEY, 60, before)
    r.rpush("test:release:locked", "go")
    wait_for(lambda: not r.exists(LOCK_KEY), 15, "the lock to be released")


def test_lock_without_timeout_is_true_like_lock_04(r, resque, start_worker):
    resque.enqueue("LockedNoTimeoutJob", "no-timeout", 3)
    w = worker(start_worker)
    started(r, "no-timeout", w)
    fx = load_plugin_fixture("lock_04_no_timeout_running.json")
    assert state(r) == fixture_state("lock_04_no_timeout_running.json")
    assert_ttls(r, fx["keys"])
    r.rpush("test:release:no-timeout", "go")
    wait_for(lambda: r.get("resque:stat:processed") == "1", 15, "the job to end")
    assert r.keys("resque:lock:*") == []


def test_loner_mode_from_python_like_lock_05_to_07(r, resque, start_worker):
    before = int(time.time())
    assert resque.enqueue("LonerLockJob", 7, 3) is True
    assert resque.enqueue("LonerLockJob", 7, 3) is None  # Ruby: nil
    assert state(r) == fixture_state("lock_05_loner_enqueued.json")
    assert_expiry(r, "resque:loner:lock:LonerLockJob:7-3", 30, before)
    run_the_loner_job_like_lock_06_07(r, resque, start_worker)


@pytest.mark.parametrize("expired", [False, True])
def test_loner_job_enqueued_by_rails_runs_like_lock_06_07(r, resque, start_worker, expired):
    """lock_05's bytes as Ruby's enqueue left them (its loner lock expired or not)."""
    load_plugin_state(r, load_plugin_fixture("lock_05_loner_enqueued.json")["keys"])
    if not expired:
        r.set("resque:loner:lock:LonerLockJob:7-3", int(time.time()) + 30)
    run_the_loner_job_like_lock_06_07(r, resque, start_worker)


def run_the_loner_job_like_lock_06_07(r, resque, start_worker):
    before = int(time.time())
    w = worker(start_worker)
    started(r, "loner-lock", w)
    assert resque.enqueue("LonerLockJob", 7, 3) is None  # refused: the run lock is held
    assert state(r) == fixture_state("lock_06_loner_running.json")
    assert_expiry(r, "resque:lock:LonerLockJob:7-3", 30, before)
    r.rpush("test:release:loner-lock", "go")
    wait_for(lambda: r.get("resque:stat:processed") == "1", 15, "the job to end")
    assert state(r) == fixture_state("lock_07_loner_done.json")


def test_a_job_killed_after_term_releases_its_lock(r, resque, start_worker):
    """Where the gem needs on_failure_lock (DirtyExit), our killed job unwinds through the lock."""
    import signal

    resque.enqueue("LockedJob", *LOCKED_ARGS)
    w = start_worker("QUEUE=locked", "INTERVAL=0.1", env={"RESQUE_TERM_TIMEOUT": "0.2"}, require=JOBS)
    started(r, "locked", w)
    assert r.exists(LOCK_KEY)
    w.signal(signal.SIGTERM)
    assert w.wait(15) == 0, w.output
    assert not r.exists(LOCK_KEY)
    assert r.llen("resque:failed") == 1  # the kill is recorded, as Ruby records the DirtyExit
