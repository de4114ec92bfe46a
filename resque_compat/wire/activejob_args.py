"""ActiveJob argument (de)serialisation, as Rails' ``ActiveJob::Arguments`` (WIRE §2.6). Pure.

Ruby value            JSON written by Rails                                  Python value
====================  =====================================================  ===================
nil/true/Integer/...  as is                                                  as is
Symbol                ``{"_aj_serialized":"…SymbolSerializer","value":"x"}``  :class:`Symbol` out,
                                                                             ``str`` in
Hash                  string keys, plus ``"_aj_symbol_keys":[symbol keys]``   ``dict`` (str keys;
                                                                             :class:`Symbol` keys
                                                                             out are listed)
HashWithIndifferent…  plus ``"_aj_hash_with_indifferent_access":true``       ``dict``
keyword arguments     last hash, ``"_aj_ruby2_keywords":[keys]``              ``**kwargs``
Time, DateTime,       ``{"…TimeSerializer","value":iso8601(9)}`` (and        aware ``datetime``
TimeWithZone          ``time_zone`` for TimeWithZone in 7.1+)                (µs: Python's limit)
Date                  ``{"…DateSerializer","value":"2026-01-02"}``            ``date``
Duration              ``{"…DurationSerializer","value":300,"parts":[…]}``     ``timedelta``
BigDecimal            7.1+: ``{"…BigDecimalSerializer","value":"1.5"}``;      ``Decimal`` (6.1's
                      6.1 writes the raw number as a string (``"0.15e1"``)    string stays a str)
Module/Class          ``{"…ModuleSerializer","value":"Name"}``                ``str``
Range (7.1+)          ``{"…RangeSerializer","begin":1,"end":5,               ``range`` when both
                      "exclude_end":false}``                                 ends are integers,
                                                                             else :class:`Range`
GlobalID record       ``{"_aj_globalid":"gid://app/Person/42"}``              :class:`GlobalID`

Out (Python to Rails), ``datetime`` is written with TimeSerializer (a naive one is local time),
``Decimal`` with the 7.1 BigDecimalSerializer, ``timedelta`` as a Duration of seconds, ``range``
and :class:`Range` with the 7.1 RangeSerializer: Rails 6.1/7.0 cannot read those last two kinds.
A ``dict`` key must be a ``str``; a plain ``str`` key reaches Ruby as a String key (``h["k"]``),
a :class:`Symbol` key as a Symbol key (``h[:k]``).
"""
from __future__ import annotations

import datetime as dt
import re
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from resque_compat.errors import EncodeError, PayloadError
from resque_compat.wire import codec

SERIALIZED = "_aj_serialized"
GLOBALID = "_aj_globalid"
SYMBOL_KEYS = "_aj_symbol_keys"
RUBY2_KEYWORDS = "_aj_ruby2_keywords"
INDIFFERENT = "_aj_hash_with_indifferent_access"
#: Keys Rails refuses inside user hashes, so a user hash is never mistaken for a marker.
RESERVED_KEYS = frozenset({SERIALIZED, GLOBALID, SYMBOL_KEYS, RUBY2_KEYWORDS, INDIFFERENT})

_NS = "ActiveJob::Serializers::"


class Symbol(str):
    """A Ruby Symbol: ``Symbol("minutes")`` is written as ``:minutes``, as a value or a hash key."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Symbol({str.__repr__(self)})"


@dataclass(frozen=True)
class GlobalID:
    """A record reference ``gid://app/Model/id`` (Rails' GlobalID); fetch the record yourself."""

    uri: str
    app: str
    model: str
    id: str

    @classmethod
    def parse(cls, uri: str) -> "GlobalID":
        match = re.match(r"^gid://([^/]+)/([^/]+)/([^?]+)", uri or "")
        if not match:
            raise PayloadError(f"{uri!r} is not a GlobalID URI like gid://myapp/Person/42")
        return cls(uri, match.group(1), match.group(2), match.group(3))

    @classmethod
    def build(cls, app: str, model: str, id: Any) -> "GlobalID":
        return cls(f"gid://{app}/{model}/{id}", app, model, str(id))


@dataclass(frozen=True)
class Range:
    """A Ruby Range that is not a plain integer range (float or open ends): ``1.5..2.0``."""

    begin: Any
    end: Any
    exclude_end: bool = False


# -- Ruby -> Python ----------------------------------------------------------------------------

