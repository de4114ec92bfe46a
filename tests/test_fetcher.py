"""The fetcher in-process: batching, and the lost-reply cases a Redis failure can cause."""
from __future__ import annotations

import json

import gevent
import pytest
import redis

from resque_compat.runtime import fetcher as fetcher_module
from resque_compat.runtime.fetcher import Fetcher
from resque_compat.store.store import Store, connect
from resque_compat.wire.keys import Keys
from resque_compat.wire.queues import QueueList
from tests.conftest import REDIS_URL


class FlakyStore(Store):
    """A real Store whose next script call fails before or after it ran (a lost reply)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.fail_next = None  # "before" | "after" | None

    def finish_and_reserve(self, *args, **kwargs):
        mode, self.fail_next = self.fail_next, None
        if mode == "before":
            raise redis.ConnectionError("simulated: connection lost before sending")
        result = super().finish_and_reserve(*args, **kwargs)
        if mode == "after":
            raise redis.ConnectionError("simulated: reply lost after the script ran")
        return result


@pytest.fixture
def store(r):
    return FlakyStore(connect(REDIS_URL, max_connections=4), Keys("resque"))


def make_fetcher(store, queues=("critical",), interval=5.0):
    return Fetcher(store, QueueList(list(queues)), interval=interval, min_interval=interval,
                   max_interval=interval, backoff_interval=0.1, poll_cap=0.01)


def push(r, *payloads, queue="critical"):
    r.sadd("resque:queues", queue)
    r.rpush("resque:queue:" + queue, *payloads)


def test_one_trip_serves_many_waiting_slots(r, store):
    push(r, *[json.dumps({"class": "X", "args": [n]}) for n in range(5)])
    fetcher = make_fetcher(store)
    runner = gevent.spawn(fetcher.run)
    slots = [gevent.spawn(fetcher.reserve, f"w{n}") for n in range(5)]
    jobs = [s.get(timeout=5) for s in slots]
    assert sorted(j.args[0] for j in jobs) == [0, 1, 2, 3, 4]
    assert fetcher.round_trips <= 3
    for n, j in enumerate(jobs):
        fetcher.done_working(j, f"w{n}")
    fetcher.close()
    runner.get(timeout=5)
    assert r.get("resque:stat:processed") == "5"
    assert not r.keys("resque:worker:*")


def test_on_a_busy_hub_a_trip_starts_once_enough_slots_wait(r, store, monkeypatch):
    """A hub that never goes idle (W2's stream of HTTP replies) used to hold every trip to the
    COALESCE cap; the trip now starts as soon as COALESCE_BATCH slots wait, and not before."""
    monkeypatch.setattr(fetcher_module, "COALESCE", 60.0)  # only the batch can end the wait
    batch = fetcher_module.COALESCE_BATCH
    push(r, *[json.dumps({"class": "X", "args": [n]}) for n in range(batch)])
    spinning = True

    def spin() -> None:  # a ready greenlet at every turn: the hub never goes idle
        while spinning:
            gevent.sleep(0)

    spinner = gevent.spawn(spin)
    fetcher = make_fetcher(store)
    runner = gevent.spawn(fetcher.run)
    slots = [gevent.spawn(fetcher.reserve, f"w{n}") for n in range(batch - 1)]
    for _ in range(2000):
        gevent.sleep(0)
    assert fetcher.round_trips == 0 and not any(s.ready() for s in slots)
    slots.append(gevent.spawn(fetcher.reserve, f"w{batch - 1}"))
    jobs = [s.get(timeout=5) for s in slots]
    assert sorted(j.args[0] for j in jobs) == list(range(batch))
    assert fetcher.round_trips == 1
    spinning = False
    spinner.join()
    for n, j in enumerate(jobs):
        fetcher.done_working(j, f"w{n}")
    fetcher.close()
    runner.get(timeout=5)
    assert r.get("resque:stat:processed") == str(batch)


@pytest.mark.parametrize("mode", ["before", "after"])
def test_lost_reply_neither_loses_nor_double_counts(r, store, mode):
    push(r, '{"class":"X","args":[1]}', '{"class":"X","args":[2]}')
    fetcher = make_fetcher(store)
    runner = gevent.spawn(fetcher.run)
    first = gevent.spawn(fetcher.reserve, "w0").get(timeout=5)
    assert first.args == [1]
    store.fail_next = mode  # the next trip both finishes job 1 and reserves job 2
    second = gevent.spawn(fetcher.reserve, "w0")
    fetcher.done_working(first, "w0", failure='{"failed_at":"x"}')
    job = second.get(timeout=5)
    assert job is not None and job.args == [2]
    assert json.loads(r.get("resque:worker:w0"))["payload"] == {"class": "X", "args": [2]}
    fetcher.done_working(job, "w0")
    fetcher.close()
    runner.get(timeout=5)
    assert r.get("resque:stat:processed") == "2"
    assert r.get("resque:stat:processed:w0") == "2"
    assert r.get("resque:stat:failed") == "1"
    assert r.lrange("resque:failed", 0, -1) == ['{"failed_at":"x"}']
    assert not r.exists("resque:queue:critical", "resque:worker:w0")


def test_lost_reply_for_a_non_object_payload_recovers_its_exact_bytes(r, store):
    raw = b'[1,"\xc3\xa9\\n"]\x01'
    r.sadd("resque:queues", "critical")
    r.rpush("resque:queue:critical", raw)
    fetcher = make_fetcher(store)
    runner = gevent.spawn(fetcher.run)
    store.fail_next = "after"
    job = gevent.spawn(fetcher.reserve, "w0").get(timeout=5)
    assert job.raw == raw.decode("utf-8", errors="replace")
    assert job.problem and "not valid JSON" in job.problem
    record = json.loads(r.get("resque:worker:w0"))
    assert list(record) == ["queue", "run_at", "payload"] and isinstance(record["payload"], str)
    fetcher.done_working(job, "w0")
    fetcher.close()
    runner.get(timeout=5)
    assert r.get("resque:stat:processed") == "1"


def test_pause_all_workers_takes_nothing(r, store):
    push(r, '{"class":"X","args":[]}')
    r.set("resque:pause-all-workers", "true")
    fetcher = make_fetcher(store)
    runner = gevent.spawn(fetcher.run)
    slot = gevent.spawn(fetcher.reserve, "w0")
    gevent.sleep(0.1)  # several poll periods: the slot must still be waiting
    assert not slot.ready() and fetcher.redis_paused
    assert r.llen("resque:queue:critical") == 1
    r.delete("resque:pause-all-workers")
    assert slot.get(timeout=5).class_name == "X"
    fetcher.done_working(slot.value, "w0")
    fetcher.close()
    runner.get(timeout=5)
