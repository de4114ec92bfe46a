"""The grammar of a cron line as fugit 1.5 reads it (see :mod:`cron`): fields, names, ranges,
steps, ``L``/``-N`` days, ``#`` weekdays and the trailing zone. Pure; :func:`cron.parse` builds a
:class:`cron.Cron` from what :func:`parse_fields` returns.
"""
from __future__ import annotations

import datetime as _dt
import re
from typing import Any, FrozenSet, List, Optional, Sequence, Tuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

SPECIALS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
    "@noon": "0 12 * * *", "@hourly": "0 * * * *",
}
#: fugit's MAXDAYS: February may have 29, so ``29 2`` is valid and ``30 2`` is not.
MAXDAYS = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
FIELD_NAMES = ("seconds", "minutes", "hours", "day of month", "month", "day of week")
#: The bound each field accepts, as fugit's regular expressions.
_BOUND = {
    "seconds": r"[0-5]?\d", "minutes": r"[0-5]?\d", "hours": r"2[0-4]|[01]?\d",
    "day of month": r"-?(?:3[01]|[12]\d|0?[1-9])|last|l",
    "month": r"1[0-2]|0?[1-9]|" + "|".join(MONTHS), "day of week": r"[0-7]|" + "|".join(WEEKDAYS),
}
_LIMITS = {"seconds": (0, 59), "minutes": (0, 59), "hours": (0, 23), "day of month": (1, 31),
           "month": (1, 12)}
_TZ_NAME = re.compile(r"[A-Z][a-zA-Z0-9+\-]+(?:/[A-Z][a-zA-Z0-9+\-_]+){0,2}")
_TZ_OFFSET = re.compile(r"([-+])([01]\d|2[0-4]):?(00|15|30|45)")
class CronError(ValueError):
    """A cron line that fugit would refuse too; ``field`` names the part that is wrong."""

    def __init__(self, message: str, field: str = "cron") -> None:
        super().__init__(message)
        self.field = field


#: A parsed line: seconds, minutes, hours, monthdays, months, weekdays (None = ``*``), zone, and
#: the zone's name as written (None = the scheduler's zone); the fields of :class:`cron.Cron`.
Fields = Tuple[Any, ...]


def parse_fields(text: str, default_zone: _dt.tzinfo) -> Fields:
    """Parse a cron line as fugit does; raises CronError naming the field that is wrong."""
    if not isinstance(text, str):
        raise CronError(f"a cron line must be a string, e.g. \"0 5 * * *\" (got {text!r})")
    line = SPECIALS.get(text.strip(), text.strip())
    tokens = line.split()
    if len(tokens) < 5:
        raise CronError(f"{text!r} has {len(tokens)} fields; a cron line has 5 (min hour day "
                        "month weekday) or 6 (seconds first), then optionally a zone")
    seconds_form = (tokens[:6], tokens[6:]) if len(tokens) >= 6 else None
    classic = (["0"] + tokens[:5], tokens[5:])
    # A 6th token is the seconds form's weekday unless it reads as a zone: report the error of
    # the form the writer most likely meant.
    meant_classic = seconds_form is None or (len(tokens) == 6 and not _is_weekday_field(tokens[5]))
    errors = []
    for fields, rest in ([seconds_form] if seconds_form else []) + [classic]:
        try:
            return _build(text, fields, rest, default_zone)
        except CronError as exc:
            errors.append(exc)
    raise errors[-1] if meant_classic else errors[0]


def _is_weekday_field(token: str) -> bool:
    try:
        _weekdays(token)
    except CronError:
        return False
    return True


def _build(original: str, fields: Sequence[str], rest: Sequence[str], default_zone: _dt.tzinfo) -> Fields:
    if len(rest) > 1:
        raise CronError(f"{original!r} has too many fields: {' '.join(rest)!r} is not a zone", "zone")
    zone, zone_name = (parse_zone(rest[0]), rest[0]) if rest else (default_zone, None)
    seconds, minutes, hours, monthdays, months = (
        _numeric(name, value) for name, value in zip(FIELD_NAMES[:5], fields[:5]))
    if hours is not None:
        hours = frozenset(0 if h == 24 else h for h in hours)
    weekdays = _weekdays(fields[5])
    if monthdays is not None:
        pairs = [(m, d) for m in (months or range(1, 13)) for d in monthdays if d <= MAXDAYS[m]]
        if not pairs:
            raise CronError(f"{original!r}: no month has day {','.join(map(str, sorted(monthdays)))}",
                            "day of month")
        months = frozenset(m for m, _ in pairs)
        monthdays = frozenset(d for _, d in pairs)
    return (seconds, minutes, hours, monthdays, months, weekdays, zone, zone_name)


