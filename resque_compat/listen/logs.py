"""``--from-log FILE [--pattern REGEX]``: one event per job line, timed by the line itself.

This is the original idea behind issue 8 ("render our log data as a sound"). Without
``--pattern`` the job lines of Resque's and resque-py's own logs are read (issue 18 item 3,
issue 15 item 8), queue, class and failure included:

=================================  ===================================================================
written by                         job lines (``got:`` lines are not events: the job has not ended)
=================================  ===================================================================
Ruby Resque, ``VVERBOSE=1``        ``** [09:00:11 2027-01-05] 4242: done: (Job{critical} | Deliver | [3])``
                                   ``** [...] 4242: (Job{critical} | Deliver | [3]) failed: #<RuntimeError: x>``
resque-py, ``VVERBOSE=1``          ``** [09:00:11 2027-01-05] 4242: done: (critical) Deliver``
                                   ``** [...] 4242: failed: (critical) Deliver: RuntimeError: x``
resque-py, ``LOG_FORMAT=json``     ``{"time":"2027-01-05T09:00:11.005Z",...,"message":"done: (critical) Deliver"}``
any logger around Resque's text    ``2027-01-05T09:00:11.005+00:00 INFO done: (Job{critical} | Deliver | [3])``
=================================  ===================================================================

Ruby logs each failure twice with the same text (``Worker#report_failed_job`` and ``Job#fail``);
a failure line equal to the previous one is counted once. ``VERBOSE=1`` lines (``*** done: …``)
carry no time, so they cannot be played: run the worker with ``VVERBOSE=1``.

With ``--pattern REGEX``, each matching line is an event. Named groups refine it:
``(?P<ts>...)`` says where the timestamp is, ``(?P<queue>...)`` and ``(?P<class>...)`` name the
queue (pitch and stereo place) and the job class, a non-empty ``(?P<failed>...)`` makes the line
a failure, ``(?P<exception>...)`` names its exception. Without a ``queue`` group the queue is
still taken from a Resque job in the line (``Job{critical}`` or ``(critical) Class``).

Timestamp shapes recognised anywhere in the line (the leftmost wins on the first timed line,
then that shape is tried first); every fraction (up to nanoseconds) and offset is kept:

=====================  ==========================================  ============================
shape                  example                                     written by
=====================  ==========================================  ============================
ISO 8601 / RFC 3339    ``2026-11-27T11:55:41.123456Z``,            Ruby Logger, Rails, Python
                       ``2026-11-27 11:55:41,123``,                logging, JSON logs
                       ``2026-11-27T11:55:41+01:00``
Ruby ``Time#to_s``     ``2026-11-27 11:55:41 +0000`` / ``… UTC``,  Resque (worker:<id>:started)
                       ``%N``: ``2026-11-27 11:55:41.123456789 +0100``
Resque VVERBOSE        ``[11:55:41 2026-11-27]`` (worker's local)  Resque / resque-py VVERBOSE
Resque ``failed_at``   ``2026/11/27 12:01:34 UTC``                 Resque failure entries
Common Log Format      ``[27/Nov/2026:11:55:41 +0000]``            nginx, Apache
syslog                 ``Nov 27 11:55:41`` (year: the file's mtime) syslog, journald exports
Unix epoch             ``1795780680.619`` or ``1795780680619`` (ms) at the start of a line only
=====================  ==========================================  ============================

A timestamp without an offset is read as UTC (only the spacing of events matters to the sound).
An event's ``t`` is the line's time exactly; its ``span`` is the timestamp's resolution (1 s for
``11:55:41``), over which the renderer spreads it, so a busy whole-second log is a texture, not
a pulse per second. A matching line without a timestamp takes the previous line's (continuation
lines); timestamps that go backwards are held at the latest seen, so interleaved logs still play
in order. Input that yields no event is an error saying why (issue 18 / issue 15 item 8).
"""
from __future__ import annotations

import calendar
import logging
import os
import re
import time
from dataclasses import dataclass
from itertools import chain
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
    ("resque_vverbose", re.compile(r"\[(?P<h>\d{2}):(?P<mi>\d{2}):(?P<s>\d{2}) "
                                   r"(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})\]")),
    ("resque_failure_time", re.compile(r"(?P<y>\d{4})/(?P<mo>\d{2})/(?P<d>\d{2}) (?P<h>\d{2}):(?P<mi>\d{2}):"
                                       r"(?P<s>\d{2})" + _FRACTION + r"\s?" + _OFFSET)),
    ("common_log", re.compile(r"(?P<d>\d{2})/(?P<mon>[A-Za-z]{3})/(?P<y>\d{4}):(?P<h>\d{2}):(?P<mi>\d{2}):"
                              r"(?P<s>\d{2})" + _FRACTION + r"\s?" + _OFFSET)),
    ("syslog", re.compile(r"\b(?P<mon>[A-Z][a-z]{2}) {1,2}(?P<d>\d{1,2}) (?P<h>\d{2}):(?P<mi>\d{2}):"
                          r"(?P<s>\d{2})" + _FRACTION)),
    ("epoch", re.compile(r"^\W{0,2}(?P<epoch>\d{10}(?:\.\d{1,9})?|\d{13})\b")),
]

_JOB = r"\(Job\{(?P<queue>[^}]*)\} \| (?P<class>[^|]*?) \|"          # Ruby's Job#inspect
_PY_JOB = r"\((?P<queue>[^)\s]*)\) (?P<class>[^\s:\"]+(?:::[^\s:\"]+)*)"  # resque-py's Job.__str__


@dataclass(frozen=True)
class LineFormat:
    """One kind of job line in Resque's or resque-py's own logs."""

    name: str
    regex: Pattern[str]
    kind: str


