"""codec: JSON bytes and time strings identical to what Ruby Resque 3.0 wrote (fixtures 01-14).

Pure tests: no Redis. The oracle is always Ruby's own output (the fixtures) or an independent
statement of Ruby's rule, never our implementation.
"""
from __future__ import annotations

import datetime as dt
import glob
import json
import math
import os
import re
import subprocess
import sys
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from resque_compat.errors import EncodeError
from resque_compat.wire import codec
from tests.keyspace import FIXTURES, load_fixture

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UTC = dt.timezone.utc
IST = dt.timezone(dt.timedelta(hours=5, minutes=30))

#: Fixture 01's ``ruby_args_inspect``, rebuilt in Python. Symbols become strings, and the three
#: Ruby Times are given as datetimes (their strings are checked separately below).
FIXTURE_01_ARGS = [
    42, -7, 0, 3.14, 1.0, 1.0e20, 1.5e-07, 0.1 + 0.2,
    "héllo \"wörld\" 'single' \\ / ✓ 日本 😀 \t\n <>&\u0001",
    None, True, False,
    {"name": "x", "nested": {"list": [1, 2.5, "three"], "empty": {}}},
    {"sym_key": 1, "str_key": "sym_value"},
    [1, "two", 3.0, [None]],
    [],
    "a_symbol",
    2 ** 70,
    dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
    dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=IST),
    dt.datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=UTC),
]


def fixture_items(name, key):
    return load_fixture(name)["keys"][key]["value"]


# -- payload bytes vs fixtures 01 and 11 -------------------------------------------------------

@pytest.mark.parametrize("fixture", ["01_enqueue.json", "11_enqueue_oj_adapter.json"])
def test_fixture_01_payload_rebuilt_from_python_values_is_byte_identical(fixture):
    first, no_args = fixture_items(fixture, "resque:queue:critical")
    assert codec.encode_job("CriticalJob", FIXTURE_01_ARGS) == first
    assert codec.encode_job("CriticalJob", []) == no_args


def test_fixture_01_ruby_args_inspect_matches_our_python_args():
    """Guard the test data itself: the Python args line up with Ruby's ``inspect`` metadata."""
    inspect = load_fixture("01_enqueue.json")["ruby_args_inspect"]
    assert len(inspect) == len(FIXTURE_01_ARGS)
    assert inspect[17] == str(2 ** 70)
    assert inspect[18:] == ["2024-01-02 03:04:05 UTC", "2024-01-02 03:04:05 +0530",
                            "2023-11-14 22:13:20.123456 UTC"]


@pytest.mark.parametrize("fixture", ["01_enqueue.json", "11_enqueue_oj_adapter.json"])
def test_fixture_01_low_queue_items(fixture):
    assert fixture_items(fixture, "resque:queue:low") == [
        codec.encode_job("CriticalJob", ["to-low", 1]),
        codec.encode_job("Jobs::Nested", ("nested",)),
    ]


def test_time_args_given_as_strings_encode_the_same_as_datetimes():
    as_strings = FIXTURE_01_ARGS[:18] + ["2024-01-02 03:04:05 UTC", "2024-01-02 03:04:05 +0530",
                                         "2023-11-14 22:13:20 UTC"]
    assert codec.encode_job("CriticalJob", as_strings) == fixture_items(
        "01_enqueue.json", "resque:queue:critical")[0]


def test_job_key_order_is_class_then_args_and_compact():
    assert codec.encode_job("Archive", [44, "masterbrew"]) == '{"class":"Archive","args":[44,"masterbrew"]}'
    assert codec.encode_job("A", ()) == '{"class":"A","args":[]}'


# -- every JSON value Ruby wrote, in every fixture ---------------------------------------------

def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)


def _ruby_json_values():
    """(fixture, text) for every string in every fixture that is a JSON object or array,
    including resque-scheduler's ``timestamps:<json>`` key names."""
    out = []
    for path in sorted(glob.glob(os.path.join(FIXTURES, "*.json"))):
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        for text in _strings(data):
            candidates = [text]
            if "timestamps:" in text:
                candidates.append(text.split("timestamps:", 1)[1])
            for cand in candidates:
                if cand[:1] in "{[":
                    try:
                        json.loads(cand)
                    except ValueError:
                        continue
                    out.append((os.path.basename(path), cand))
    return out


RUBY_JSON = _ruby_json_values()


