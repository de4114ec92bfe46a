"""Cron lines as resque-scheduler reads them (rufus-scheduler 3.8 / fugit 1.5), and their slots.

Pure: parses strings and does calendar arithmetic, no I/O. The grammar and field rules are
fugit's (``lib/fugit/cron.rb`` at v1.5.2), re-implemented, not copied:

* 5 fields, or 6 with **seconds first**; an optional trailing zone: an IANA name
  (``Europe/Stockholm``) or an offset (``+0900``, ``-05:30``). Without one, the scheduler's zone.
* ``*``, lists, ``a-b`` ranges (wrapping: ``22-2`` is 22,23,0,1,2), ``*/n``, ``a/n`` (a to the
  end), ``a-b/n``; month and weekday names (``jan``, ``mon``); weekday 7 is Sunday; hour 24 is 0.
* day of month: ``L``/``last`` and ``-1``..``-31`` count from the month's end (``-2`` = the day
  before the last); day of week: ``mon#2``, ``fri#-1``/``fri#L`` (last Friday of the month).
* both day fields restricted: either matches (``man 5 crontab``); ``*/2`` counts as restricted
  and ``*`` does not. A day that no month has (``30 2``) is an invalid line, as in fugit.
* ``@yearly @annually @monthly @weekly @daily @midnight @noon @hourly``.

Daylight-saving time (the issue's rule: every slot once, never twice, never skipped):

* Slots are computed in real time, on the zone's wall clock, as fugit does, so a cron whose hour
  field is ``*`` (``*/15 * * * *``, ``* * * * * *``) fires exactly when fugit's does, through
  both transitions.
* Repeated hour (clocks go back): fugit drops a match whose wall-clock time equals the previous
  slot's. We keep that, and also drop every match in the second pass of the repeated hour when
  the hour field is restricted, so ``0,30 1 * * *`` runs twice that night, not four times.
* Skipped hour (clocks go forward): fugit never fires a wall-clock time that does not exist
  (``30 2 * * *`` skips a day). When the hour field is restricted we fire such a slot once, at
  the first instant after the gap (03:00), as Debian's cron does; divergence documented in the
  README ("Recurring schedules").

Not supported (refused with a message, never misread): fugit's ``%`` weekday modulo
(``tue%2``), and its natural-language forms (``every monday at noon``).
"""
from __future__ import annotations

import calendar
import datetime as _dt
from dataclasses import dataclass
from typing import FrozenSet, Optional, Tuple

from resque_compat.scheduler.cron_fields import CronError, parse_fields, parse_zone

__all__ = ["Cron", "CronError", "parse", "parse_zone", "resolve_wall"]

#: fugit gives up after 2048 cursor moves; our extra DST rules may add a few per slot.
MAX_STEPS = 4096