#: Tried in order on each line when no --pattern is given (module docstring's first table).
RESQUE_LINES = (
    LineFormat("ruby", re.compile(r"\bdone: " + _JOB), JOB),
    LineFormat("ruby", re.compile(_JOB + r".*?\) failed: (?:#<)?(?P<exception>\w+(?:::\w+)*)"), FAILURE),
    LineFormat("resque-py", re.compile(r"\bdone: " + _PY_JOB), JOB),
    LineFormat("resque-py", re.compile(r"\bfailed: " + _PY_JOB + r": (?P<exception>[\w.]+(?:::[\w.]+)*):"), FAILURE),
)

_JOB_IN_LINE = (re.compile(_JOB), re.compile(r"\b(?:done|got|failed|skipped): " + _PY_JOB))


def _offset_seconds(tz: Optional[str]) -> int:
    if not tz or tz in ("Z", "UTC", "GMT"):
        return 0
    digits = tz[1:].replace(":", "")
    seconds = int(digits[:2]) * 3600 + int(digits[2:]) * 60
    return -seconds if tz[0] == "-" else seconds


def _from_match(m: "re.Match[str]", default_year: int) -> Tuple[float, float]:
    """(Unix time, resolution in seconds) of one timestamp match, fraction and offset kept."""
    g = m.groupdict()
    if g.get("epoch"):
        text = g["epoch"]
        if "." not in text and len(text) == 13:
            return int(text) / 1000.0, 0.001
        whole, _, frac = text.partition(".")
        return int(whole) + (int(frac) / 10 ** len(frac) if frac else 0.0), 10.0 ** -len(frac) if frac else 1.0
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


@dataclass
class _Tally:
    """What reading a file found, to say why it gave no events."""

    lines: int = 0
    matched: int = 0
    untimed: int = 0
    events: int = 0


def read_log(path: str, pattern: Optional[str] = None) -> Iterator[Event]:
    """Events of ``path``: its Resque job lines, or the lines ``pattern`` matches (module docstring).

    Reads up to the first event before returning, so that a file that gives none is refused
    here, before any output is opened. Raises ValueError for a pattern that does not compile or
    a file without events, saying what to change.
    """
    regex = None
    if pattern:
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"--pattern {pattern!r} is not a valid regular expression ({exc}); "
                             "e.g. --pattern 'Processed|(?P<failed>Failed)'") from None
    try:
        year = time.gmtime(os.path.getmtime(path)).tm_year
    except OSError:
        year = None
    tally = _Tally()
    events = _events(path, regex, TimestampParser(year), tally)
    first = next(events, None)
    if first is None:
        raise ValueError(_no_events(path, pattern, tally))
    return chain([first], events)


def _no_events(path: str, pattern: Optional[str], tally: _Tally) -> str:
    if tally.matched and tally.untimed == tally.matched:
        return (f"{path}: {tally.matched} job line(s) but none has a timestamp, so there is nothing "
                "to play; Resque's VERBOSE=1 lines carry no time: run the workers with VVERBOSE=1, "
                "or give lines with ISO 8601 times (see resque-py listen --help)")
    if pattern:
        return (f"{path}: none of its {tally.lines} line(s) matches --pattern {pattern!r}; check the "
                "pattern against a line of the file, e.g. --pattern 'done|(?P<failed>failed)'")
    return (f"{path}: none of its {tally.lines} line(s) is a Resque job line (done: (Job{{queue}} | "
            "Class | args), ... failed: ..., or resque-py's done: (queue) Class); workers log them "
            "with VVERBOSE=1 (or LOG_FORMAT=json); for another format give --pattern REGEX")


def _match(line: str, regex: Optional[Pattern[str]]) -> Optional[Tuple[str, dict]]:
    """(kind, named groups) of a job line, or None."""
    if regex is None:
        for fmt in RESQUE_LINES:
            m = fmt.regex.search(line)
            if m:
                return fmt.kind, m.groupdict()
        return None
    m = regex.search(line)
    if not m:
        return None
    groups = m.groupdict()
    if "queue" not in regex.groupindex:
        for sniff in _JOB_IN_LINE:  # the user's regex picks lines; Resque's text still names the queue
            found = sniff.search(line)
            if found:
                groups = {**found.groupdict(), **{k: v for k, v in groups.items() if v}}
                break
    return FAILURE if groups.get("failed") else JOB, groups


def _events(path: str, regex: Optional[Pattern[str]], parser: TimestampParser, tally: _Tally) -> Iterator[Event]:
    last_t: Optional[float] = None
    last_span = 1.0
    previous_failure = None
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            tally.lines += 1
            found = _match(line, regex)
            if found is None:
                continue
            kind, groups = found
            tally.matched += 1
            if kind == FAILURE and regex is None:
                if line == previous_failure:  # Ruby's second copy (Job#fail) of the same failure
                    continue
                previous_failure = line
            stamp = parser.parse(groups["ts"] if groups.get("ts") else line)
            if stamp is not None:
                t, span = stamp
                last_t, last_span = (t, span) if last_t is None or t > last_t else (last_t, span)
            elif last_t is None:
                tally.untimed += 1
                continue
            tally.events += 1
            yield Event(last_t, kind, queue=(groups.get("queue") or "").strip(), n=1, span=last_span,
                        exception=(groups.get("exception") or "").strip(),
                        job_class=(groups.get("class") or "").strip())
    if tally.untimed and tally.events:
        logger.warning("%s: %d matching line(s) before the first timestamp were skipped; see "
                       "resque-py listen --help for the timestamp shapes read", path, tally.untimed)
