"""ActiveJob in and out (WIRE §2.6): Rails' payloads from fixtures 08/08b run by a real worker,
argument decoding/encoding tables, failure entries, and enqueue bytes compared with fixture 08."""
from __future__ import annotations

import datetime as dt
import json
import pickle
import re
import socket
import uuid
from decimal import Decimal

import pytest

from resque_compat import activejob, client
from resque_compat.activejob import JOB_WRAPPER, GlobalID, Range, Symbol
from resque_compat.errors import EncodeError, PayloadError
from resque_compat.wire import codec
from resque_compat.wire.activejob_args import (
    DESERIALIZERS,
    deserialize,
    deserialize_arguments,
    serialize,
    serialize_arguments,
)
from tests.conftest import ROOT
from tests.keyspace import dump, load_fixture

AJ_JOBS = f"{ROOT}/tests/aj_jobs.py"
HOST = socket.gethostname()
UTC = dt.timezone.utc
IST = dt.timezone(dt.timedelta(hours=5, minutes=30))
S = "ActiveJob::Serializers::"

FIXTURE_08 = load_fixture("08_activejob.json")
FIXTURE_08_ITEMS = FIXTURE_08["keys"]["resque:queue:critical"]["value"]
FIXTURE_08B_ITEMS = [entry["value"][0] for key, entry in load_fixture("08b_activejob_scheduled.json")["keys"].items()
                     if key.startswith("resque:delayed:")]

#: The Ruby arguments of fixture 08's two perform_later calls, as Python values (description).
HASH_ARG = {Symbol("sym_key"): 1, "str_key": [1, 2.5, None], Symbol("nested"): {"a": True}}
FIXTURE_08_CALLS = [
    (["héllo ✓ \"q\"", 42, HASH_ARG], {"kw": "kwval"}),
    (["héllo ✓ \"q\"", 42, HASH_ARG, Symbol("a_symbol"), dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)],
     {"kw": Symbol("kw_sym")}),
]


def job_data_of(raw):
    return json.loads(raw)["args"][0]


# -- decoding: Rails JSON -> Python ---------------------------------------------------------------

def aj(name, **fields):
    return {"_aj_serialized": S + name, **fields}


