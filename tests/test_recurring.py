"""Recurring schedules on resque-scheduler's keys (fixtures ruby-plugins/sched_01..05b): the same
bytes as Ruby, the same YAML, exactly one run per slot across leaders (Ruby or Python, kill -9),
bad entries, and the ``resque-py schedule`` commands."""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from resque_compat import job
from resque_compat.scheduler import recurring, schedule
from resque_compat.scheduler.leader import Scheduler
from resque_compat.wire import codec
from resque_compat.wire.keys import Keys
from tests.conftest import REDIS_URL, ROOT, wait_for
from tests.keyspace import dump
from tests.ruby_scheduler import RUBY, ruby_leads, ruby_quits, ruby_runs

UTC = dt.timezone.utc
K = Keys()
LOCK = K.scheduler_master_lock()
PLUGINS = os.path.join(ROOT, "fixtures", "ruby-plugins")
TIME_TO_S = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}$")


@job("ImplicitClassJob", queue="implicit")  # the fixture app's class: @queue = :implicit
def implicit_class_job(*args):
    return args


def fixture(name):
    with open(os.path.join(PLUGINS, name), encoding="utf-8") as fh:
        return json.load(fh)


def utc(text):
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def utc_to_s(epoch):
    """Time#to_s of a scheduler running with TZ=Etc/UTC, as in the fixtures."""
    return dt.datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%d %H:%M:%S +0000")


class Clock:
    """A frozen clock the test moves by hand."""

    def __init__(self, start):
        self.now = float(start)

    def __call__(self):
        return self.now

    def set(self, text_or_epoch):
        self.now = utc(text_or_epoch) if isinstance(text_or_epoch, str) else float(text_or_epoch)


def make_scheduler(resque, clock, static=None, *, env="production", dynamic=False, missed="once",
                   hostname="localhost"):
    plan = recurring.Recurring(recurring.ScheduleStore(resque.redis, K), static or {}, env=env,
                               dynamic=dynamic, zone=UTC, missed=missed, window=190, clock=clock,
                               time_to_s=utc_to_s)
    plan.publish_static()
    return Scheduler(resque.redis, K, clock=clock, recurring=plan, hostname=hostname)


def without_varying(keys):
    """The fixture's keys with what varies between runs (lock value, Time#to_s values) checked
    for shape and replaced by placeholders."""
    out = json.loads(json.dumps(keys))
    for key, entry in out.items():
        if key.endswith("delayed:last_enqueued_at"):
            assert all(TIME_TO_S.match(v) for v in entry["value"].values()), entry
            entry["value"] = {k: "<Time#to_s>" for k in entry["value"]}
        if key == LOCK:
            assert re.match(r"^[\w.-]+:\d+$", entry["value"]), entry
            entry["value"] = "<host:pid>"
        entry.pop("ttl", None)
    return out


def load_keys(r, keys):
    """Write a fixture's keys back into Redis exactly (to continue from a Ruby state)."""
    for key, entry in keys.items():
        value = entry["value"]
        if entry["type"] == "hash":
            r.hset(key, mapping=value)
        elif entry["type"] == "set":
            r.sadd(key, *value)
        elif entry["type"] == "list":
            r.rpush(key, *value)
        elif entry["type"] == "string":
            r.set(key, value, ex=entry.get("ttl"))


# -- the same bytes as Ruby ----------------------------------------------------------------------

def test_sched_01_02_the_static_yaml_enqueues_what_ruby_did_then_quits_like_ruby(r, resque):
    fx = fixture("sched_01_static_schedule_running.json")
    static = schedule.load_yaml(fx["schedule_yaml"], "schedule.yml")
    assert static == fx["resque_schedule_in_scheduler"]  # Resque.schedule in Ruby's scheduler
    clock = Clock(utc("2026-12-07 05:29:48.700"))  # spawned 2.35 s before the capture
    scheduler = make_scheduler(resque, clock, static)
    for step in ("05:29:48.700", "05:29:49.700", "05:29:50.200", "05:29:50.700", "05:29:51.050"):
        clock.set(f"2026-12-07 {step}")
        scheduler.tick()
    assert without_varying(dump(r)) == without_varying(fx["keys"])
    assert {k: r.llen(K.queue(k)) for k in fx["queue_lengths_at_capture"]} == fx["queue_lengths_at_capture"]

    scheduler._step_down()  # SIGQUIT: the lock goes, everything else stays (sched_02)
    assert without_varying(dump(r)) == without_varying(fixture("sched_02_static_after_scheduler_quit.json")["keys"])


