"""Hostile input (issue 5 item 6): random bytes, deep nesting, huge strings, wrong types and
unicode edge cases on a queue and in ``args``.

The oracle is the JSON spec (RFC 8259, as Python's strict ``json`` reads it) plus WIRE §2.5: an
item is a runnable job only if it is a JSON object whose ``class`` names a registered job and
whose ``args`` is an array. Everything else must become exactly one failure entry that keeps
the payload, and nothing we write may break resque-web or a Ruby worker (WIRE §3.4, §5.2).
"""
from __future__ import annotations

import collections
import json
import re
from typing import Any, Dict, List, Optional, Tuple

import gevent
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resque_compat.store.store import Store, connect
from resque_compat.wire.keys import Keys
from resque_compat.wire.records import raw_from_record, worker_record_prefix
from tests.conftest import REDIS_URL
from tests.inprocess import InProcessRun
from tests.inprocess import run_worker as run_in_process
from tests.keyspace import FIXTURES, load_fixture

QUEUE = "hostile"
FAILED_AT = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d [A-Z]{2,5}$")
ENTRY_FIELDS = ["failed_at", "payload", "exception", "error", "backtrace", "worker", "queue"]
RUNNABLE = ("TallyJob", "::TallyJob")
#: Class names tests/jobs.py registers; generated "unknown" names must avoid them.
KNOWN = {"OkJob", "FailJob", "SleepJob", "WaitJob", "CpuJob", "OrderJob", "StampJob", "NoopJob",
         "TimeLimitedJob", "MemoryJob", "TallyJob", "FaultJob", "DbJob", "Jobs::Nested"}

# -- generators ---------------------------------------------------------------------------------

EDGE_TEXT = st.sampled_from([
    "\ud800", "\udfff", "\udbff\udc00", "\x00", "\u2028", "\u2029", "\ufeff", "\uffff", "😀",
    "é", "\x7f", "\\", '"', "</script>", "\x1b[0m", "日本語", "\r\n",
])
TEXT = st.text(max_size=12) | EDGE_TEXT | st.lists(EDGE_TEXT, max_size=4).map("".join)
SCALARS = (st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70)
           | st.floats(allow_nan=False, allow_infinity=False) | TEXT)
VALUES = st.recursive(SCALARS, lambda kids: st.lists(kids, max_size=3)
                      | st.dictionaries(TEXT, kids, max_size=3), max_leaves=8)
UNKNOWN_CLASS = TEXT.filter(lambda s: s.lstrip(":") not in KNOWN)


def to_json(value: Any, ascii_only: bool, indent: Optional[int] = None) -> bytes:
    """JSON text as some producer might write it; lone surrogates become invalid UTF-8 bytes
    when not ASCII-escaped (what a careless encoder really emits)."""
    separators = (",", ":") if indent is None else None
    return json.dumps(value, ensure_ascii=ascii_only, indent=indent,
                      separators=separators).encode("utf-8", "surrogatepass")


@st.composite
def jobs(draw) -> Tuple[str, Any]:
    """A TallyJob with hostile args and random formatting; the tag is filled in later."""
    values = draw(st.lists(VALUES, max_size=3))
    extra = draw(st.dictionaries(st.sampled_from(["id", "queue", "enqueued_at", "é"]), VALUES, max_size=2))
    style = (draw(st.booleans()), draw(st.sampled_from([None, None, 2])),
             draw(st.sampled_from(["", "", " ", "\n\t "])), draw(st.booleans()),
             draw(st.sampled_from(RUNNABLE)))
    return ("job", (values, extra, style))


def job_bytes(tag: str, values: List[Any], extra: Dict[str, Any], style: tuple) -> bytes:
    ascii_only, indent, leading, args_first, class_name = style
    body = {"class": class_name, "args": [tag, *values]}
    if args_first:
        body = {"args": body["args"], "class": class_name}
    body.update(extra)
    return leading.encode() + to_json(body, ascii_only, indent)


def deep(depth: int) -> bytes:
    return b'{"class":"TallyJob","args":["deep",' + b"[" * depth + b"]" * depth + b"]}"


