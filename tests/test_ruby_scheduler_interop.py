"""What real Ruby (resque 3.0.0 + resque-scheduler 5.0.0, rufus-scheduler 3.8.2, sinatra 3.0.5)
did beside a Python scheduler: fixtures/ruby-interop/scheduler.json, recorded by
fixtures/ruby-interop/scheduler_capture.sh (see the README there; the suite needs no Ruby).

* ``resque_web``: resque-web's Schedule tab and its "Queue now" over the keys our scheduler
  wrote for scheduler_schedule.yml (issue 13, requirement 5). The tests re-create that state
  with today's code and compare it with what Ruby read, byte for byte except for times.
* ``handover``: leadership Python -> Ruby -> Python on one every-second cron (requirement 7),
  and the commands the Ruby leader sent (MONITOR), which tests/ruby_scheduler.py emulates.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import uuid

import redis

import tests.scheduler_interop_jobs as jobs
from resque_compat import testing
from resque_compat.scheduler import recurring, schedule
from resque_compat.wire.keys import Keys
from tests.conftest import REDIS_DB, REDIS_HOST, REDIS_PORT, ROOT
from tests.keyspace import dump
from tests.ruby_recording import monitor_commands, normal_keys, shape
from tests.ruby_scheduler import ACQUIRE, LOCKED, ruby_leads, ruby_quits, ruby_runs
from tests.test_recurring import Clock, make_scheduler, utc

K = Keys()
HERE = os.path.join(ROOT, "fixtures", "ruby-interop")
with open(os.path.join(HERE, "scheduler.json"), encoding="utf-8") as fh:
    RECORD = json.load(fh)
WEB = RECORD["resque_web"]
HANDOVER = RECORD["handover"]
with open(os.path.join(HERE, "scheduler_schedule.yml"), encoding="utf-8") as fh:
    STATIC = schedule.load_yaml(fh.read(), "scheduler_schedule.yml")
PYTHON_ONLY = {"class": "InteropPython", "every": "1s", "args": ["py"]}  # set from Python, persisted


def without_lengths(keys):
    """Lists as their distinct items: how many runs the recorded scheduler made before Ruby read
    them depends on timing, not on what it writes."""
    return {k: {f: v for f, v in e.items() if f != "length"} for k, e in keys.items()}


def python_scheduler_state(r, resque):
    """The recorded situation with today's code: python_only set from Python, the file loaded,
    and one leader tick at each entry's first slot."""
    resque.set_schedule("python_only", dict(PYTHON_ONLY), persist=True)
    clock = Clock(utc("2026-12-07 05:31:59.500"))  # no */5 minute or 05:00 Stockholm slot near
    scheduler = make_scheduler(resque, clock, STATIC)
    scheduler.tick()  # leads
    clock.set("2026-12-07 05:32:00.500")  # the per-second cron's 05:32:00, and every 1s / first_in 1s
    scheduler.tick()
    return normal_keys(dump(r))


def all_schedules(r):
    persisted = {n: json.loads(v) for n, v in
                 WEB["keys_ruby_read"]["resque:persistent_schedules"]["value"].items()}
    return {**{n: c for n, c in STATIC.items() if not c.get("persist")}, **persisted}


# -- resque-web's Schedule tab (requirement 5) ---------------------------------------------------

def test_python_still_writes_what_ruby_resque_web_read(r, resque):
    assert without_lengths(python_scheduler_state(r, resque)) == without_lengths(WEB["keys_ruby_read"])


def escape_html(text):
    """Rack::Utils.escape_html, as resque-web's h()."""
    for a, b in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("'", "&#x27;"), ('"', "&quot;"), ("/", "&#x2F;")):
        text = text.replace(a, b)
    return text


def test_resque_web_showed_each_schedule_with_our_interval_queue_and_last_run(r):
    out = WEB["resque_web_output"]
    assert out[0] == "GET /schedule -> 200" and WEB["resque_web_stderr"] == []
    last_run = WEB["keys_ruby_read"]["resque:delayed:last_enqueued_at"]["value"]
    schedules = all_schedules(r)
    rows = out[1:1 + len(schedules)]
    for index, name in enumerate(sorted(schedules), 1):
        entry = schedule.build(name, schedules[name], default_zone=dt.timezone.utc, queue_of=lambda c: None)
        row = rows[index - 1]
        skipped = name == "staging_only"  # rails_env: staging, resque-web under RAILS_ENV=production
        assert row.startswith(("[skipped in this env] " if skipped else "") + f"{index}. {name} "), row
        cells = f" {escape_html(entry.trigger.describe())} {entry.class_name} {entry.queue} "
        assert cells in row, (cells, row)
        assert row.endswith(" <Time#to_s>" if name in last_run else " Never"), row
    assert set(last_run) == {"custom", "env_spelling", "every_with_options", "per_second", "python_only"}
    assert out[1 + len(schedules)] == "Current master: <host:pid>"  # our scheduler's lock value
    assert out[2 + len(schedules):] == [f"Queue now {n} -> 302 http://example.org/overview" for n in sorted(schedules)]


def test_ruby_resque_web_rewrote_our_persisted_entry_with_the_same_bytes():
    """Loading the file in resque-web (``Resque.schedule=``) persisted ``persisted`` again and
    marked every name changed: nothing but the queues Queue now pushed to differs."""
    before, after = WEB["keys_ruby_read"], WEB["keys_after_resque_web"]
    lists = {k for k, e in after.items() if e["type"] == "list"} | {K.queues}
    assert {k: e for k, e in after.items() if k not in lists} == {k: e for k, e in before.items() if k not in lists}
    assert set(after) - set(before) == set(WEB["queue_now_pushed"]) - set(before)