def test_sched_03_python_set_schedule_writes_rubys_bytes(r, resque):
    fx = fixture("sched_03_dynamic_set_schedule.json")
    resque.set_schedule("dyn_persist", {"class": "ScheduledJob", "every": "1s", "queue": "dyn_persist",
                                        "args": ["p", 1, {"k": "v"}], "description": "persisted, string keys",
                                        "persist": True})
    resque.set_schedule("dyn_memory", {"class": "ScheduledJob", "every": "1s", "queue": "dyn_memory",
                                       "args": ["m"], "description": "not persisted, symbol keys"})
    resque.set_schedule("dyn_cron", {"class": "ScheduledJob", "cron": "0 5 * * * Europe/Stockholm",
                                     "queue": "dyn_cron"}, persist=True)
    assert dump(r) == fx["keys"]  # byte for byte, key order inside the JSON included
    assert resque.schedule() == fx["client_resque_schedule"]
    from resque_compat import Resque

    other = Resque.from_url(REDIS_URL)
    assert other.schedule() == fx["other_process_view"]["schedule"]
    assert {n: other.fetch_schedule(n) for n in ("dyn_persist", "dyn_memory", "dyn_cron")} == \
        fx["other_process_view"]["fetch_schedule"]


def test_sched_04_05_a_dynamic_python_scheduler_follows_set_and_remove_schedule(r, resque):
    load_keys(r, fixture("sched_03_dynamic_set_schedule.json")["keys"])
    clock = Clock(utc("2026-12-07 05:29:52.300"))
    scheduler = make_scheduler(resque, clock, dynamic=True)
    scheduler.tick()  # leads: loads persistent_schedules, DELs schedules_changed
    assert not r.exists(K.schedules_changed)
    for step in ("05:29:53.300", "05:29:54.300"):
        clock.set(f"2026-12-07 {step}")
        scheduler.tick()
    assert without_varying(dump(r)) == without_varying(fixture("sched_04_dynamic_scheduler_loaded.json")["keys"])

    # sched_05a: the client changes the schedule while the scheduler does not poll
    resque.remove_schedule("dyn_persist")
    resque.set_schedule("dyn_added", {"class": "ScheduledJob", "every": "1s", "queue": "dyn_added",
                                      "args": ["added"], "persist": True})
    assert without_varying(dump(r)) == without_varying(
        fixture("sched_05a_dynamic_changed_before_pickup.json")["keys"])

    for step in ("05:29:55.300", "05:29:56.300", "05:29:57.300", "05:29:58.300"):
        clock.set(f"2026-12-07 {step}")
        scheduler.tick()  # first tick: SPOPs both names, unschedules dyn_persist, arms dyn_added
    assert without_varying(dump(r)) == without_varying(
        fixture("sched_05b_dynamic_changed_after_pickup.json")["keys"])
    assert r.llen(K.queue("dyn_persist")) == 2


# -- exactly once across leaders ---------------------------------------------------------------

MINUTELY = {"minutely": {"cron": "* * * * *", "class": "ScheduledJob", "queue": "minutely"}}


def runs(r):
    return r.llen(K.queue("minutely"))


@pytest.mark.parametrize("zone_suffix", ["+0000", "+0100"])
def test_ruby_to_python_handover_runs_no_slot_twice(r, resque, zone_suffix):
    assert ruby_leads(r)
    ruby_runs(r, "minutely", "2026-12-07 05:30:00.400", zone_suffix)
    clock = Clock(utc("2026-12-07 05:30:01"))
    python = make_scheduler(resque, clock, MINUTELY)
    python.tick()  # Ruby leads: we wait
    assert runs(r) == 1
    ruby_quits(r)  # SIGQUIT (sched_02) just after its 05:30 run
    clock.set("2026-12-07 05:30:02")
    python.tick()
    assert runs(r) == 1  # the 05:30 slot is Ruby's record: not again
    clock.set("2026-12-07 05:31:00.050")
    python.tick()
    python.tick()
    assert runs(r) == 2
    assert r.hget(K.last_enqueued_at, "minutely") == "2026-12-07 05:31:00 +0000"


