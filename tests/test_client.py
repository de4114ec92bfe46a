"""client.Resque against the real Redis: enqueue/dequeue bytes and validation as Ruby's, and
inspection numbers as Ruby's ``Resque.info`` reports them for the fixtures' data."""
from __future__ import annotations

import json

import pytest
import redis

from resque_compat import Resque, registry
from resque_compat.errors import (
    EncodeError,
    JobNotRegistered,
    NoClassError,
    NoQueueError,
)
from resque_compat.registry import job
from tests.conftest import REDIS_DB, REDIS_HOST, REDIS_PORT
from tests.keyspace import dump, load_fixture, load_keys
from tests.test_codec import FIXTURE_01_ARGS


def load_fixture_into(r, name):
    fx = load_fixture(name)
    load_keys(r, fx["keys"])
    return fx


@pytest.fixture
def registered():
    """Register job doubles for one test; forget only what this test registered."""
    mine = []

    def register(name, queue=None, target=None):
        try:
            spec = registry.lookup(name)
        except JobNotRegistered:
            spec = None
        if spec is not None and spec.queue == queue:
            return spec.target  # e.g. tests/jobs.py's Jobs::Nested, same queue
        if spec is not None:
            pytest.fail(f"{name} is already registered with queue {spec.queue!r}")
        if target is None:
            def target(*args):
                return args
        job(name, queue=queue)(target)
        mine.append(name)
        return target

    yield register
    for name in mine:
        registry.unregister(name)


# -- fixture 01, replayed from Python --------------------------------------------------------------

def test_fixture_01_scenario_replayed_from_python_gives_rubys_keyspace_exactly(r, resque, registered):
    critical_job = registered("CriticalJob", queue="critical")

    class Nested:
        @staticmethod
        def perform(*args):
            return args

    nested = registered("Jobs::Nested", queue="low", target=Nested)

    assert resque.enqueue(critical_job, *FIXTURE_01_ARGS) is True
    assert resque.enqueue(critical_job) is True
    assert resque.enqueue_to("low", critical_job, "to-low", 1) is True
    assert resque.enqueue(nested, "nested") is True

    ours = dump(r)
    assert ours == load_fixture("01_enqueue.json")["keys"]
    assert ours == load_fixture("11_enqueue_oj_adapter.json")["keys"]


def test_enqueue_by_registered_name_and_by_string_class(r, resque, registered):
    registered("CriticalJob", queue="critical")
    assert resque.enqueue("CriticalJob", "to-low", 1) is True
    assert resque.enqueue_to("low", "StringClass", 1) is True  # Ruby: a String class works
    assert r.lrange("resque:queue:critical", 0, -1) == ['{"class":"CriticalJob","args":["to-low",1]}']
    assert r.lrange("resque:queue:low", 0, -1) == ['{"class":"StringClass","args":[1]}']


def test_enqueue_writes_sadd_then_rpush_in_one_pipeline(r, resque, monkeypatch):
    resque.ping()  # connect first, so only the enqueue's own traffic is recorded
    sent = []
    connection_class = resque.redis.connection_pool.connection_class
    original = connection_class.send_packed_command

    def record(self, command, *args, **kwargs):
        sent.append(b"".join(command) if isinstance(command, (list, tuple)) else command)
        return original(self, command, *args, **kwargs)

    monkeypatch.setattr(connection_class, "send_packed_command", record)
    resque.enqueue_to("critical", "Archive", 44, "masterbrew")
    monkeypatch.undo()

    assert len(sent) == 1, "SADD and RPUSH must go to Redis in one round trip"
    data = sent[0]
    assert b"MULTI" not in data  # Resque core never uses MULTI (WIRE §1.2)
    assert data.index(b"SADD") < data.index(b"RPUSH")
    assert b'{"class":"Archive","args":[44,"masterbrew"]}' in data
    assert r.smembers("resque:queues") == {"critical"}


# -- validation, as Ruby's Job.create -----------------------------------------------------------------

def test_no_queue_is_rubys_no_queue_error(r, resque):
    with pytest.raises(NoQueueError) as info:
        resque.enqueue_to(None, "X")
    assert str(info.value) == "Jobs must be placed onto a queue. No queue could be inferred for class X"
    with pytest.raises(NoQueueError, match="No queue could be inferred for class X"):
        resque.enqueue_to(False, "X")
    assert r.keys("*") == []


def test_enqueue_of_a_job_without_a_registered_queue(r, resque, registered, unique):
    name = "NoQueue" + unique.upper()
    registered(name)
    with pytest.raises(NoQueueError) as info:
        resque.enqueue(name, 1)
    assert str(info.value).startswith(
        f"Jobs must be placed onto a queue. No queue could be inferred for class {name}")
    assert r.keys("*") == []