@dataclass(frozen=True)
class Cron:
    """One parsed line. A field of None is unrestricted (``*``)."""

    original: str
    seconds: Optional[FrozenSet[int]]
    minutes: Optional[FrozenSet[int]]
    hours: Optional[FrozenSet[int]]
    monthdays: Optional[FrozenSet[int]]
    months: Optional[FrozenSet[int]]
    #: (weekday 0-6, nth or None): nth 1..5 from the month's start, -1..-5 from its end.
    weekdays: Optional[FrozenSet[Tuple[int, Optional[int]]]]
    zone: _dt.tzinfo
    zone_name: Optional[str]

    # -- matching (fugit's *_match? methods) --------------------------------------------------
    def matches(self, local: _dt.datetime) -> bool:
        """Whether this wall-clock time (in the cron's zone) is one of the line's times."""
        return (self._in(self.months, local.month) and self._day_matches(local)
                and self._in(self.hours, local.hour) and self._in(self.minutes, local.minute)
                and self._in(self.seconds, local.second))

    @staticmethod
    def _in(values: Optional[FrozenSet[int]], value: int) -> bool:
        return values is None or value in values

    def _day_matches(self, local: _dt.datetime) -> bool:
        if self.weekdays is not None and self.monthdays is not None:
            return self._weekday_matches(local) or self._monthday_matches(local)
        return self._weekday_matches(local) and self._monthday_matches(local)

    def _monthday_matches(self, local: _dt.datetime) -> bool:
        if self.monthdays is None:
            return True
        last = calendar.monthrange(local.year, local.month)[1] + 1
        return any((last + d if d < 1 else d) == local.day for d in self.monthdays)

    def _weekday_matches(self, local: _dt.datetime) -> bool:
        if self.weekdays is None:
            return True
        wday = (local.weekday() + 1) % 7  # Ruby's wday: Sunday is 0
        days = calendar.monthrange(local.year, local.month)[1]
        for day, nth in self.weekdays:
            if day != wday:
                continue
            if nth is None:
                return True
            if nth > 0 and nth == (local.day - 1) // 7 + 1:
                return True
            if nth < 0 and nth == -((days - local.day) // 7 + 1):
                return True
        return False

    @property
    def fixed_hour(self) -> bool:
        """A time-of-day job (hour field restricted): our stricter DST rules apply to it."""
        return self.hours is not None

    # -- the next slot ------------------------------------------------------------------------
    def next_time(self, after: float) -> int:
        """The first slot (epoch second) strictly after ``after``, with the DST rules above.

        Walks real time the way fugit's ``next_time`` does: jump to the next month, day, hour,
        minute or second that could match, re-reading the wall clock after each jump.
        """
        start = int(after // 1)
        t = start + 1
        from_local = _local(start, self.zone)
        for _ in range(MAX_STEPS):
            local = _local(t, self.zone)
            if not self._in(self.months, local.month):
                t = _next_step(t, _first_of_next_month(local), self, start)
            elif not self._day_matches(local):
                t = _next_step(t, _midnight_after(local), self, start)
            elif not self._in(self.hours, local.hour):
                t = _next_step(t, t + (60 - local.minute) * 60 - local.second, self, start)
            elif not self._in(self.minutes, local.minute):
                t = _next_step(t, t + 60 - local.second, self, start)
            elif not self._in(self.seconds, local.second):
                later = [s for s in self.seconds if s > local.second]  # type: ignore[union-attr]
                step = (min(later) if later else 60 + min(self.seconds)) - local.second  # type: ignore[arg-type]
                t = _next_step(t, t + step, self, start)
            elif (self.zone_name is None and _wall(local) == _wall(from_local)
                  and local.utcoffset() != from_local.utcoffset()):
                # fugit gh-6: out of DST, never the same wall-clock time twice in a row. fugit
                # compares in the zone of ``from``, the scheduler's: only a line without a zone
                # suffix is affected.
                from_local, t = local, t + 1
            elif local.fold and self.fixed_hour:
                t += 1  # second pass of a repeated hour: a time-of-day job already ran
            else:
                return t
            if isinstance(t, _GapSlot):
                return int(t)
        raise CronError(f"no time matches {self.original!r} (like Feb 30th?)", "cron")

    def __str__(self) -> str:
        return self.original


class _GapSlot(int):
    """A slot fired at the end of a DST gap (a time-of-day job's time did not exist)."""


def _next_step(t: int, target: int, cron: Cron, start: int) -> int:
    """Move the cursor from ``t`` to ``target``; for a time-of-day job, a wall-clock match that
    fell in a DST gap crossed on the way becomes a slot at the gap's end."""
    target = max(target, t + 1)
    if not cron.fixed_hour:
        return target
    before, after = _local(t, cron.zone).utcoffset(), _local(target, cron.zone).utcoffset()
    if before is None or after is None or after <= before:
        return target
    end = _transition(t, target, cron.zone)  # first instant on the new offset
    if end <= start:
        return target
    wall_end = _wall_dt(_local(end, cron.zone))
    wall = wall_end - (after - before)
    while wall < wall_end:  # the wall-clock times that never existed, second by second skipped
        if cron.matches(wall):
            return _GapSlot(end)
        wall = _skip(cron, wall)
    return target


def _skip(cron: Cron, wall: _dt.datetime) -> _dt.datetime:
    if not cron._in(cron.hours, wall.hour):
        return wall.replace(minute=0, second=0) + _dt.timedelta(hours=1)
    if not cron._in(cron.minutes, wall.minute):
        return wall.replace(second=0) + _dt.timedelta(minutes=1)
    return wall + _dt.timedelta(seconds=1)


def _transition(lo: int, hi: int, zone: _dt.tzinfo) -> int:
    """The first second in (lo, hi] whose offset is that of ``hi`` (binary search)."""
    target = _local(hi, zone).utcoffset()
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _local(mid, zone).utcoffset() == target:
            hi = mid
        else:
            lo = mid
    return hi


def _local(t: int, zone: _dt.tzinfo) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(t, zone)


def _wall(local: _dt.datetime) -> Tuple[int, ...]:
    return (local.year, local.month, local.day, local.hour, local.minute, local.second)


def _wall_dt(local: _dt.datetime) -> _dt.datetime:
    return local.replace(tzinfo=None, fold=0)


def resolve_wall(wall: _dt.datetime, zone: _dt.tzinfo) -> int:
    """Epoch second of a naive wall-clock time: its first occurrence if repeated, the end of
    the gap if it does not exist."""
    first = int(wall.replace(tzinfo=zone, fold=0).timestamp())
    if _wall_dt(_local(first, zone)) == wall:
        return first
    second = int(wall.replace(tzinfo=zone, fold=1).timestamp())
    lo, hi = sorted((first, second))
    return _transition(lo, hi, zone) if hi > lo else hi


def _first_of_next_month(local: _dt.datetime) -> int:
    year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    return resolve_wall(_dt.datetime(year, month, 1), local.tzinfo)  # type: ignore[arg-type]


def _midnight_after(local: _dt.datetime) -> int:
    day = _dt.datetime(local.year, local.month, local.day) + _dt.timedelta(days=1)
    return resolve_wall(day, local.tzinfo)  # type: ignore[arg-type]


# -- parsing -------------------------------------------------------------------------------------

def parse(text: str, default_zone: _dt.tzinfo = _dt.timezone.utc) -> Cron:
    """Parse a cron line as fugit does (:mod:`cron_fields`); raises CronError naming the field."""
    return Cron(text, *parse_fields(text, default_zone))