BAD_TOKENS = [b"NaN", b"Infinity", b"-Infinity", b"0x1F", b"01", b"1.", b"+1", b"-inf", b".5",
              b"1e", b"--1", b"nan", b"1_0"]
BAD_STRING_BYTES = [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\x00", b"\x01", b"\n", b"\t", b"\x1f",
                    b"\xf4\x90\x80\x80", b"\xe2\x82", b"\xf0\x9f\x98"]

RAW = st.one_of(
    st.binary(max_size=80),
    TEXT.map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.tuples(VALUES.filter(lambda v: not isinstance(v, dict)), st.booleans()).map(lambda p: to_json(*p)),
    st.tuples(st.fixed_dictionaries({"class": st.none() | st.integers() | st.booleans() | st.just("")
                                     | st.lists(SCALARS, max_size=2) | UNKNOWN_CLASS,
                                     "args": VALUES}), st.booleans()).map(lambda p: to_json(*p)),
    st.tuples(st.fixed_dictionaries({"args": VALUES}), st.booleans()).map(lambda p: to_json(*p)),
    st.tuples(st.fixed_dictionaries({"class": st.sampled_from(RUNNABLE),
                                     "args": SCALARS.filter(lambda v: v is not None) | st.dictionaries(TEXT, SCALARS, max_size=2)}),
              st.booleans()).map(lambda p: to_json(*p)),
    st.integers(3000, 100000).map(deep),
    st.integers(1, 150).map(deep),
    st.sampled_from(BAD_TOKENS).map(lambda t: b'{"class":"TallyJob","args":["x",' + t + b"]}"),
    st.sampled_from(BAD_STRING_BYTES).map(lambda b: b'{"class":"TallyJob","args":["x' + b + b'"]}'),
    st.sampled_from(BAD_STRING_BYTES).map(lambda b: b'{"class":"Nope' + b + b'","args":[]}'),
    st.just(b'\xef\xbb\xbf{"class":"TallyJob","args":["bom"]}'),
    st.integers(0, 30).map(lambda n: b'{"class":"TallyJob","args":["cut",[1,{"a":"b"}]]}'[:n]),
).map(lambda raw: ("raw", raw))

ITEMS = st.one_of(jobs(), RAW)


def materialise(items: List[Tuple[str, Any]]) -> List[bytes]:
    out = []
    for index, (kind, value) in enumerate(items):
        out.append(job_bytes(f"t{index}", *value) if kind == "job" else value)
    return out


# -- the oracle ---------------------------------------------------------------------------------

def strict_json(raw: bytes) -> Any:
    """RFC 8259 as Python reads it strictly: UTF-8, no NaN/Infinity, no raw control characters."""
    def reject(name: str) -> Any:
        raise ValueError(name)
    return json.loads(raw.decode("utf-8"), parse_constant=reject)


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=True)


def expectation(raw: bytes) -> Tuple[str, Any]:
    """("ok", tag) for a runnable TallyJob, else ("fail", what its failure payload must be)."""
    try:
        payload = strict_json(raw)
    except (ValueError, RecursionError):
        return "fail", ("text", raw.decode("utf-8", "replace"))
    if isinstance(payload, dict):
        args = payload.get("args")
        if payload.get("class") in RUNNABLE and isinstance(args, list) and args:
            return "ok", str(args[0])
        try:  # an object that cannot be written back as UTF-8 JSON is kept as its raw text
            json.dumps(payload, ensure_ascii=False, allow_nan=False).encode("utf-8")
        except (ValueError, RecursionError, UnicodeEncodeError):
            return "fail", ("text", raw.decode("utf-8", "replace"))
        return "fail", ("obj", canonical(payload))
    return "fail", ("text", raw.decode("utf-8", "replace"))


def failure_key(payload: Any) -> Tuple[str, Any]:
    if isinstance(payload, dict):
        return "obj", canonical(payload)
    return ("text", payload) if isinstance(payload, str) else ("other", repr(payload))