def test_empty_class_is_rubys_no_class_error(r, resque):
    for empty in ("", None):
        with pytest.raises(NoClassError) as info:
            resque.enqueue_to("q", empty)
        assert str(info.value) == "Jobs must be given a class."
    assert r.keys("*") == []


def test_empty_string_queue_is_accepted_like_ruby(r, resque):
    assert resque.enqueue_to("", "X", 1) is True
    assert r.smembers("resque:queues") == {""}
    assert r.lrange("resque:queue:", 0, -1) == ['{"class":"X","args":[1]}']


def test_unencodable_args_write_nothing(r, resque):
    with pytest.raises(EncodeError, match="NaN"):
        resque.enqueue_to("q", "X", float("nan"))
    with pytest.raises(EncodeError):
        resque.enqueue_to("q", "X", {1, 2})
    assert r.keys("*") == []


def test_unregistered_job_object_is_refused(resque):
    with pytest.raises(JobNotRegistered):
        resque.enqueue(lambda: None)


# -- dequeue, as Ruby's Job.destroy ---------------------------------------------------------------------

def test_dequeue_with_args_removes_only_byte_identical_items(r, resque):
    exact = '{"class":"Archive","args":[1,"a"]}'
    not_removed = [
        '{"class": "Archive", "args": [1, "a"]}',       # Python's default spacing
        '{"args":[1,"a"],"class":"Archive"}',           # other key order
        '{"class":"Archive","args":[1,"a"],"id":"x"}',  # an extra key
        '{"class":"Archive","args":[1.0,"a"]}',         # a float, not the int
    ]
    r.rpush("resque:queue:q", exact, *not_removed, exact, '{"class":"Archive","args":[2]}')
    assert resque.dequeue("Archive", 1, "a", queue="q") == 2
    assert r.lrange("resque:queue:q", 0, -1) == not_removed + ['{"class":"Archive","args":[2]}']


def test_dequeue_without_args_removes_every_job_of_the_class_however_formatted(r, resque):
    items = [
        '{"class":"Archive","args":[1]}',
        '{"class": "Archive", "args": [2]}',
        '{"args":[3],"class":"Archive"}',
        '{"class":"Other","args":[1]}',
        '{"class":"Archive","args":[1]}',
        "not json",
        '{"class":"Archive::Sub","args":[]}',
    ]
    r.rpush("resque:queue:q", *items)
    assert resque.dequeue("Archive", queue="q") == 4
    assert r.lrange("resque:queue:q", 0, -1) == [items[3], items[5], items[6]]
    assert resque.dequeue("Missing", queue="q") == 0


def test_dequeue_removes_items_ruby_wrote(r, resque, registered):
    load_fixture_into(r, "01_enqueue.json")
    assert resque.dequeue("CriticalJob", *FIXTURE_01_ARGS, queue="critical") == 1
    assert resque.dequeue("CriticalJob", "to-low", 1, queue="low") == 1
    nested = registered("Jobs::Nested", queue="low")
    assert resque.dequeue(nested) == 1   # queue from the registration, as Ruby's queue_from_class
    assert r.lrange("resque:queue:critical", 0, -1) == ['{"class":"CriticalJob","args":[]}']
    assert r.exists("resque:queue:low") == 0
    assert r.smembers("resque:queues") == {"critical", "low"}  # names stay, as in Ruby


def test_dequeue_without_a_queue_for_an_unqueued_class_is_an_error(resque, registered, unique):
    name = "NoQueue" + unique.upper()
    registered(name)
    with pytest.raises(NoQueueError):
        resque.dequeue(name)


# -- inspection ------------------------------------------------------------------------------------

def _ruby_info(keys, ns="resque"):
    """Resque.info computed from raw fixture data with Ruby's definitions (WIRE §5.1)."""
    def value(key, default):
        entry = keys.get(f"{ns}:{key}")
        return entry["value"] if entry else default

    queues = value("queues", [])
    workers = value("workers", [])
    return {
        "pending": sum(len(value(f"queue:{q}", [])) for q in queues),
        "processed": int(value("stat:processed", "0")),
        "queues": len(queues),
        "workers": len(workers),
        "working": sum(1 for w in workers if value(f"worker:{w}", "")),
        "failed": len(value("failed", [])),
    }


@pytest.mark.parametrize("fixture", ["01_enqueue.json", "03_worker_busy.json", "04_processed.json",
                                     "05_failure_requeued.json", "07b_wildcard_priority_and_exclusion.json",
                                     "10_failed_multi_queue.json", "14b_foreign_worker_kept.json"])