@pytest.mark.parametrize("serialized, expected", [
    (aj("SymbolSerializer", value="three"), "three"),
    ({"a": 1, "b": aj("SymbolSerializer", value="c"), "_aj_symbol_keys": ["b"]}, {"a": 1, "b": "c"}),
    ({"a": {"x": 1, "_aj_symbol_keys": []}, "_aj_hash_with_indifferent_access": True}, {"a": {"x": 1}}),
    ({"_aj_globalid": "gid://myapp/Person/42"}, GlobalID("gid://myapp/Person/42", "myapp", "Person", "42")),
    ({"_aj_globalid": "gid://shop/Admin::User/7?tenant=a"},
     GlobalID("gid://shop/Admin::User/7?tenant=a", "shop", "Admin::User", "7")),
    (aj("TimeSerializer", value="2026-01-02T03:04:05.000000000Z"), dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
    (aj("TimeSerializer", value="2023-11-14T22:13:20.123456789+05:30"),
     dt.datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=IST)),
    (aj("TimeWithZoneSerializer", value="2024-06-01T12:00:00.500000000-04:00", time_zone="Eastern Time (US & Canada)"),
     dt.datetime(2024, 6, 1, 16, 0, 0, 500000, tzinfo=UTC)),
    (aj("DateTimeSerializer", value="2024-01-02T03:04:05.000000000+00:00"), dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
    (aj("DateSerializer", value="2026-01-02"), dt.date(2026, 1, 2)),
    (aj("DurationSerializer", value=300, parts=[[aj("SymbolSerializer", value="minutes"), 5]]), dt.timedelta(minutes=5)),
    (aj("DurationSerializer", value=1.5, parts=[[aj("SymbolSerializer", value="seconds"), 1.5]]), dt.timedelta(seconds=1.5)),
    ("0.15e1", "0.15e1"),  # Rails 6.1 writes a BigDecimal as a bare string: it stays one
    (aj("BigDecimalSerializer", value="1.5"), Decimal("1.5")),
    (aj("BigDecimalSerializer", value="0.15e1"), Decimal("1.5")),
    (aj("ModuleSerializer", value="Admin::User"), "Admin::User"),
    (aj("RangeSerializer", begin=1, end=5, exclude_end=False), range(1, 6)),
    (aj("RangeSerializer", begin=1, end=5, exclude_end=True), range(1, 5)),
    (aj("RangeSerializer", begin=1.5, end=2.5, exclude_end=False), Range(1.5, 2.5, False)),
    (aj("RangeSerializer", begin=1, end=None, exclude_end=False), Range(1, None, False)),
    ([1, [2, [aj("SymbolSerializer", value="x")]], None, True, 1.5], [1, [2, ["x"]], None, True, 1.5]),
])
def test_rails_arguments_decode_to_natural_python_values(serialized, expected):
    value = deserialize(serialized)
    assert value == expected
    assert type(value) is type(expected)


def test_keyword_arguments_are_the_last_ruby2_keywords_hash_only():
    # The argument list Rails 6.1 wrote in WIRE §2.6, decoded as a whole.
    arguments = json.loads(
        '[1,"two",{"_aj_serialized":"ActiveJob::Serializers::SymbolSerializer","value":"three"},'
        '{"a":1,"b":{"_aj_serialized":"ActiveJob::Serializers::SymbolSerializer","value":"c"},"_aj_symbol_keys":["b"]},'
        '{"_aj_globalid":"gid://myapp/Person/42"},"0.15e1",[1,[2]],null,true,1.5,'
        '{"key":"kw","other":2,"_aj_ruby2_keywords":["key","other"]}]')
    args, kwargs = deserialize_arguments(arguments)
    assert args == [1, "two", "three", {"a": 1, "b": "c"}, GlobalID.parse("gid://myapp/Person/42"),
                    "0.15e1", [1, [2]], None, True, 1.5]
    assert kwargs == {"key": "kw", "other": 2}
    # Ruby only passes a flagged hash as keywords in last position.
    args, kwargs = deserialize_arguments([{"k": 1, "_aj_ruby2_keywords": ["k"]}, 2])
    assert (args, kwargs) == ([{"k": 1}, 2], {})


def test_unknown_serializer_is_refused_naming_it_and_the_fix():
    with pytest.raises(PayloadError) as info:
        deserialize([aj("MoneySerializer", cents=100)])
    assert "ActiveJob::Serializers::MoneySerializer" in str(info.value)
    assert "add_deserializer" in str(info.value)
    with pytest.raises(PayloadError, match="ISO 8601"):
        deserialize(aj("TimeSerializer", value="yesterday"))


def test_a_custom_serializer_can_be_taught():
    activejob.add_deserializer("MoneySerializer", lambda h: Decimal(h["cents"]) / 100)
    try:
        assert deserialize({"_aj_serialized": "MoneySerializer", "cents": 250}) == Decimal("2.5")
    finally:
        DESERIALIZERS.pop("MoneySerializer")


# -- encoding: Python -> Rails JSON ---------------------------------------------------------------

@pytest.mark.parametrize("value, json_text", [
    (Symbol("three"), '{"_aj_serialized":"ActiveJob::Serializers::SymbolSerializer","value":"three"}'),
    (dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),  # fixture 08's Time.utc(2024,1,2,3,4,5)
     '{"_aj_serialized":"ActiveJob::Serializers::TimeSerializer","value":"2024-01-02T03:04:05.000000000Z"}'),
    (dt.datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=IST),
     '{"_aj_serialized":"ActiveJob::Serializers::TimeSerializer","value":"2023-11-14T22:13:20.123456000+05:30"}'),
    (dt.date(2026, 1, 2), '{"_aj_serialized":"ActiveJob::Serializers::DateSerializer","value":"2026-01-02"}'),
    (dt.timedelta(minutes=5),
     '{"_aj_serialized":"ActiveJob::Serializers::DurationSerializer","value":300,"parts":'
     '[[{"_aj_serialized":"ActiveJob::Serializers::SymbolSerializer","value":"seconds"},300]]}'),
    (Decimal("1.5"), '{"_aj_serialized":"ActiveJob::Serializers::BigDecimalSerializer","value":"1.5"}'),
    (Decimal("1E+2"), '{"_aj_serialized":"ActiveJob::Serializers::BigDecimalSerializer","value":"100.0"}'),
    (GlobalID.build("myapp", "Person", 42), '{"_aj_globalid":"gid://myapp/Person/42"}'),
    ({"a": 1, Symbol("b"): Symbol("c")},
     '{"a":1,"b":{"_aj_serialized":"ActiveJob::Serializers::SymbolSerializer","value":"c"},"_aj_symbol_keys":["b"]}'),
    ({"a": True}, '{"a":true,"_aj_symbol_keys":[]}'),  # a Ruby string-keyed hash (fixture 08)
    (range(1, 5), '{"_aj_serialized":"ActiveJob::Serializers::RangeSerializer","begin":1,"end":5,"exclude_end":true}'),
    ((1, "two", None), '[1,"two",null]'),
])
def test_python_values_encode_as_rails_serializes_them(value, json_text):
    assert codec.encode(serialize(value)) == json_text