def test_fixtures_hold_the_json_values_we_expect_to_round_trip():
    files = {name for name, _ in RUBY_JSON}
    # queue items, worker records, failure entries, ActiveJob, delayed items, timestamps keys
    assert len(RUBY_JSON) >= 50
    assert {"01_enqueue.json", "03_worker_busy.json", "04_processed.json", "08_activejob.json",
            "09_delayed.json", "10_failed_multi_queue.json", "13_unknown_class_failure.json"} <= files


@pytest.mark.parametrize("text", [t for _, t in RUBY_JSON],
                         ids=[f"{n}-{i}" for i, (n, _) in enumerate(RUBY_JSON)])
def test_every_fixture_json_value_decodes_and_reencodes_byte_identically(text):
    assert codec.encode(codec.decode(text)) == text
    assert codec.encode(codec.decode(text.encode("utf-8"))) == text


# -- strings ------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    ("\u0001", r'"\u0001"'),
    ("\u001f", r'"\u001f"'),
    ("\x1b", r'"\u001b"'),
    ("\t\n\r", r'"\t\n\r"'),
    ("\b\f", r'"\b\f"'),
    ("a/b", '"a/b"'),
    ("\u2028\u2029", '"\u2028\u2029"'),
    ("\x7f", '"\x7f"'),
    ('"\\', r'"\"\\"'),
    ("<>&", '"<>&"'),
    ("😀 日本 é", '"😀 日本 é"'),
])
def test_strings_are_escaped_as_ruby_escapes_them(value, expected):
    assert codec.encode(value) == expected


def test_control_character_escapes_use_lowercase_hex():
    text = codec.encode("".join(chr(c) for c in range(0x20)))
    escapes = re.findall(r"\\u[0-9A-Fa-f]{4}", text)
    assert len(escapes) == 0x20 - 5  # \b \t \n \f \r have short forms
    assert all(e == e.lower() for e in escapes) and "\\u001a" in escapes


def test_lone_surrogate_is_refused():
    with pytest.raises(EncodeError, match="UTF-8"):
        codec.encode("bad \udc80")


# -- numbers ------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, ruby", [
    (1.0, "1.0"), (3.0, "3.0"), (10.0, "10.0"), (-2.5, "-2.5"), (0.0, "0.0"), (-0.0, "-0.0"),
    (1e20, "1.0e+20"), (1.5e-07, "1.5e-07"), (0.1 + 0.2, "0.30000000000000004"),
    (1e16, "1.0e+16"), (1e15, "1.0e+15"), (1e14, "100000000000000.0"),
    (1000000000000000.2, "1000000000000000.2"), (1.000000000000001e15, "1.000000000000001e+15"), (1e-05, "1.0e-05"), (0.0001, "0.0001"),
    (1.7976931348623157e308, "1.7976931348623157e+308"), (5e-324, "5.0e-324"),
    (123456789.123, "123456789.123"), (2.5e-5, "2.5e-05"), (1e100, "1.0e+100"),
])
def test_floats_are_written_as_ruby_float_to_s(value, ruby):
    assert codec.ruby_float(value) == ruby
    assert codec.encode([value]) == f"[{ruby}]"


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("wrap", [lambda v: v, lambda v: [1, v], lambda v: {"a": {"b": v}}])
def test_nan_and_infinity_are_refused_with_a_clear_error(value, wrap):
    with pytest.raises(EncodeError) as info:
        codec.encode(wrap(value))
    message = str(info.value)
    assert "NaN" in message and "Infinity" in message and "Ruby" in message


def test_nan_in_job_args_is_refused():
    with pytest.raises(EncodeError):
        codec.encode_job("X", [float("nan")])


def test_integers_of_any_size_are_bare_digits():
    assert codec.encode([2 ** 70, -(2 ** 70), 0, -1]) == "[1180591620717411303424,-1180591620717411303424,0,-1]"
    assert codec.encode([True, False, None]) == "[true,false,null]"  # bool is not int here


def _ruby_flo_to_s(x: float) -> str:
    """Ruby's ``Float#to_s`` (numeric.c ``flo_to_s``), written from its rule, for the property test.

    The digits are the shortest that round-trip (Python's repr has the same digits). ``decpt`` is
    where the decimal point falls relative to those digits: fixed notation when -4 < decpt < 16,
    and at decpt == 16 only when there are fraction digits to show (real Ruby 3.1 writes
    ``1.0e+15`` and ``1.000000000000001e+15`` but ``1000000000000000.2``:
    fixtures/ruby-json/floats.json), otherwise ``d.ddd`` + ``e`` + a signed exponent of at least
    two digits.
    """
    if x == 0:
        return "-0.0" if math.copysign(1.0, x) < 0 else "0.0"
    sign = "-" if x < 0 else ""
    tup = Decimal(repr(abs(x))).as_tuple()
    digits = "".join(map(str, tup.digits))
    decpt = len(digits) + tup.exponent
    digits = digits.lstrip("0")
    decpt -= len("".join(map(str, tup.digits))) - len(digits)
    digits = digits.rstrip("0") or "0"
    if 0 < decpt < 16 or (decpt == 16 and len(digits) > decpt):
        whole = digits[:decpt].ljust(decpt, "0")
        return f"{sign}{whole}.{digits[decpt:] or '0'}"
    if -4 < decpt <= 0:
        return f"{sign}0.{'0' * -decpt}{digits}"
    return f"{sign}{digits[0]}.{digits[1:] or '0'}e{decpt - 1:+03d}"