_TIME = re.compile(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?(Z|[+-]\d\d:?\d\d)$")


def parse_time(text: str) -> dt.datetime:
    """Ruby's ``Time.iso8601``: ``2024-01-02T03:04:05.000000000Z`` or ``…+05:30`` → aware
    datetime; fractional digits beyond microseconds are dropped (Python's precision)."""
    match = _TIME.match(text or "") if isinstance(text, str) else None
    if not match:
        raise PayloadError(f"{text!r} is not an ISO 8601 time such as 2024-01-02T03:04:05Z")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    micro = int((match.group(7) or "0")[:6].ljust(6, "0"))
    zone = match.group(8)
    if zone == "Z":
        tz = dt.timezone.utc
    else:
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        tz = dt.timezone(sign * dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    return dt.datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)


def _range(data: Mapping[str, Any]) -> Any:
    begin, end = deserialize(data.get("begin")), deserialize(data.get("end"))
    exclude = bool(data.get("exclude_end"))
    if type(begin) is int and type(end) is int:
        return range(begin, end if exclude else end + 1)
    return Range(begin, end, exclude)


def _decimal(data: Mapping[str, Any]) -> Decimal:
    try:
        return Decimal(str(data["value"]))
    except (InvalidOperation, KeyError):
        raise PayloadError(f"BigDecimalSerializer value {data.get('value')!r} is not a number") from None


_time_value: Callable[[Mapping[str, Any]], Any] = lambda data: parse_time(data["value"])  # noqa: E731

#: ``_aj_serialized`` name -> decoder of the whole hash. :func:`add_deserializer` extends it.
DESERIALIZERS: Dict[str, Callable[[Mapping[str, Any]], Any]] = {
    _NS + "SymbolSerializer": lambda data: str(data["value"]),
    _NS + "TimeSerializer": _time_value,
    _NS + "TimeWithZoneSerializer": _time_value,
    _NS + "DateTimeSerializer": _time_value,
    _NS + "DateSerializer": lambda data: dt.date.fromisoformat(data["value"]),
    _NS + "DurationSerializer": lambda data: dt.timedelta(seconds=data["value"]),
    _NS + "BigDecimalSerializer": _decimal,
    _NS + "ModuleSerializer": lambda data: str(data["value"]),
    _NS + "RangeSerializer": _range,
}


def add_deserializer(name: str, decode: Callable[[Mapping[str, Any]], Any]) -> None:
    """Teach the worker a custom Rails serializer: ``decode`` gets the whole ``_aj_serialized``
    hash (e.g. ``{"_aj_serialized": "MoneySerializer", "cents": 100}``) and returns the value."""
    DESERIALIZERS[name] = decode


def deserialize(value: Any) -> Any:
    """One serialised argument to its Python value (see the module table)."""
    if isinstance(value, list):
        return [deserialize(item) for item in value]
    if not isinstance(value, dict):
        return value
    if GLOBALID in value and len(value) == 1:
        return GlobalID.parse(value[GLOBALID])
    if SERIALIZED in value:
        name = value[SERIALIZED]
        decode = DESERIALIZERS.get(name)
        if decode is None:
            raise PayloadError(
                f"ActiveJob argument serializer {name!r} is not known to Python; register a "
                "decoder with resque_compat.activejob.add_deserializer(name, fn), or pass a plain "
                "value from Rails"
            )
        try:
            return decode(value)
        except (KeyError, TypeError, ValueError) as exc:
            raise PayloadError(f"cannot read {name} argument {value!r}: {exc}") from None
    return {key: deserialize(item) for key, item in value.items()
            if key not in (SYMBOL_KEYS, RUBY2_KEYWORDS, INDIFFERENT)}


def deserialize_arguments(arguments: Any) -> Tuple[List[Any], Dict[str, Any]]:
    """``job_data["arguments"]`` → (positional args, keyword args).

    As Ruby passes a ``ruby2_keywords`` hash in last position as keywords, only the last
    argument becomes ``**kwargs``; such a hash elsewhere stays a dict.
    """
    if not isinstance(arguments, list):
        raise PayloadError(f"ActiveJob arguments must be a JSON array, got {arguments!r}")
    kwargs: Dict[str, Any] = {}
    if arguments and isinstance(arguments[-1], dict) and RUBY2_KEYWORDS in arguments[-1]:
        kwargs = deserialize(arguments[-1])
        arguments = arguments[:-1]
    return [deserialize(item) for item in arguments], kwargs


# -- Python -> Ruby ----------------------------------------------------------------------------

def _serialized(name: str, **fields: Any) -> Dict[str, Any]:
    return {SERIALIZED: _NS + name, **fields}


def ruby_iso8601(value: dt.datetime) -> str:
    """Ruby's ``Time#iso8601(9)``: ``Z`` for UTC, ``+05:30`` otherwise; naive means local."""
    local = value.tzinfo is None or value.utcoffset() is None
    if local:
        value = value.astimezone()
    base = value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond:06d}000"
    offset = value.utcoffset() or dt.timedelta(0)
    # Ruby writes Z only for a UTC Time; a local Time in a UTC zone still gets +00:00.
    if not local and offset == dt.timedelta(0) and value.tzname() in ("UTC", "Z"):
        return base + "Z"
    return base + codec.utc_offset(int(offset.total_seconds()), colon=True)


def ruby_decimal(value: Decimal) -> str:
    """``BigDecimal#to_s`` under ActiveSupport (format ``F``): ``1.5``, ``100.0``."""
    if not value.is_finite():
        raise EncodeError(f"cannot send Decimal {value}: Rails' BigDecimalSerializer needs a finite number")
    text = format(value, "f")
    return text if "." in text else text + ".0"


