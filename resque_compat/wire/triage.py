"""Failure triage rules, pure: stable entry ids, reading ``failed_at``, and filters.

An entry's id is a short hash of its exact bytes, so it names the same failure wherever the list
moves it, and changes when the entry itself changes (``retried_at`` added): a command given
``INDEX:ID`` acts only if the entry at INDEX still hashes to ID (resque#1172).
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import re
import time
from dataclasses import dataclass
from typing import Any, Optional, Pattern, Union

from resque_compat.wire.activejob_args import JOB_WRAPPER

#: Hex digits of SHA-1 kept: 48 bits, so two entries of a million-entry list collide with odds
#: of about 1 in 500 million (and a collision only makes a command refuse, never misfire,
#: since actions compare the whole entry).
ID_LENGTH = 12
_ID = re.compile(r"^[0-9a-f]{%d}$" % ID_LENGTH)
_REF = re.compile(r"^(?:(\d+)(?::([0-9a-f]{%d}))?|([0-9a-f]{%d}))$" % (ID_LENGTH, ID_LENGTH))
#: ``Failure::Redis`` writes ``%Y/%m/%d %H:%M:%S %Z``; RedisMultiQueue's ``retried_at`` has no zone.
_FAILED_AT = re.compile(r"^(\d{4})/(\d\d)/(\d\d) (\d\d):(\d\d):(\d\d)(?: (\S+))?$")
_OFFSET = re.compile(r"^([+-])(\d\d):?(\d\d)$")
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def entry_id(raw: Union[str, bytes]) -> str:
    """The stable id of a failure entry: the first hex digits of SHA-1 over its bytes."""
    data = raw.encode("utf-8", errors="surrogateescape") if isinstance(raw, str) else bytes(raw)
    return hashlib.sha1(data).hexdigest()[:ID_LENGTH]


@dataclass(frozen=True)
class Ref:
    """What a command was told: an index, an id, or both (``12:3f2a9c1b0d4e``)."""

    index: Optional[int]
    id: Optional[str]

    @classmethod
    def parse(cls, text: str) -> "Ref":
        m = _REF.match(text.strip().lower())
        if m is None:
            raise ValueError(f"{text!r} is not a failure reference: give INDEX:ID as `resque-py failed "
                             f"list` prints it (e.g. 12:{'0' * ID_LENGTH}), the ID alone, or an INDEX")
        if m.group(3):
            return cls(None, m.group(3))
        return cls(int(m.group(1)), m.group(2))

    def __str__(self) -> str:
        return ":".join(str(p) for p in (self.index, self.id) if p is not None)


def is_id(text: str) -> bool:
    return bool(_ID.match(text))


def parse_failed_at(text: Any) -> Optional[float]:
    """Epoch seconds of a ``failed_at`` value, or None if unreadable.

    Ruby writes local time with a zone *abbreviation* (``UTC``, ``EST``, ``IST``), which is
    ambiguous; ``UTC``/``GMT``/``Z`` and numeric offsets are exact, any other abbreviation or
    none is read as this host's local time (right when the workers share this host's zone,
    off by the zones' difference otherwise). RFC 3339 (``2026-11-27T11:55:41.5+00:00``) is
    read too.
    """
    if not isinstance(text, str):
        return None
    m = _FAILED_AT.match(text.strip())
    if m is None:
        try:
            value = _dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
        return value.timestamp()
    fields = [int(g) for g in m.groups()[:6]]
    zone = m.group(7)
    tz: Optional[_dt.tzinfo] = None
    if zone in ("UTC", "GMT", "Z"):
        tz = _dt.timezone.utc
    elif zone and _OFFSET.match(zone):
        sign, hours, minutes = _OFFSET.match(zone).groups()  # type: ignore[union-attr]
        delta = _dt.timedelta(hours=int(hours), minutes=int(minutes))
        tz = _dt.timezone(-delta if sign == "-" else delta)
    try:
        year, month, day, hour, minute, second = fields
        return _dt.datetime(year, month, day, hour, minute, second, tzinfo=tz).timestamp()
    except ValueError:
        return None


def parse_when(text: str, now: Optional[float] = None) -> float:
    """``--since``/``--until``: an age (``90s``, ``30m``, ``2h``, ``7d``, ``1w``: that long
    before now), a ``failed_at``-style time, or ISO 8601. Raises ValueError saying what works."""
    now = time.time() if now is None else now
    m = _RELATIVE.match(text.strip().lower())
    if m:
        return now - float(m.group(1)) * _UNITS[m.group(2)]
    when = parse_failed_at(text)
    if when is None:
        raise ValueError(f"{text!r} is not a time: give an age such as 30m, 2h or 7d, or a time "
                         "such as 2026-11-27T11:55:41Z or '2026/11/27 11:55:41 UTC'")
    return when


def job_class(data: dict) -> Optional[str]:
    """The class a failure is about: the ActiveJob class inside a JobWrapper, else ``class``."""
    payload = data.get("payload")
    if not isinstance(payload, dict):
        return None
    name = payload.get("class")
    args = payload.get("args")
    if name == JOB_WRAPPER and isinstance(args, list) and args and isinstance(args[0], dict):
        inner = args[0].get("job_class")
        if isinstance(inner, str):
            return inner
    return name if isinstance(name, str) else None


@dataclass(frozen=True)
class FailureFilter:
    """The triage filters; an unset field matches everything. A failure entry that is not a
    JSON object matches only a filter with nothing set (or only ``grep``, on its raw text)."""

    class_name: Optional[str] = None
    exception: Optional[str] = None
    queue: Optional[str] = None
    worker: Optional[str] = None
    since: Optional[float] = None
    until: Optional[float] = None
    grep: Optional[Pattern[str]] = None

    @property
    def empty(self) -> bool:
        return all(v is None for v in (self.class_name, self.exception, self.queue, self.worker,
                                       self.since, self.until, self.grep))

    def matches(self, data: Optional[dict], raw: str) -> bool:
        if data is None:
            fields = (self.class_name, self.exception, self.queue, self.worker, self.since, self.until)
            return all(v is None for v in fields) and (self.grep is None or bool(self.grep.search(raw)))
        if self.class_name is not None and self.class_name not in (
                job_class(data), (data.get("payload") or {}).get("class")
                if isinstance(data.get("payload"), dict) else None):
            return False
        if self.exception is not None and data.get("exception") != self.exception:
            return False
        if self.queue is not None and data.get("queue") != self.queue:
            return False
        if self.worker is not None:
            worker = data.get("worker")
            # a whole id, or its host:pid (what resque-web shows) / host prefix
            if not isinstance(worker, str) or not (worker == self.worker
                                                   or worker.startswith(self.worker + ":")):
                return False
        if self.since is not None or self.until is not None:
            when = parse_failed_at(data.get("failed_at"))
            if when is None:
                return False
            if (self.since is not None and when < self.since) or \
                    (self.until is not None and when > self.until):
                return False
        if self.grep is not None:
            error = data.get("error")
            if not isinstance(error, str) or not self.grep.search(error):
                return False
        return True
