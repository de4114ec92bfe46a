"""Ruby-identical JSON bytes and Ruby time strings. Pure: no I/O, no Redis.

What Ruby's MultiJson (json gem or Oj) writes, per WIRE §2.2 and fixture 01:

* compact separators, raw UTF-8, only ``"``, ``\\`` and control characters escaped
  (``\\n``, ``\\t``, ``\\u0001`` in lowercase hex), ``/`` and U+2028 left alone;
* insertion-ordered objects (a job is ``{"class":..,"args":[..]}``, in that order);
* floats as Ruby's ``Float#to_s``: ``1.0`` never ``1``, ``1.0e+20`` never ``1e+20``; or, with
  ``RUBY_JSON=oj`` (:func:`set_ruby_json`), as Oj writes them: ``10000000000000000.0``;
* NaN and Infinity are never written (Ruby raises on them when decoding).

``json.dumps(separators=(",", ":"), ensure_ascii=False)`` already matches Ruby for every value
except floats in exponent form, so we only take over the float rendering.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import re
import time
from typing import Any, Optional, Union

from resque_compat.errors import EncodeError

_escape_string = json.encoder.encode_basestring  # C, ensure_ascii=False


def ruby_float(value: float) -> str:
    """Render a float exactly as Ruby's ``Float#to_s`` does (the json gem writes the same).

    Python's ``repr`` and Ruby agree on the shortest round-trip digits and on the small side
    (``0.0001`` but ``1.0e-05``). They differ in two places: Ruby keeps a ``.0`` on the mantissa
    (``1.0e+20``, Python ``1e+20``), and with 16 integer digits Ruby uses the exponent form
    unless there are fraction digits to show (``1.0e+15``, ``1.000000000000001e+15`` but
    ``1000000000000000.2``), where Python writes ``1000000000000000.0`` up to 1e16
    (fixtures/ruby-json/floats.json, recorded from Ruby 3.1).
    """
    if math.isnan(value) or math.isinf(value):
        raise EncodeError(
            f"cannot encode {value!r}: Ruby's JSON parser rejects NaN and Infinity, so a Ruby "
            "worker could never read this job; pass None or a string instead"
        )
    text = repr(value)
    mantissa, sep, exponent = text.partition("e")
    if sep:
        return mantissa + ".0e" + exponent if "." not in mantissa else text
    whole, _, fraction = text.partition(".")
    digits = whole.lstrip("-")
    if len(digits) == 16 and fraction == "0":  # 1e15 <= |value| < 1e16 with no fraction digits
        significant = digits.rstrip("0")
        rest = significant[1:]
        return f"{whole[:-16]}{significant[0]}.{rest or '0'}e+15"
    return text


#: Doubles in this range are C ``long long`` values, which Oj prints with ``%.1f``.
_LONG_LONG = 2.0 ** 63


def oj_float(value: float) -> str:
    """Render a float as Oj 3 (compat mode, MultiJson's Oj adapter) writes it in JSON.

    Oj prints zero as ``0.0`` (also ``-0.0``), a whole number that fits a C ``long long`` with
    ``%.1f`` (``10000000000000000.0`` where Ruby says ``1.0e+16``), and every other float with
    Ruby's ``Float#to_s``. Checked against Oj 3.14's real output in fixtures/ruby-json/floats.json.
    """
    if value == 0.0:
        return "0.0"
    if value.is_integer() and -_LONG_LONG <= value < _LONG_LONG:
        return "%.1f" % value
    return ruby_float(value)


#: The JSON library of the Ruby apps sharing the queues: MultiJson picks Oj when it is installed.
RUBY_JSON_LIBRARIES = ("json", "oj")
_json_float = ruby_float


def set_ruby_json(library: str) -> None:
    """``RUBY_JSON``: write floats as the json gem (``json``, default) or Oj (``oj``) does, so
    that bytes hashed or compared by Ruby (``Resque.dequeue``, loner keys, retry keys) match."""
    global _json_float
    if library not in RUBY_JSON_LIBRARIES:
        raise ValueError(f"RUBY_JSON must be one of {', '.join(RUBY_JSON_LIBRARIES)} (got {library!r})")
    _json_float = oj_float if library == "oj" else ruby_float


def ruby_json() -> str:
    """The library set by :func:`set_ruby_json`."""
    return "oj" if _json_float is oj_float else "json"


def _encode_into(obj: Any, out: list) -> None:
    # Order matters: bool is an int subclass, and both must be tested before float.
    if isinstance(obj, str):
        out.append(_escape_string(obj))
    elif obj is None:
        out.append("null")
    elif obj is True:
        out.append("true")
    elif obj is False:
        out.append("false")
    elif isinstance(obj, int):
        out.append(int.__repr__(obj))
    elif isinstance(obj, float):
        out.append(_json_float(obj))
    elif isinstance(obj, dict):
        out.append("{")
        first = True
        for key, value in obj.items():
            if not first:
                out.append(",")
            first = False
            out.append(_escape_string(_object_key(key)))
            out.append(":")
            _encode_into(value, out)
        out.append("}")
    elif isinstance(obj, (list, tuple)):
        out.append("[")
        for index, item in enumerate(obj):
            if index:
                out.append(",")
            _encode_into(item, out)
        out.append("]")
    else:
        _encode_into(_ruby_value(obj), out)


def _object_key(key: Any) -> str:
    """Hash keys as Ruby's generator writes them: always strings (symbols, numbers, booleans)."""
    if isinstance(key, str):
        return key
    if key is True:
        return "true"
    if key is False:
        return "false"
    if key is None:
        return ""
    if isinstance(key, float):
        return ruby_float(key)
    if isinstance(key, int):
        return int.__repr__(key)
    raise EncodeError(f"cannot use {type(key).__name__} {key!r} as a JSON object key; use a string")


def _ruby_value(obj: Any) -> Any:
    """Values that Ruby would turn into strings when a Rails app enqueues them (WIRE §2.2)."""
    if isinstance(obj, _dt.datetime):
        return ruby_time_to_s(obj)
    if isinstance(obj, _dt.date):
        return obj.isoformat()  # Ruby Date#to_s
    raise EncodeError(
        f"cannot encode {type(obj).__name__} {obj!r} as a Resque job argument: use JSON types "
        "(str, int, float, bool, None, list, dict) so that Ruby reads back the same value"
    )


def encode(obj: Any) -> str:
    """Encode ``obj`` to the exact JSON text Ruby Resque would write for it."""
    out: list = []
    try:
        _encode_into(obj, out)
    except RecursionError:
        raise EncodeError("cannot encode: the value is nested too deeply (or contains itself)") from None
    text = "".join(out)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise EncodeError(
            f"cannot encode: the value contains a lone surrogate ({exc.reason}) that is not valid "
            "UTF-8; Ruby would reject the job"
        ) from None
    return text


def encode_job(class_name: str, args: Union[list, tuple]) -> str:
    """The queue item ``Resque.push`` writes: ``{"class":..,"args":[..]}``, in that order."""
    return '{"class":' + encode(class_name) + ',"args":' + encode(list(args)) + "}"


# -- decoding ---------------------------------------------------------------------------------

class DecodeError(ValueError):
    """Text that is not JSON Ruby would accept (kept apart so callers can report it)."""


def _reject_constant(name: str) -> Any:
    raise DecodeError(f"{name} is not valid JSON (Ruby's parser rejects it)")


#: One decoder for every payload: json.loads with a keyword argument builds a new JSONDecoder
#: per call, a measurable share of a no-op job's cost (issue 17).
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def decode(raw: Union[str, bytes]) -> Any:
    """Decode JSON the way Ruby reads it: strict UTF-8, no NaN/Infinity. Raises DecodeError."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, (bytes, bytearray)) else raw
        if text.startswith("\ufeff"):  # what json.loads checks before decoding
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        return _DECODER.decode(text)
    except DecodeError:
        raise
    except UnicodeDecodeError as exc:
        raise DecodeError(f"not valid UTF-8 at byte {exc.start}") from None
    except RecursionError:
        raise DecodeError("nested too deeply to decode") from None
    except ValueError as exc:  # json.JSONDecodeError
        raise DecodeError(str(exc)) from None


# -- Ruby time strings (fixture README, "Time formats seen") -----------------------------------

def text(value: Any) -> str:
    """A Redis reply (bytes, as our clients use ``decode_responses=False``) as text; invalid
    UTF-8 becomes U+FFFD rather than failing a read of someone else's data."""
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _local(epoch: float) -> time.struct_time:
    return time.localtime(int(epoch))


def utc_offset(seconds: int, colon: bool) -> str:
    """A UTC offset as Ruby prints it: ``+0530`` (``Time#to_s``) or ``+05:30`` (``iso8601``)."""
    sign = "-" if seconds < 0 else "+"
    hours, minutes = divmod(abs(int(seconds)) // 60, 60)
    return f"{sign}{hours:02d}{':' if colon else ''}{minutes:02d}"


def _offset(tm: time.struct_time, colon: bool) -> str:
    return utc_offset(tm.tm_gmtoff or 0, colon)


def time_to_s(epoch: float) -> str:
    """``Time.now.to_s`` in local time: ``2026-11-27 11:55:41 +0000`` (``worker:<id>:started``)."""
    tm = _local(epoch)
    return time.strftime("%Y-%m-%d %H:%M:%S ", tm) + _offset(tm, colon=False)


def iso8601_local(epoch: float) -> str:
    """``Time.at(t).iso8601``: ``2026-11-27T11:55:41+00:00``, never ``Z`` (heartbeats)."""
    tm = _local(epoch)
    return time.strftime("%Y-%m-%dT%H:%M:%S", tm) + _offset(tm, colon=True)


def iso8601_utc(epoch: float) -> str:
    """``Time.now.utc.iso8601``: ``2026-11-27T11:55:41Z`` (``run_at``)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(epoch)))


def failed_at(epoch: float, with_zone: bool = True) -> str:
    """``%Y/%m/%d %H:%M:%S %Z`` in local time (``failed_at``, ``retried_at``).

    The multi-queue backend's ``retried_at`` has no zone (WIRE §4.4): ``with_zone=False``.
    """
    tm = _local(epoch)
    text = time.strftime("%Y/%m/%d %H:%M:%S", tm)
    return f"{text} {tm.tm_zone}" if with_zone else text


_TIME_TO_S = re.compile(r"(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d) (?:([+-])(\d\d)(\d\d)|UTC)")


def parse_time_to_s(text: Union[str, bytes, None]) -> Optional[int]:
    """Epoch seconds of a Ruby ``Time#to_s`` (``2026-12-07 05:26:27 +0000`` or ``... UTC``),
    whatever zone its writer ran in; None for anything else (``delayed:last_enqueued_at``)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    match = _TIME_TO_S.fullmatch(text.strip()) if text else None
    if not match:
        return None
    y, mo, d, h, mi, s = (int(g) for g in match.groups()[:6])
    offset = 0
    if match.group(7):
        offset = (int(match.group(8)) * 60 + int(match.group(9))) * 60
        offset = -offset if match.group(7) == "-" else offset
    try:
        moment = _dt.datetime(y, mo, d, h, mi, s, tzinfo=_dt.timezone(_dt.timedelta(seconds=offset)))
    except ValueError:
        return None
    return int(moment.timestamp())


def ruby_time_to_s(value: _dt.datetime) -> str:
    """A ``datetime`` argument as Ruby's ``Time#to_s`` would put it in a job (fixture 01).

    An aware UTC datetime prints as ``UTC`` (Ruby's ``Time#utc``), other offsets as ``+0530``.
    A naive datetime is local time, and Ruby prints a local ``Time`` with a numeric offset even
    when the zone is UTC (``+0000``, as in ``worker:<id>:started``). Sub-seconds are dropped, as
    Ruby drops them.
    """
    local = value.tzinfo is None or value.utcoffset() is None
    if local:
        value = value.astimezone()
    offset = value.utcoffset() or _dt.timedelta(0)
    base = value.strftime("%Y-%m-%d %H:%M:%S")
    if not local and offset == _dt.timedelta(0) and value.tzname() in ("UTC", "Z"):
        return base + " UTC"
    return f"{base} {utc_offset(int(offset.total_seconds()), colon=False)}"


#: The heartbeat shapes Ruby's ``Time.parse`` reads (WIRE §3.6): ``T`` or a space between date
#: and time, optional fraction, and a zone that is ``Z``/``UTC``/``GMT``, a numeric offset with or
#: without a colon (``+05:30``, ``+0530``, ``+05``), or absent (then the reader's local time).
_HEARTBEAT = re.compile(
    r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:T|\s+)(\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:[.,](\d+))?)?"
    r"\s*(?:(?P<utc>Z|UTC|GMT)|(?P<sign>[+-])(?P<oh>\d{2})(?::?(?P<om>\d{2}))?)?$",
    re.IGNORECASE,
)


def parse_heartbeat(text: str) -> Optional[float]:
    """Epoch seconds of a heartbeat value, for the formats Ruby's ``Time.parse`` reads back
    from Ruby and from us; None for anything else (we never prune on a value we cannot read)."""
    m = _HEARTBEAT.match(text.strip())
    if m is None:
        return None
    year, month, day, hour, minute = (int(g) for g in m.groups()[:5])
    second = int(m.group(6) or 0)
    micro = int((m.group(7) or "0")[:6].ljust(6, "0"))
    if m.group("utc"):
        tz: Optional[_dt.tzinfo] = _dt.timezone.utc
    elif m.group("sign"):
        minutes = int(m.group("oh")) * 60 + int(m.group("om") or 0)
        tz = _dt.timezone(_dt.timedelta(minutes=-minutes if m.group("sign") == "-" else minutes))
    else:
        tz = None  # Ruby reads a zone-less time as the reader's local time; so does timestamp()
    try:
        return _dt.datetime(year, month, day, hour, minute, second, micro, tzinfo=tz).timestamp()
    except (ValueError, OverflowError):
        return None