def _seconds(value: dt.timedelta) -> Any:
    total = value.total_seconds()
    return int(total) if total == int(total) else total


def serialize(value: Any) -> Any:
    """One Python value as Rails 6.1+ would serialise the equivalent Ruby value."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, Symbol):
        return _serialized("SymbolSerializer", value=str(value))
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return [serialize(item) for item in value]
    if isinstance(value, dict):
        return _serialize_hash(value, SYMBOL_KEYS)
    if isinstance(value, GlobalID):
        return {GLOBALID: value.uri}
    if isinstance(value, dt.datetime):
        return _serialized("TimeSerializer", value=ruby_iso8601(value))
    if isinstance(value, dt.date):
        return _serialized("DateSerializer", value=value.isoformat())
    if isinstance(value, dt.timedelta):
        seconds = _seconds(value)
        return _serialized("DurationSerializer", value=seconds,
                           parts=[[serialize(Symbol("seconds")), seconds]])
    if isinstance(value, Decimal):
        return _serialized("BigDecimalSerializer", value=ruby_decimal(value))
    if isinstance(value, range) and value.step == 1:
        return _serialized("RangeSerializer", begin=value.start, end=value.stop, exclude_end=True)
    if isinstance(value, Range):
        return _serialized("RangeSerializer", begin=serialize(value.begin), end=serialize(value.end),
                           exclude_end=bool(value.exclude_end))
    raise EncodeError(
        f"cannot pass {type(value).__name__} {value!r} to an ActiveJob: use None, bool, int, "
        "float, str, Symbol, list, dict, datetime, date, timedelta, Decimal, range or GlobalID"
    )


def _serialize_hash(value: Mapping[Any, Any], marker: str) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise EncodeError(
                f"ActiveJob hash keys must be strings (or Symbol), but {key!r} is a "
                f"{type(key).__name__}; Rails refuses other keys, so convert it with str()"
            )
        if key in RESERVED_KEYS:
            raise EncodeError(f"{key!r} is reserved by ActiveJob and cannot be a hash key; rename it")
        out[str(key)] = serialize(item)
    if marker == RUBY2_KEYWORDS:
        out[marker] = [str(key) for key in value]
    else:
        out[marker] = [str(key) for key in value if isinstance(key, Symbol)]
    return out


def serialize_arguments(args: Sequence[Any], kwargs: Optional[Mapping[str, Any]] = None) -> List[Any]:
    """``job.arguments`` as Rails writes them; keyword arguments become a last
    ``_aj_ruby2_keywords`` hash, as Ruby's ``perform_later(..., key: value)`` does."""
    out = [serialize(item) for item in args]
    if kwargs:
        out.append(_serialize_hash(kwargs, RUBY2_KEYWORDS))
    return out


# -- job_data: the hash Rails' adapter enqueues ------------------------------------------------

#: The class Rails' Resque adapter enqueues; its one argument is ``job.serialize`` (WIRE §2.6).
JOB_WRAPPER = "ActiveJob::QueueAdapters::ResqueAdapter::JobWrapper"

#: ``locale``/``timezone`` written into every job_data from this process (see :func:`configure`).
_defaults: Dict[str, Optional[str]] = {"locale": "en", "timezone": None}

def configure(*, locale: Optional[str] = "en", timezone: Optional[str] = None) -> None:
    """Set the ``locale`` and ``timezone`` (a Rails zone name such as ``"UTC"``) written into
    every job enqueued from this process, as Rails takes them from I18n and ``Time.zone``."""
    _defaults.update(locale=locale, timezone=timezone)


def job_data(job_class: str, args: Sequence[Any] = (), kwargs: Optional[Mapping[str, Any]] = None,
             *, queue: str = "default", job_id: Optional[str] = None,
             enqueued_at: Optional[str] = None, priority: Optional[int] = None,
             locale: Optional[str] = None, timezone: Optional[str] = None) -> Dict[str, Any]:
    """Rails 6.1's ``job.serialize``, field for field and in its order. ``job_id`` defaults to
    a new UUID, ``enqueued_at`` to now, ``locale``/``timezone`` to :func:`configure`'s."""
    if not isinstance(job_class, str) or not job_class:
        raise PayloadError("enqueue_active_job needs the Rails job class name, e.g. \"WelcomeMailerJob\"")
    return {
        "job_class": job_class,
        "job_id": job_id or str(uuid.uuid4()),
        "provider_job_id": None,
        "queue_name": queue,
        "priority": priority,
        "arguments": serialize_arguments(args, kwargs),
        "executions": 0,
        "exception_executions": {},
        "locale": locale if locale is not None else _defaults["locale"],
        "timezone": timezone if timezone is not None else _defaults["timezone"],
        "enqueued_at": enqueued_at or codec.iso8601_utc(time.time()),
    }