@pytest.mark.parametrize("missed, expected", [("once", 2), ("skip", 1)])
def test_slots_missed_while_no_one_led_follow_the_policy(r, resque, missed, expected):
    assert ruby_leads(r)
    ruby_runs(r, "minutely", "2026-12-07 05:30:00.400")  # then kill -9: the lock lives 180 s
    r.delete(LOCK)  # expired at 05:33:30
    clock = Clock(utc("2026-12-07 05:33:31"))
    python = make_scheduler(resque, clock, MINUTELY, missed=missed)
    python.tick()
    python.tick()
    assert runs(r) == expected  # once: 05:31..05:33 become one run now; skip: none (Ruby's way)
    clock.set("2026-12-07 05:34:00.010")
    python.tick()
    assert runs(r) == expected + 1


def test_a_stale_python_leader_cannot_enqueue_after_losing_the_lock(r, resque):
    clock = Clock(utc("2026-12-07 05:29:59"))
    python = make_scheduler(resque, clock, MINUTELY)
    python.tick()
    clock.set("2026-12-07 05:30:00.100")
    python.tick()
    assert runs(r) == 1
    # Python is paused past the lock's life and Ruby takes over (its rufus starts afresh)
    r.delete(LOCK)  # our lock expired
    assert ruby_leads(r)
    clock.set("2026-12-07 05:31:00.500")
    fired, still_leader = python.recurring.fire_due()  # resumed with its stale "I lead" state
    assert (fired, still_leader, runs(r)) == (0, False, 1)  # Ruby's own stale leader would push
    ruby_runs(r, "minutely", "2026-12-07 05:31:00.700")
    python.tick()
    assert runs(r) == 2 and r.get(LOCK) == RUBY


def test_the_fire_script_compares_and_sets_last_enqueued_at(r, resque):
    store = recurring.ScheduleStore(resque.redis, K)
    r.set(LOCK, "me:1")
    assert store.fire(LOCK, "me:1", "n", None, "q", "{}", "2026-12-07 05:30:00 +0000") == 1
    # a second fire that read the old (empty) record must not land
    assert store.fire(LOCK, "me:1", "n", None, "q", "{}", "2026-12-07 05:30:00 +0000") == 0
    assert store.fire(LOCK, "other:2", "n", "2026-12-07 05:30:00 +0000", "q", "{}", "x") == -1
    assert r.llen(K.queue("q")) == 1