# -- what Ruby and resque-web need from everything we wrote ---------------------------------------

def assert_readable_by_ruby(raw_client: redis.Redis, failures: List[bytes]) -> List[dict]:
    """WIRE §3.4 and §5.2, for every failure entry and every worker key left behind."""
    entries = []
    for blob in failures:
        entry = strict_json(blob)
        assert isinstance(entry, dict) and list(entry) == ENTRY_FIELDS, blob[:300]
        assert isinstance(entry["failed_at"], str) and FAILED_AT.match(entry["failed_at"]), entry["failed_at"]
        assert isinstance(entry["worker"], str) and entry["worker"].count(":") >= 2
        assert entry["worker"].split(":")[2], entry["worker"]
        assert isinstance(entry["backtrace"], list) and all(isinstance(x, str) for x in entry["backtrace"])
        assert isinstance(entry["payload"], (dict, str)), entry["payload"]
        assert isinstance(entry["exception"], str) and isinstance(entry["error"], str)
        assert entry["queue"] == QUEUE
        entries.append(entry)
    assert raw_client.smembers("resque:workers") == set()
    assert raw_client.hgetall("resque:workers:heartbeat") == {}
    assert raw_client.keys("resque:worker:*") == []
    return entries


# -- the reserve script on its own ---------------------------------------------------------------

@pytest.fixture
def raw_client(r) -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    client.close()


@pytest.fixture
def store(r) -> Store:
    return Store(connect(REDIS_URL, max_connections=2), Keys("resque"))


def reserve_all(store: Store, raw_client: redis.Redis, raws: List[bytes]) -> List[Tuple[str, Any]]:
    raw_client.delete("resque:queue:" + QUEUE, *[f"resque:worker:h:1:{QUEUE}:{n}" for n in range(len(raws))])
    raw_client.rpush("resque:queue:" + QUEUE, *raws)
    ids = [f"h:1:{QUEUE}:{n}" for n in range(len(raws))]
    prefix = worker_record_prefix(QUEUE, "2026-11-27T11:55:41Z")
    paused, jobs = store.finish_and_reserve([], ids, [QUEUE], [prefix])
    assert not paused and [j.raw for j in jobs] == raws
    return [(j, raw_client.get("resque:worker:" + wid)) for j, wid in zip(jobs, ids)]


@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(items=st.lists(ITEMS, min_size=1, max_size=6))
def test_reserve_script_always_writes_a_record_ruby_can_read(store, raw_client, items):
    raws = materialise(items)
    for (job, record), raw in zip(reserve_all(store, raw_client, raws), raws):
        assert record == job.record
        data = strict_json(record)  # resque-web and Ruby's pruner decode it (WIRE §5.2)
        assert list(data) == ["queue", "run_at", "payload"]
        assert isinstance(data["payload"], (dict, str))
        if isinstance(data["payload"], dict):
            # embedded as popped: the payload bytes are the item's bytes, untouched
            assert record == worker_record_prefix(QUEUE, "2026-11-27T11:55:41Z").encode() + raw + b"}"
        # a lost script reply is recovered from this record with the item's exact bytes
        assert raw_from_record(record) == (QUEUE, raw)


def test_reserve_script_embeds_every_payload_ruby_wrote(store, raw_client):
    """The strictness check must not reject real jobs: every queue item in the Ruby fixtures
    is embedded byte for byte, as Ruby's own worker:<id> shows it (fixture 03)."""
    raws = []
    for name in sorted(__import__("os").listdir(FIXTURES)):
        if name.endswith(".json"):
            for key, entry in load_fixture(name)["keys"].items():
                if entry["type"] == "list" and ":queue:" in key:
                    raws.extend(v.encode("utf-8") for v in entry["value"])
    assert len(raws) >= 10
    for (job, record), raw in zip(reserve_all(store, raw_client, raws), raws):
        assert isinstance(strict_json(record)["payload"], dict), raw
        assert record.endswith(b',"payload":' + raw + b"}")