def test_queue_now_pushed_what_resque_py_enqueue_now_pushes(r, resque):
    store = recurring.ScheduleStore(resque.redis, K)
    for name, config in all_schedules(r).items():
        recurring.enqueue_now(store, name, config)
    ours = {k: sorted(e["value"]) for k, e in dump(r).items() if e["type"] == "list"}
    assert ours == {k: sorted(v) for k, v in WEB["queue_now_pushed"].items()}


def test_our_worker_runs_every_item_rubys_queue_now_pushed(r, resque):
    jobs.RAN.clear()
    for key, items in WEB["queue_now_pushed"].items():
        r.sadd(K.queues, key[len(K.queue("")):])  # as Ruby's push did (SADD queues, RPUSH)
        r.rpush(key, *items)
    result = testing.drain(resque)
    assert (result.processed, result.failed) == (9, 0), result.failures
    pushed = [json.loads(item) for items in WEB["queue_now_pushed"].values() for item in items]
    assert sorted(map(repr, jobs.RAN)) == sorted(repr((p["class"], p["args"])) for p in pushed)


# -- Ruby <-> Python handover (requirement 7) ------------------------------------------------------

def test_the_recorded_handover_ran_every_slot_once_across_three_leaders():
    rec = HANDOVER["record"]
    assert [leader["name"] for leader in rec["leaders"]] == ["python A", "ruby", "python B"]
    slots = [leader["slots"] for leader in rec["leaders"]]
    assert all(len(s) >= 3 for s in slots)
    assert max(slots[0]) < min(slots[1]) and max(slots[1]) < min(slots[2])  # no slot run by two
    everything = [slot for s in slots for slot in s]
    assert set(rec["runs_per_slot"].values()) == {1} and sorted(rec["runs_per_slot"]) == sorted(everything)
    assert rec["pushed"] == len(everything)
    assert rec["last_enqueued_at"] == max(everything) + " +0000"
    assert rec["queue_items"] == ['{"class":"ScheduledJob","args":[]}']
    # Python took over from Ruby's SIGQUIT with no slot lost; after the kill -9 of Python A,
    # Ruby (rufus starts afresh: our "skip") left the slots until the 2 s lock expired unrun
    seconds = [[dt.datetime.fromisoformat(t).timestamp() for t in s] for s in slots]
    assert min(seconds[2]) - max(seconds[1]) == 1
    assert 1 < min(seconds[1]) - max(seconds[0]) <= 4
    assert HANDOVER["ruby_client_connections"] == 1


RUBY_SENT = [shape(c) for c in HANDOVER["ruby_commands"]]


def monitored(r, action):
    """The commands Redis received on the test DB while ``action`` ran (MONITOR, as recorded)."""
    watcher = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB, decode_responses=True,
                          socket_timeout=10)
    token = uuid.uuid4().hex
    lines = []
    with watcher.monitor() as monitor:
        action()
        r.echo(token)
        while token not in (line := monitor.connection.read_response()):
            lines.append(line)
    watcher.close()
    return [shape(c) for c in monitor_commands(lines, REDIS_DB)]


def recorded(first_word, length):
    """Each place in Ruby's commands where a sequence of ``length`` starts at ``first_word``."""
    return [RUBY_SENT[i:i + length] for i, c in enumerate(RUBY_SENT) if c[1] == first_word]


def test_ruby_runs_sends_what_the_real_ruby_leader_sent_for_each_run(r):
    runs = [RUBY_SENT[i - 1:i + 2] for i, c in enumerate(RUBY_SENT) if c[1] == "RPUSH"]
    assert len(runs) == len(HANDOVER["record"]["leaders"][1]["slots"])
    assert runs[0] == [["client", "SADD", K.queues, "tick"],
                       ["client", "RPUSH", K.queue("tick"), '{"class":"ScheduledJob","args":[]}'],
                       ["client", "HSET", K.last_enqueued_at, "every_second", "<Time#to_s>"]]
    assert all(run == runs[0] for run in runs)
    assert monitored(r, lambda: ruby_runs(r, "every_second", "2026-12-07 05:30:00.400", queue="tick")) == runs[0]


def test_ruby_leads_and_quits_send_what_the_real_ruby_leader_sent(r):
    lock = K.scheduler_master_lock()
    taken = [seq for seq in recorded("EVALSHA", 3) if [c[:2] for c in seq[1:]] == [["lua", "SETNX"], ["lua", "EXPIRE"]]]
    assert taken, "the recording has Ruby's successful acquire"
    ours = [c for c in monitored(r, lambda: ruby_leads(r)) if c[1] != "SCRIPT"]
    assert ours == taken[0] == [["client", "EVALSHA", "<sha>", "1", lock, "<host:pid>"],
                                ["lua", "SETNX", lock, "<host:pid>"], ["lua", "EXPIRE", lock, "<lock timeout>"]]
    assert [c for c in monitored(r, lambda: ruby_quits(r)) if c[1] != "SCRIPT"] == RUBY_SENT[-5:]
    assert RUBY_SENT[-1] == ["client", "DEL", lock] and not r.exists(lock)
    # the same scripts, byte for byte: the recorded run used LOCK_TIMEOUT=2
    loaded = [c[3] for c in HANDOVER["ruby_commands"] if c[1:3] == ["SCRIPT", "load"]]
    assert loaded == [ACQUIRE.format(timeout=2), LOCKED.format(timeout=2)]
    shas = {c[2] for c in HANDOVER["ruby_commands"] if c[1] == "EVALSHA"}
    assert shas == {hashlib.sha1(s.encode()).hexdigest() for s in loaded}