def parse_zone(name: str) -> _dt.tzinfo:
    """``Europe/Stockholm`` (IANA, from the system's or the tzdata package's database) or
    ``+0900``/``-05:30``; raises CronError(field="zone")."""
    offset = _TZ_OFFSET.fullmatch(name)
    if offset:
        sign = -1 if offset.group(1) == "-" else 1
        delta = _dt.timedelta(hours=int(offset.group(2)), minutes=int(offset.group(3)))
        return _dt.timezone(sign * delta)
    if _TZ_NAME.fullmatch(name):
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
    raise CronError(f"unknown time zone {name!r}; use an IANA name such as Europe/Stockholm or "
                    "America/New_York, or an offset such as +0900", "zone")


_ELEMENT = "(?:(?P<star>\\*)|(?P<a>{b})(?:-(?P<z>{b}))?)?(?:/(?P<step>\\d\\d?))?"


def _elements(name: str, value: str) -> list:
    pattern = re.compile(_ELEMENT.format(b=_BOUND[name]), re.IGNORECASE)
    out = []
    for part in value.split(","):
        match = pattern.fullmatch(part)
        if not part or not match or not (match.group("star") or match.group("a") or match.group("step")):
            raise CronError(f"bad {name} field {value!r} (at {part!r}); use *, N, N-M, */S, N-M/S "
                            "or a comma-separated list", name)
        if match.group("step") is not None and int(match.group("step")) == 0:
            raise CronError(f"bad {name} field {value!r}: a step of 0 never advances", name)
        out.append(match)
    return out


def _bound(name: str, text: Optional[str]) -> Optional[int]:
    if text is None:
        return None
    low = text.lower()
    if name == "month" and low in MONTHS:
        return MONTHS.index(low) + 1
    if name == "day of week" and low in WEEKDAYS:
        return WEEKDAYS.index(low)
    if name == "day of month" and low[0] == "l":
        return -1
    return int(low)


def _numeric(name: str, value: str) -> Optional[FrozenSet[int]]:
    low, high = _LIMITS[name]
    values = []
    for m in _elements(name, value):
        step = int(m.group("step")) if m.group("step") else None
        values.extend(_expand(low, high, _bound(name, m.group("a")), _bound(name, m.group("z")), step, name))
    if None in values:
        return None
    return frozenset(values)


def _expand(low: int, high: int, start: Optional[int], end: Optional[int], step: Optional[int],
            name: str) -> list:
    """fugit's ``expand``/``range``: wrapping ranges, negative days, ``a/n`` to the end."""
    if step == 1:
        step = None
    if step and end is None:
        end = high
    if start is None and end is None and step is None:
        return [None]
    if start is not None and end is None:
        return [start]
    step = step or 1
    start = low if start is None else start
    if end is None or (end < 0 < start):
        end = high
    if (start < 0 < end) or (end < 0 < start):
        raise CronError(f"bad {name} range {start}-{end}: both ends must count from the same end "
                        "of the month", name)
    if start < 0:
        low, high = -high, -1
    out, cur = [], start
    while True:
        out.append(cur)
        if cur == end:
            break
        cur += 1
        if cur > high:
            cur = low
            if end > high:
                end = end - high - 1
        if len(out) > 2 * (high - low + 2):
            raise CronError(f"bad {name} range {start}-{end}", name)
    return list(dict.fromkeys(out[::step]))


def _weekdays(value: str) -> Optional[FrozenSet[Tuple[int, Optional[int]]]]:
    if "%" in value:
        raise CronError(f"day of week {value!r}: fugit's % modulo is not supported by resque-py; "
                        "list the days instead", "day of week")
    out: List[Tuple[int, Optional[int]]] = []
    for part in value.split(","):
        nth: Optional[int] = None
        hashed = re.fullmatch(r"(.+)#(-?[1-5]|last|l)", part, re.IGNORECASE)
        if hashed:
            part = hashed.group(1)
            nth = -1 if hashed.group(2).lower()[0] == "l" else int(hashed.group(2))
        (m,) = _elements("day of week", part)
        a, z = _bound("day of week", m.group("a")), _bound("day of week", m.group("z"))
        step = int(m.group("step")) if m.group("step") else None
        if nth is not None:
            if a is None or z is not None or step:
                raise CronError(f"day of week {value!r}: # follows a single day, e.g. mon#2", "day of week")
            out.append((a, nth))
        elif step:
            last = z if z is not None else (a if a is not None else 6)
            out.extend((d, None) for d in range(a or 0, last + 1, step))
        elif z is not None:
            assert a is not None
            out.extend(((d - 7 if d > 6 else d), None) for d in range(a, (z + 7 if a > z else z) + 1))
        elif a is not None:
            out.append((a, None))
    days = frozenset((0 if d == 7 else d, n) for d, n in out)
    return days or None