@pytest.mark.parametrize("value", [
    Symbol("s"), dt.datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=IST), dt.date(2020, 2, 29),
    dt.timedelta(seconds=90), Decimal("-0.001"), GlobalID.build("a", "B::C", "x1"),
    {"k": [1, {"n": None}]}, range(-3, 7), Range(0.5, None, True), [1.5, "x", False],
])
def test_encode_then_decode_gives_the_value_back(value):
    assert deserialize(json.loads(codec.encode(serialize(value)))) == value


def test_keyword_arguments_become_a_last_ruby2_keywords_hash():
    assert codec.encode(serialize_arguments([1], {"key": "kw", "other": 2})) == \
        '[1,{"key":"kw","other":2,"_aj_ruby2_keywords":["key","other"]}]'


@pytest.mark.parametrize("value, message", [
    ({1: "x"}, "must be strings"),
    ({("a",): 1}, "must be strings"),
    ({"_aj_symbol_keys": []}, "reserved"),
    ({"nested": {"_aj_globalid": "gid://x/Y/1"}}, "reserved"),
    (object(), "cannot pass object"),
    (Decimal("NaN"), "finite"),
])
def test_values_rails_would_refuse_are_refused_at_enqueue(value, message):
    with pytest.raises(EncodeError, match=message):
        serialize(value)


# -- enqueue: bytes vs fixture 08 -----------------------------------------------------------------

@pytest.mark.parametrize("index", [0, 1])
def test_job_data_bytes_equal_fixture_08_for_the_same_arguments(index):
    args, kwargs = FIXTURE_08_CALLS[index]
    ruby = job_data_of(FIXTURE_08_ITEMS[index])
    data = activejob.job_data("AjJob", args, kwargs, queue="critical", job_id=ruby["job_id"],
                              enqueued_at=ruby["enqueued_at"], timezone="UTC")
    assert codec.encode_job(JOB_WRAPPER, [data]) == FIXTURE_08_ITEMS[index]


@pytest.fixture
def utc_rails():
    activejob.configure(locale="en", timezone="UTC")
    yield
    activejob.configure()


def test_enqueue_active_job_writes_fixture_08s_keyspace(r, resque, utc_rails):
    ids = [activejob.enqueue_active_job("AjJob", *FIXTURE_08_CALLS[0][0], queue="critical", resque=resque,
                                        **FIXTURE_08_CALLS[0][1]),
           resque.enqueue_active_job("AjJob", *FIXTURE_08_CALLS[1][0], queue="critical", **FIXTURE_08_CALLS[1][1])]
    ours = dump(r)
    items = ours["resque:queue:critical"]["value"]
    for i, raw in enumerate(items):
        data = job_data_of(raw)
        assert data["job_id"] == ids[i] and uuid.UUID(ids[i]).version == 4
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", data["enqueued_at"])
        ruby = job_data_of(FIXTURE_08_ITEMS[i])
        items[i] = raw.replace(ids[i], ruby["job_id"]).replace(data["enqueued_at"], ruby["enqueued_at"])
    assert ours == FIXTURE_08["keys"]
    assert ids[0] != ids[1]