def test_info_matches_ruby_for_fixture_data(r, resque, fixture, monkeypatch):
    monkeypatch.delenv("RAILS_ENV", raising=False)
    monkeypatch.delenv("RACK_ENV", raising=False)
    fx = load_fixture_into(r, fixture)
    info = resque.info()
    assert list(info) == ["pending", "processed", "queues", "workers", "working", "failed",
                          "servers", "environment"]
    expected = _ruby_info(fx["keys"])
    expected.update(servers=[f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"], environment="development")
    assert info == expected


def test_info_for_fixture_04_in_numbers(r, resque, monkeypatch):
    monkeypatch.setenv("RAILS_ENV", "production")
    load_fixture_into(r, "04_processed.json")
    info = resque.info()
    assert (info["pending"], info["processed"], info["failed"], info["workers"], info["working"],
            info["queues"]) == (0, 4, 1, 1, 0, 1)
    assert info["environment"] == "production"


def test_info_counts_only_workers_whose_job_key_is_non_empty(r, resque):
    r.sadd("resque:workers", "vm:1:a", "vm:2:a", "vm:3:a")
    r.set("resque:worker:vm:1:a", '{"queue":"a","run_at":"2026-11-27T12:01:30Z","payload":{}}')
    r.set("resque:worker:vm:2:a", "")
    r.set("resque:stat:processed", "junk")
    info = resque.info()
    assert (info["workers"], info["working"], info["processed"]) == (3, 1, 0)
    assert resque.working() == ["vm:1:a"]


def test_workers_working_and_failed_for_fixtures(r, resque):
    fx = load_fixture_into(r, "03_worker_busy.json")
    assert resque.workers() == [fx["worker_id"]]
    assert resque.working() == [fx["worker_id"]]
    r.flushdb()
    fx = load_fixture_into(r, "04_processed.json")
    assert resque.working() == []
    raw = fx["keys"]["resque:failed"]["value"][0]
    assert resque.failed(0, 1) == [json.loads(raw)]
    assert resque.failed(1, 1) == []


def test_peek_size_queues_and_remove_queue(r, resque):
    load_fixture_into(r, "01_enqueue.json")
    low = [json.loads(x) for x in load_fixture("01_enqueue.json")["keys"]["resque:queue:low"]["value"]]
    assert resque.queues() == ["critical", "low"]
    assert (resque.size("critical"), resque.size("low"), resque.size("none")) == (2, 2, 0)
    assert resque.peek("low") == low[0]                   # count 1: one item, not a list
    assert resque.peek("low", 1) == low[1]
    assert resque.peek("low", 0, 2) == low                # otherwise a list
    assert resque.peek("low", 5, 2) == []
    assert resque.peek("none") is None
    critical = resque.peek("critical")
    assert critical["args"][4] == 1.0 and isinstance(critical["args"][4], float)
    assert critical["args"][17] == 2 ** 70

    resque.remove_queue("low")
    assert resque.queues() == ["critical"]
    assert r.exists("resque:queue:low") == 0
    assert set(dump(r)) == {"resque:queue:critical", "resque:queues"}


def test_peek_returns_undecodable_items_as_text(r, resque):
    r.rpush("resque:queue:q", "not json")
    assert resque.peek("q") == "not json"


# -- namespaces ------------------------------------------------------------------------------------

@pytest.mark.parametrize("namespace", ["myns", "resque:GitHub"])
def test_custom_and_nested_namespace(r, redis_url, namespace):
    client = Resque.from_url(redis_url, namespace)
    try:
        client.enqueue_to("x", "X", 1)
        assert r.lrange(f"{namespace}:queue:x", 0, -1) == ['{"class":"X","args":[1]}']
        assert r.smembers(f"{namespace}:queues") == {"x"}
        assert client.queues() == ["x"] and client.info()["pending"] == 1
        assert set(r.keys("*")) == {f"{namespace}:queue:x", f"{namespace}:queues"}
    finally:
        client.redis.connection_pool.disconnect()


def test_unreachable_redis_names_the_url():
    client = Resque.from_url("redis://127.0.0.1:1/0")
    from resque_compat.errors import RedisUnavailable

    with pytest.raises(RedisUnavailable, match="redis://127.0.0.1:1/0"):
        client.ping()


def test_client_reads_bytes_not_decoded_strings(resque):
    """The client must see raw bytes, so LREM arguments are exactly what Redis holds."""
    assert isinstance(resque.redis, redis.Redis)
    assert not resque.redis.connection_pool.connection_kwargs.get("decode_responses", False)