class SchedulerProcess:
    """A real ``resque-py scheduler --schedule FILE``; its log lines are collected."""

    def __init__(self, schedule_file, *words):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RESQUE_SCHEDULER", "DYNAMIC"))}
        env.update({"REDIS_URL": REDIS_URL, "PYTHONUNBUFFERED": "1", "RAILS_ENV": "production"})
        self.proc = subprocess.Popen([sys.executable, "-m", "resque_compat", "scheduler", "--schedule",
                                      schedule_file, *words], env=env, cwd=ROOT, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def slots(self):
        return [m.group(1) for m in (re.search(r"for the slot at (.+)$", l) for l in list(self.lines)) if m]

    def has(self, text):
        return any(text in line for line in list(self.lines))


def test_kill_9_of_the_leader_hands_over_with_each_slot_run_at_most_once(r, tmp_path):
    path = tmp_path / "schedule.yml"
    path.write_text('every_second:\n  cron: "* * * * * *"\n  class: ScheduledJob\n  queue: tick\n')
    words = ("RESQUE_SCHEDULER_INTERVAL=0.05", "RESQUE_SCHEDULER_LOCK_TIMEOUT=1", "VERBOSE=1")
    a = SchedulerProcess(str(path), *words)
    b = None
    try:
        wait_for(lambda: a.has("is the leader"), 10, "the first scheduler to lead")
        b = SchedulerProcess(str(path), *words)
        wait_for(lambda: b.has("waits: the leader lock is held"), 10, "the second scheduler to wait")
        wait_for(lambda: len(a.slots()) >= 2, 10, "two slots from the leader")
        a.proc.kill()  # kill -9 while it sleeps to its next slot
        a.proc.wait(5)
        wait_for(lambda: len(b.slots()) >= 2, 10, "two slots from the new leader")
        b.proc.send_signal(signal.SIGTERM)
        assert b.proc.wait(10) == 0
    finally:
        for proc in (a, b):
            if proc is not None and proc.proc.poll() is None:
                proc.proc.kill()
    time.sleep(0.1)  # let the reader threads drain the closed pipes
    slots_a, slots_b = a.slots(), b.slots()
    everything = slots_a + slots_b
    assert len(everything) == len(set(everything)), f"a slot ran twice: {slots_a} / {slots_b}"
    assert r.llen(K.queue("tick")) == len(everything)
    assert max(slots_a) < min(slots_b)
    assert r.hget(K.last_enqueued_at, "every_second") == max(slots_b) or \
        codec.parse_time_to_s(r.hget(K.last_enqueued_at, "every_second")) >= codec.parse_time_to_s(max(slots_b))


# -- bad input -----------------------------------------------------------------------------------

BAD = """
good: {every: 1s, class: ScheduledJob, queue: good}
bad_cron: {cron: "61 * * * *", class: ScheduledJob, queue: q}
bad_zone: {cron: "0 5 * * * Europe/Atlantis", class: ScheduledJob, queue: q}
no_trigger: {class: ScheduledJob, queue: q}
NoQueueJob: {every: 1s}
"""


def test_each_bad_entry_gets_one_line_naming_it_and_the_field_and_the_rest_run(r, resque, caplog):
    caplog.set_level(logging.INFO, logger="resque_compat.scheduler")
    clock = Clock(utc("2026-12-07 05:30:00"))
    scheduler = make_scheduler(resque, clock, schedule.load_yaml(BAD))
    for second in range(4):
        clock.set(utc("2026-12-07 05:30:00") + second + 0.5)
        scheduler.tick()
    r.delete(LOCK)
    scheduler.tick()  # leads again: the lines are not repeated
    errors = [rec.getMessage() for rec in caplog.records if rec.levelno == logging.ERROR]
    assert errors == [
        "schedule 'bad_cron': cron (minutes): bad minutes field '61' (at '61'); use *, N, N-M, */S, "
        "N-M/S or a comma-separated list; the other schedules keep running",
        "schedule 'bad_zone': cron (time zone): unknown time zone 'Europe/Atlantis'; use an IANA name "
        "such as Europe/Stockholm or America/New_York, or an offset such as +0900; the other schedules "
        "keep running",
        "schedule 'no_trigger': cron/every: no cron or every found - skipping (give e.g. cron: "
        "\"0 5 * * *\" or every: 30s); the other schedules keep running",
        "schedule 'NoQueueJob': queue: no queue for NoQueueJob: add queue: to the entry, or load a "
        "Python @job('NoQueueJob', queue=...) with -r (Ruby reads the class's @queue, which a Python "
        "scheduler cannot see); the other schedules keep running",
    ]
    assert r.llen(K.queue("good")) == 3


def test_erb_is_refused_as_for_the_pool_file():
    with pytest.raises(Exception, match="ERB"):
        schedule.load_yaml("job: {cron: '<%= ENV[\"X\"] %>'}")


def test_rails_env_lists_filter_entries_as_ruby():
    assert schedule.env_matches("production, staging", "production")
    assert schedule.env_matches("staging production", "production")
    assert not schedule.env_matches("staging", "production")
    assert not schedule.env_matches("production", None)



# rails_env/env and custom_job_class against real resque-scheduler 5.0: scheduler_env.rb loaded
# scheduler_env.yml under RAILS_ENV=production and unset, and pushed each entry
# (enqueue_from_config); fixtures/ruby-interop/scheduler.json, "env_and_custom".
INTEROP = os.path.join(ROOT, "fixtures", "ruby-interop")
with open(os.path.join(INTEROP, "scheduler.json"), encoding="utf-8") as _fh:
    RUBY_ENV_RUN = json.load(_fh)["env_and_custom"]


def fire_env_file(resque, rails_env):
    with open(os.path.join(INTEROP, "scheduler_env.yml"), encoding="utf-8") as fh:
        static = schedule.load_yaml(fh.read())
    clock = Clock(utc("2026-12-07 05:31:59.500"))
    scheduler = make_scheduler(resque, clock, static, env=rails_env)
    scheduler.tick()
    clock.set("2026-12-07 05:32:00.500")  # every 1s: each loaded entry fires once
    scheduler.tick()
    return static


@pytest.mark.parametrize("rails_env, label", [("production", "production"), (None, "unset")])
def test_env_and_rails_env_load_the_entries_ruby_loaded(r, resque, rails_env, label):
    static = fire_env_file(resque, rails_env)
    fired = sorted(name for name in static if r.llen(K.queue(name)))
    assert fired == RUBY_ENV_RUN["loaded"][label]
    # the env: spelling alone, and rails_env winning over env unless null ("" wins and matches nothing)
    assert ("env_prod" in fired, "empty_rails_env" in fired, "rails_env_wins" in fired) == (rails_env is not None, False, False)


def test_custom_job_class_enqueues_the_bytes_ruby_enqueued(r, resque):
    static = fire_env_file(resque, "production")
    for name in RUBY_ENV_RUN["loaded"]["production"]:
        assert r.lrange(K.queue(name), 0, -1) == RUBY_ENV_RUN["pushed"][name], name
    assert r.lrange(K.queue("custom"), 0, -1) == ['{"class":"CustomJobClass","args":[{"a":1}]}']
    assert r.lrange(K.queue("custom_resque_job"), 0, -1) == ['{"class":"ScheduledJob","args":[1,{"b":2}]}']
    assert r.lrange(K.queue("custom_no_class"), 0, -1) == ['{"class":"CustomJobClass","args":["x"]}']
    r.flushdb()  # Queue now / enqueue-now: the same bytes, whatever the env
    store = recurring.ScheduleStore(resque.redis, K)
    for name, config in static.items():
        recurring.enqueue_now(store, name, config)
    assert {name: r.lrange(K.queue(name), 0, -1) for name in static} == RUBY_ENV_RUN["pushed"]


# -- resque-py schedule ----------------------------------------------------------------------------

def cli(*args):
    return subprocess.run([sys.executable, "-m", "resque_compat", "--redis", REDIS_URL, "schedule", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=30)


def test_schedule_commands_use_the_keys_resque_web_reads(r):
    done = cli("set", "nightly", "--cron", "0 5 * * * Europe/Stockholm", "--class", "NightlyReport",
               "--queue", "reports", "--args", '[1,"x"]')
    assert done.returncode == 0, done.stderr
    assert r.hget(K.persistent_schedules, "nightly") == \
        '{"class":"NightlyReport","cron":"0 5 * * * Europe/Stockholm","queue":"reports","args":[1,"x"]}'
    assert r.smembers(K.schedules_changed) == {"nightly"}
    bad = cli("set", "broken", "--cron", "0 5 * * * Mars/Base", "--class", "X", "--queue", "q")
    assert bad.returncode == 2 and "schedule 'broken': cron (time zone)" in bad.stderr
    listed = cli("list", "--json")
    assert json.loads(listed.stdout)["nightly"]["last_enqueued_at"] is None
    shown = json.loads(cli("show", "nightly").stdout)
    assert shown["next_run"].endswith(("+0100", "+0200")) and shown["source"] == "persistent"
    now = cli("enqueue-now", "nightly")
    assert now.returncode == 0, now.stderr
    assert r.lrange(K.queue("reports"), 0, -1) == ['{"class":"NightlyReport","args":[1,"x"]}']
    assert not r.exists(K.last_enqueued_at)  # Queue now records no run, as resque-web's
    assert cli("remove", "nightly").returncode == 0
    assert not r.exists(K.persistent_schedules)
    assert cli("show", "nightly").returncode == 2


def test_a_persisted_static_entry_lives_in_redis_only_as_in_ruby(r, resque):
    static = schedule.load_yaml("kept: {every: 1s, class: ScheduledJob, queue: kept, persist: true}\n"
                                "memory: {every: 1s, class: ScheduledJob, queue: memory}\n")
    clock = Clock(utc("2026-12-07 05:30:00"))
    scheduler = make_scheduler(resque, clock, static, dynamic=True)
    assert r.hgetall(K.persistent_schedules) == {"kept": '{"every":"1s","class":"ScheduledJob","queue":"kept"}'}
    assert r.smembers(K.schedules_changed) == {"kept", "memory"}  # what Resque.schedule= SADDs
    scheduler.tick()
    resque.remove_schedule("kept")  # from anywhere: a dynamic scheduler stops it
    for second in (1, 2):
        clock.set(utc("2026-12-07 05:30:00") + second + 0.1)
        scheduler.tick()
    assert r.llen(K.queue("kept")) == 0 and r.llen(K.queue("memory")) == 2