def test_enqueue_active_job_defaults_to_the_process_client(r, resque):
    client.set_default(resque)
    try:
        job_id = activejob.enqueue_active_job("WelcomeMailerJob", GlobalID.build("app", "User", 1))
    finally:
        client.set_default(None)
    data = job_data_of(r.lindex("resque:queue:default", 0))
    assert data["job_id"] == job_id and data["queue_name"] == "default"
    assert data["timezone"] is None and data["locale"] == "en"  # Rails without Time.zone set
    assert data["arguments"] == [{"_aj_globalid": "gid://app/User/1"}]


# -- a real worker runs Rails' payloads -----------------------------------------------------------

def push(r, queue, raw):
    r.sadd("resque:queues", queue)
    r.rpush("resque:queue:" + queue, raw)


def reports(r, key="test:aj"):
    return [pickle.loads(bytes.fromhex(item)) for item in r.lrange(key, 0, -1)]


def drain(r, run_worker, *items):
    for raw in items:
        push(r, "critical", raw)
    worker = run_worker("QUEUE=critical", "INTERVAL=0", jobs=("tests.aj_jobs",))
    assert worker.code == 0, worker.output
    return worker


def test_fixture_08_and_08b_payloads_run_the_registered_python_job(r, run_worker):
    # 08b's items carry resque-scheduler's extra "queue" key: harmless, as for Ruby workers.
    drain(r, run_worker, *FIXTURE_08_ITEMS, *FIXTURE_08B_ITEMS)
    got = reports(r)
    assert len(got) == 4
    decoded_hash = {"sym_key": 1, "str_key": [1, 2.5, None], "nested": {"a": True}}
    assert got[0]["args"] == ("héllo ✓ \"q\"", 42, decoded_hash) and got[0]["kwargs"] == {"kw": "kwval"}
    assert got[1]["args"] == ("héllo ✓ \"q\"", 42, decoded_hash, "a_symbol",
                              dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert got[1]["kwargs"] == {"kw": "kw_sym"}
    assert {got[2]["kwargs"].get("kw"), got[3]["args"]} == {"later", ("at", 1)}
    for report, raw in zip(got, FIXTURE_08_ITEMS + FIXTURE_08B_ITEMS):
        meta, ruby = report["meta"], job_data_of(raw)
        assert (meta.job_class, meta.job_id, meta.queue_name) == ("AjJob", ruby["job_id"], "critical")
        assert (meta.executions, meta.locale, meta.timezone, meta.priority) == (1, "en", "UTC", None)
        assert meta.enqueued_at == dt.datetime.strptime(ruby["enqueued_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        assert meta.scheduled_at is None and meta.kwargs == report["kwargs"]
    assert r.get("resque:stat:processed") == "4" and r.llen("resque:failed") == 0


def rails_71_payload(job_class, arguments, **extra):
    """A payload as Rails 7.1's job.serialize + the adapter write it (field set from Rails
    core.rb at 7.1: enqueued_at with 9 digits, scheduled_at); no Ruby fixture exists for 7.1."""
    data = {"job_class": job_class, "job_id": str(uuid.uuid4()), "provider_job_id": None,
            "queue_name": "critical", "priority": 5, "arguments": arguments, "executions": 2,
            "exception_executions": {"[Timeout::Error]": 2}, "locale": "fr", "timezone": "Europe/Paris",
            "enqueued_at": "2026-11-27T11:57:00.123456789Z", "scheduled_at": "2026-11-27T12:00:00.000000000Z",
            **extra}
    return codec.encode_job(JOB_WRAPPER, [data])


def test_rails_71_field_set_and_serializers_run(r, run_worker):
    arguments = [aj("BigDecimalSerializer", value="12.50"), aj("RangeSerializer", begin=1, end=3, exclude_end=False),
                 aj("TimeWithZoneSerializer", value="2026-03-01T10:00:00.000000000+01:00", time_zone="Europe/Paris"),
                 aj("ModuleSerializer", value="User"), {"opts": {"x": 1}, "_aj_hash_with_indifferent_access": True},
                 {"user": {"_aj_globalid": "gid://app/User/9"}, "_aj_ruby2_keywords": ["user"]}]
    drain(r, run_worker, rails_71_payload("AjJob", arguments, continuation={}))
    [got] = reports(r)
    assert got["args"] == (Decimal("12.50"), range(1, 4), dt.datetime(2026, 3, 1, 9, 0, tzinfo=UTC), "User",
                           {"opts": {"x": 1}})
    assert got["kwargs"] == {"user": GlobalID.parse("gid://app/User/9")}
    meta = got["meta"]
    assert meta.enqueued_at == dt.datetime(2026, 11, 27, 11, 57, 0, 123456, tzinfo=UTC)
    assert meta.scheduled_at == dt.datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    assert (meta.executions, meta.priority, meta.locale, meta.timezone) == (3, 5, "fr", "Europe/Paris")
    assert meta.exception_executions == {"[Timeout::Error]": 2} and meta.job_data["continuation"] == {}


def test_the_target_jobs_own_hooks_run_through_activejob(r, run_worker):
    arguments = [7, {"greeting": "salut", "_aj_ruby2_keywords": ["greeting"]}]
    drain(r, run_worker, rails_71_payload("Mailers::AjHooked", arguments))
    assert r.lrange("test:aj_hooks", 0, -1) == ["before (7,){'greeting': 'salut'}", "perform 7 salut", "after 7"]


def test_failures_are_recorded_with_the_jobwrapper_payload_as_received(r, run_worker):
    failing = FIXTURE_08_ITEMS[0].replace('"job_class":"AjJob"', '"job_class":"AjFailJob"')
    unknown_class = FIXTURE_08_ITEMS[0].replace('"job_class":"AjJob"', '"job_class":"NotInPython"')
    unknown_serializer = rails_71_payload("AjJob", [{"_aj_serialized": "MoneySerializer", "cents": 1}])
    too_slow = rails_71_payload("AjSlowJob", [])  # @job(timeout=0.2) applies to the target job
    worker = drain(r, run_worker, failing, unknown_class, unknown_serializer, too_slow)
    raw_entries = r.lrange("resque:failed", 0, -1)
    entries = [json.loads(e) for e in raw_entries]
    ruby_entry = json.loads(load_fixture("04_processed.json")["keys"]["resque:failed"]["value"][0])
    assert len(entries) == 4
    for raw_entry, entry, payload in zip(raw_entries, entries, (failing, unknown_class, unknown_serializer, too_slow)):
        assert list(entry) == list(ruby_entry)  # Ruby's fields, in Ruby's order
        assert f'"payload":{payload},' in raw_entry  # the JobWrapper payload, byte for byte
        assert entry["queue"] == "critical" and entry["worker"].startswith(f"{HOST}:{worker.pid}:critical:")
        assert re.fullmatch(r"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d [A-Z]+", entry["failed_at"])
    assert (entries[0]["exception"], entries[0]["error"]) == ("RuntimeError", "AjFailJob failed for 'héllo ✓ \"q\"'")
    assert entries[0]["backtrace"][0].endswith("in `aj_fail_job'")
    assert entries[1]["exception"] == "JobNotRegistered" and "@job('NotInPython')" in entries[1]["error"]
    assert entries[2]["exception"] == "PayloadError" and "MoneySerializer" in entries[2]["error"]
    assert entries[3]["exception"] == "JobTimeout" and "AjSlowJob ran longer than its 0.2s" in entries[3]["error"]
    assert r.get("resque:stat:failed") == "4" and r.get("resque:stat:processed") == "4"