@hsettings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_every_finite_float_follows_rubys_float_to_s_rule(x):
    assert codec.ruby_float(x) == _ruby_flo_to_s(x)
    assert float(codec.ruby_float(x)) == x


def test_ruby_rule_oracle_agrees_with_fixture_floats():
    for value, text in [(3.14, "3.14"), (1.0, "1.0"), (1e20, "1.0e+20"), (1.5e-07, "1.5e-07"),
                        (0.1 + 0.2, "0.30000000000000004"), (2.5, "2.5"), (3.0, "3.0")]:
        assert _ruby_flo_to_s(value) == text
        assert text in fixture_items("01_enqueue.json", "resque:queue:critical")[0]


# -- other Python values -------------------------------------------------------------------------

def test_non_string_hash_keys_become_strings_as_in_ruby():
    assert codec.encode({1: "a", None: "c", 1.5: "d"}) == '{"1":"a","":"c","1.5":"d"}'
    assert codec.encode({False: 0, 2 ** 70: 1}) == '{"false":0,"1180591620717411303424":1}'


def test_tuples_encode_as_arrays_and_unknown_types_are_refused():
    assert codec.encode((1, (2,))) == "[1,[2]]"
    for bad in ({1, 2}, b"bytes", object(), Decimal("1.5")):
        with pytest.raises(EncodeError, match="cannot"):
            codec.encode([bad])
    with pytest.raises(EncodeError, match="key"):
        codec.encode({(1, 2): "x"})


def test_self_containing_value_is_refused_not_crashing():
    loop = []
    loop.append(loop)
    with pytest.raises(EncodeError, match="nested too deeply"):
        codec.encode(loop)


def test_dates_and_datetimes_encode_as_ruby_to_s():
    assert codec.encode(dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)) == '"2024-01-02 03:04:05 UTC"'
    assert codec.encode(dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=IST)) == '"2024-01-02 03:04:05 +0530"'
    assert codec.ruby_time_to_s(dt.datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=UTC)) == "2023-11-14 22:13:20 UTC"
    minus5 = dt.timezone(dt.timedelta(hours=-5))
    assert codec.ruby_time_to_s(dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=minus5)) == "2024-01-02 03:04:05 -0500"
    assert codec.encode(dt.date(2024, 1, 2)) == '"2024-01-02"'


# -- decoding --------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw", [
    "", "{", "{'class':'X'}", "NaN", "[NaN]", '{"a":Infinity}', "[-Infinity]", "{\"a\":1,}",
    b"\xff\xfe", b'{"class":"X","args":["\xc3\x28"]}', "[" * 100000 + "]" * 100000,
])
def test_decode_refuses_what_ruby_refuses_with_decode_error_only(raw):
    with pytest.raises(codec.DecodeError):
        codec.decode(raw)


def test_decode_accepts_bytes_and_text():
    assert codec.decode(b'{"class":"X","args":[1]}') == {"class": "X", "args": [1]}
    assert codec.decode('"\u00e9"') == "é"


# -- property: encode/decode are stable for JSON-like values --------------------------------------

