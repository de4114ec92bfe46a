"""``--from-log FILE --pattern REGEX``: one event per matching line, timed by the line itself.

This is the original idea behind issue 8 ("render our log data as a sound"). Timestamp shapes
recognised anywhere in the line (the leftmost wins on the first timed line, then that shape is
tried first):

=====================  ===========================================  ============================
shape                  example                                      written by
=====================  ===========================================  ============================
ISO 8601 / RFC 3339    ``2026-11-27T11:55:41.123Z``,                Ruby Logger, Rails, Python
                       ``2026-11-27 11:55:41,123``,                 logging, JSON logs
                       ``2026-11-27T11:55:41+01:00``
Ruby ``Time#to_s``     ``2026-11-27 11:55:41 +0000`` / ``… UTC``    Resque (worker:<id>:started)
Resque ``failed_at``   ``2026/11/27 12:01:34 UTC``                  Resque failure entries
Common Log Format      ``[27/Nov/2026:11:55:41 +0000]``             nginx, Apache
syslog                 ``Nov 27 11:55:41`` (year: the file's mtime) syslog, journald exports
Unix epoch             ``1795780680.619`` or ``1795780680619`` (ms)  at the start of a line only
=====================  ===========================================  ============================

A timestamp without an offset is read as UTC (only the spacing of events matters to the sound).
Named groups in REGEX refine the event: ``(?P<ts>...)`` says where the timestamp is,
``(?P<queue>...)`` gives the queue (pitch and stereo place), and a non-empty ``(?P<failed>...)``
makes the line a failure instead of a job. A matching line without a timestamp takes the
previous line's (continuation lines); timestamps that go backwards are held at the latest seen,
so interleaved logs still play in order. Each event spans its timestamp's resolution (1 s for
``11:55:41``, 1 ms for ``11:55:41.123``), so a busy second is spread over that second.
"""
from __future__ import annotations

import calendar
import logging
import os
import re
import time
from typing import Iterator, List, Optional, Pattern, Tuple

from resque_compat.listen.events import FAILURE, JOB, Event

logger = logging.getLogger("resque_compat.listen")

_MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}

_FRACTION = r"(?:[.,](?P<frac>\d{1,9}))?"
_OFFSET = r"(?P<tz>Z|UTC|GMT|[+-]\d{2}:?\d{2})?"

#: (name, regex) for each shape in the module docstring's table, tried in this order on a tie.
SHAPES: List[Tuple[str, Pattern[str]]] = [
    ("iso8601", re.compile(r"(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})[T ](?P<h>\d{2}):(?P<mi>\d{2}):"
                           r"(?P<s>\d{2})" + _FRACTION + r"\s?" + _OFFSET)),
    ("resque_failure_time", re.compile(r"(?P<y>\d{4})/(?P<mo>\d{2})/(?P<d>\d{2}) (?P<h>\d{2}):(?P<mi>\d{2}):"
                                    r"(?P<s>\d{2})" + _FRACTION + r"\s?" + _OFFSET)),
    ("common_log", re.compile(r"(?P<d>\d{2})/(?P<mon>[A-Za-z]{3})/(?P<y>\d{4}):(?P<h>\d{2}):(?P<mi>\d{2}):"
                              r"(?P<s>\d{2})" + _FRACTION + r"\s?" + _OFFSET)),
    ("syslog", re.compile(r"\b(?P<mon>[A-Z][a-z]{2}) {1,2}(?P<d>\d{1,2}) (?P<h>\d{2}):(?P<mi>\d{2}):"
                          r"(?P<s>\d{2})" + _FRACTION)),
    ("epoch", re.compile(r"^\W{0,2}(?P<epoch>\d{10}(?:\.\d{1,9})?|\d{13})\b")),
]


def _offset_seconds(tz: Optional[str]) -> int:
    if not tz or tz in ("Z", "UTC", "GMT"):
        return 0
    digits = tz[1:].replace(":", "")
    seconds = int(digits[:2]) * 3600 + int(digits[2:]) * 60
    return -seconds if tz[0] == "-" else seconds


def _from_match(m: "re.Match[str]", default_year: int) -> Tuple[float, float]:
    """(Unix time, resolution in seconds) of one timestamp match."""
    g = m.groupdict()
    if g.get("epoch"):
        text = g["epoch"]
        if "." not in text and len(text) == 13:
            return int(text) / 1000.0, 0.001
        frac = text.partition(".")[2]
        return float(text), 10.0 ** -len(frac) if frac else 1.0
    month = int(g["mo"]) if g.get("mo") else _MONTHS.get((g.get("mon") or "").lower())
    if not month:
        raise ValueError(f"unknown month {g.get('mon')!r}")
    year = int(g["y"]) if g.get("y") else default_year
    seconds = calendar.timegm((year, month, int(g["d"]), int(g["h"]), int(g["mi"]), int(g["s"]), 0, 0, 0))
    frac = g.get("frac") or ""
    value = seconds - _offset_seconds(g.get("tz")) + (int(frac) / 10 ** len(frac) if frac else 0.0)
    return float(value), 10.0 ** -len(frac) if frac else 1.0


class TimestampParser:
    """Finds and parses the timestamp in a line, remembering which shape the file uses."""

    def __init__(self, default_year: Optional[int] = None) -> None:
        self.default_year = default_year or time.gmtime().tm_year
        self.shape: Optional[Tuple[str, Pattern[str]]] = None

    def parse(self, text: str) -> Optional[Tuple[float, float]]:
        if self.shape is not None:
            m = self.shape[1].search(text)
            if m:
                return _from_match(m, self.default_year)
        best: Optional[Tuple[int, Tuple[str, Pattern[str]], "re.Match[str]"]] = None
        for shape in SHAPES:
            m = shape[1].search(text)
            if m and (best is None or m.start() < best[0]):
                best = (m.start(), shape, m)
        if best is None:
            return None
        try:
            value = _from_match(best[2], self.default_year)
        except ValueError:  # e.g. month 13: not a timestamp after all
            return None
        self.shape = best[1]
        return value


def read_log(path: str, pattern: str) -> Iterator[Event]:
    """One event per line of ``path`` that ``pattern`` matches (see the module docstring).

    Raises ValueError for a pattern that does not compile, naming the problem.
    """
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"--pattern {pattern!r} is not a valid regular expression ({exc}); "
                         "e.g. --pattern 'Processed|(?P<failed>Failed)'") from None
    try:
        year = time.gmtime(os.path.getmtime(path)).tm_year
    except OSError:
        year = None
    parser = TimestampParser(year)
    return _events(path, regex, parser)


def _events(path: str, regex: Pattern[str], parser: TimestampParser) -> Iterator[Event]:
    last_t: Optional[float] = None
    last_span = 1.0
    untimed = 0
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            m = regex.search(line)
            if not m:
                continue
            groups = m.groupdict()
            stamp = parser.parse(groups["ts"] if groups.get("ts") else line)
            if stamp is not None:
                start, span = stamp
                t = start + span  # the line happened somewhere in [start, start + span)
                last_t, last_span = (t, span) if last_t is None or t > last_t else (last_t, span)
            elif last_t is None:
                untimed += 1
                continue
            kind = FAILURE if groups.get("failed") else JOB
            yield Event(last_t, kind, queue=groups.get("queue") or "", n=1, span=last_span)
    if untimed:
        logger.warning("%s: %d matching line(s) before the first timestamp were skipped; see "
                       "resque-py listen --help for the timestamp shapes read", path, untimed)