@pytest.mark.parametrize("raw", [
    b'{"class":"X","args":[NaN]}', b'{"class":"X","args":[0x10]}', b'{"class":"X","args":[01]}',
    b'{"class":"X","args":[1.]}', b'{"class":"X","args":[+1]}', b'{"class":"X","args":[-inf]}',
    b'{"class":"X","args":["\x01"]}', b'{"class":"X","args":["\xff"]}',
    b'{"class":"X","args":["\xed\xa0\x80"]}', b'{"class":"X","args":["\xc0\xaf"]}',
])
def test_reserve_script_escapes_what_only_cjson_accepts(store, raw_client, raw):
    """Lua's cjson decodes each of these; Ruby's parser and resque-web do not (WIRE §5.2)."""
    [(job, record)] = reserve_all(store, raw_client, [raw])
    assert isinstance(strict_json(record)["payload"], str)
    assert raw_from_record(record) == (QUEUE, raw)


# -- real workers ---------------------------------------------------------------------------------

def run_worker(r: redis.Redis, raws: List[bytes], fibers: int = 10, timeout: float = 60.0) -> InProcessRun:
    r.sadd("resque:queues", QUEUE)
    r.rpush("resque:queue:" + QUEUE, *raws)
    with gevent.Timeout(timeout, AssertionError(f"the worker did not drain the queue in {timeout}s")):
        worker = run_in_process(REDIS_URL, [f"QUEUE={QUEUE}", f"FIBERS={fibers}", "INTERVAL=0"])
    assert worker.code == 0, worker.output[-3000:]
    assert "Traceback" not in worker.output, worker.output[-3000:]
    return worker


def check_outcome(r: redis.Redis, raw_client: redis.Redis, raws: List[bytes]) -> Tuple[int, int]:
    expected = [expectation(raw) for raw in raws]
    want_ok = collections.Counter(tag for kind, tag in expected if kind == "ok")
    want_failed = collections.Counter(key for kind, key in expected if kind == "fail")
    entries = assert_readable_by_ruby(raw_client, raw_client.lrange("resque:failed", 0, -1))
    assert collections.Counter(failure_key(e["payload"]) for e in entries) == want_failed
    assert collections.Counter({k: int(v) for k, v in r.hgetall("test:tally").items()}) == want_ok
    ok, failed = sum(want_ok.values()), sum(want_failed.values())
    assert int(r.get("resque:stat:processed")) == ok + failed
    assert int(r.get("resque:stat:failed") or 0) == failed == r.llen("resque:failed")
    assert r.llen("resque:queue:" + QUEUE) == 0
    return ok, failed


@settings(max_examples=5, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(items=st.lists(ITEMS, min_size=50, max_size=50))
def test_worker_survives_hostile_queue_items(r, raw_client, items):
    r.flushdb()  # one flush per generated batch: the fixture flushes once per test
    raws = materialise(items)
    run_worker(r, raws)
    check_outcome(r, raw_client, raws)


def test_ten_megabyte_payloads(r, raw_client):
    """One 10 MB string argument runs; 10 MB an unknown class, and 10 MB of random-ish bytes,
    fail with their whole payload kept."""
    big = "é日😀\u2028\x00\"\\" * (10 * 1024 * 1024 // 16)
    raws = [
        json.dumps({"class": "TallyJob", "args": ["big", big]}, ensure_ascii=False).encode(),
        json.dumps({"class": "Huge::Unknown", "args": [big]}, ensure_ascii=False).encode(),
        bytes(range(256)) * (10 * 1024 * 1024 // 256),
    ]
    assert all(len(raw) >= 10 * 1024 * 1024 for raw in raws)
    run_worker(r, raws, fibers=2, timeout=90)
    ok, failed = check_outcome(r, raw_client, raws)
    assert (ok, failed) == (1, 2)
    entries = [json.loads(e) for e in raw_client.lrange("resque:failed", 0, -1)]
    unknown = next(e for e in entries if isinstance(e["payload"], dict))
    assert unknown["payload"]["args"] == [big] and unknown["exception"] == "JobNotRegistered"