json_scalars = (
    st.none() | st.booleans()
    | st.integers() | st.integers(min_value=-(2 ** 80), max_value=2 ** 80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text() | st.text(alphabet=st.characters(max_codepoint=0x20)) | st.text(alphabet="\"\\/\u2028é😀")
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=25,
)


def _same(a, b):
    """Equal and of the same JSON type all the way down (so True never passes for 1)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, float):
        return isinstance(b, float) and a == b and math.copysign(1, a) == math.copysign(1, b)
    return type(a) is type(b) and a == b


@hsettings(max_examples=200, deadline=None)
@given(json_values)
def test_encode_decode_round_trip_is_stable(value):
    text = codec.encode(value)
    assert _same(codec.decode(text), value)
    assert codec.encode(codec.decode(text)) == text
    assert codec.encode(codec.decode(text.encode("utf-8"))) == text


def _no_floats(value):
    if isinstance(value, float):
        return False
    if isinstance(value, list):
        return all(map(_no_floats, value))
    if isinstance(value, dict):
        return all(map(_no_floats, value.values()))
    return True


@hsettings(max_examples=200, deadline=None)
@given(json_values.filter(_no_floats))
def test_without_floats_our_bytes_are_pythons_compact_utf8_json(value):
    """WIRE §2.2: ints, strings, booleans, null and nesting matched Ruby byte for byte with
    ``json.dumps(obj, separators=(",", ":"), ensure_ascii=False)``."""
    assert codec.encode(value) == json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# -- time strings (fixture README "Time formats seen") --------------------------------------------

def _epoch(text, fmt):
    return dt.datetime.strptime(text, fmt).timestamp()


def _times_in_zone(tz, epoch):
    """The time helpers run in a fresh interpreter with ``TZ`` set, as a worker would run."""
    code = (
        "import json, sys, datetime as d; from resque_compat.wire import codec; e = float(sys.argv[1]);"
        "print(json.dumps({'to_s': codec.time_to_s(e), 'iso': codec.iso8601_local(e),"
        " 'utc': codec.iso8601_utc(e), 'failed_at': codec.failed_at(e),"
        " 'retried_multi': codec.failed_at(e, with_zone=False),"
        " 'naive': codec.ruby_time_to_s(d.datetime(2024, 1, 2, 3, 4, 5))}))"
    )
    env = dict(os.environ, TZ=tz)
    out = subprocess.run([sys.executable, "-c", code, repr(epoch)], env=env, cwd=ROOT,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.mark.parametrize("fixture", ["03_worker_busy.json", "12_timezone_busy.json"])
def test_started_heartbeat_and_run_at_match_ruby_in_the_fixture_time_zone(fixture):
    fx = load_fixture(fixture)
    wid = fx["worker_id"]
    keys = fx["keys"]
    started = keys[f"resque:worker:{wid}:started"]["value"]
    beat = keys["resque:workers:heartbeat"]["value"][wid]
    run_at = json.loads(keys[f"resque:worker:{wid}"]["value"])["run_at"]
    epoch = _epoch(started, "%Y-%m-%d %H:%M:%S %z")
    got = _times_in_zone(fx["timezone"], epoch)
    assert got["to_s"] == started
    assert got["iso"] == beat          # same second in these fixtures
    assert got["utc"] == run_at and run_at.endswith("Z")


def test_kolkata_offsets_and_zone_name():
    fx = load_fixture("12b_timezone_failed_requeued.json")
    entry = json.loads(fx["keys"]["resque:failed"]["value"][0])
    epoch = _epoch(entry["failed_at"].replace(" IST", " +0530"), "%Y/%m/%d %H:%M:%S %z")
    got = _times_in_zone("Asia/Kolkata", epoch)
    assert got["failed_at"] == entry["failed_at"] and got["failed_at"].endswith(" IST")
    assert got["to_s"].endswith(" +0530") and got["iso"].endswith("+05:30")
    assert got["utc"].endswith("Z") and not got["utc"].endswith("+05:30Z")
    assert got["naive"] == "2024-01-02 03:04:05 +0530"


def test_utc_failed_at_and_zone_free_retried_at():
    entry = json.loads(load_fixture("04_processed.json")["keys"]["resque:failed"]["value"][0])
    epoch = _epoch(entry["failed_at"].replace(" UTC", " +0000"), "%Y/%m/%d %H:%M:%S %z")
    got = _times_in_zone("Etc/UTC", epoch)
    assert got["failed_at"] == entry["failed_at"]
    assert got["to_s"].endswith(" +0000") and got["iso"].endswith("+00:00")
    # A naive datetime is a local Time: Ruby prints +0000 (not UTC) even in a UTC zone.
    assert got["naive"] == "2024-01-02 03:04:05 +0000"

    multi = load_fixture("10b_failed_multi_queue_requeued.json")["keys"]["resque:critical_failed"]["value"][0]
    retried = json.loads(multi)["retried_at"]
    got = _times_in_zone("Etc/UTC", _epoch(retried + " +0000", "%Y/%m/%d %H:%M:%S %z"))
    assert got["retried_multi"] == retried


def test_sub_seconds_are_dropped_not_rounded():
    epoch = dt.datetime(2026, 11, 27, 12, 1, 30, 999999, tzinfo=UTC).timestamp()
    assert codec.iso8601_utc(epoch) == "2026-11-27T12:01:30Z"
