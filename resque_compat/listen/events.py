"""What the listener hears: a small event record, its JSONL form, and the ``--speed`` mapping.

One event per line in ``--record`` / ``--replay`` files, keys in this order, defaults omitted::

    {"t":1795780680.125,"type":"job","queue":"critical","n":3,"span":0.1}
    {"t":1795780680.125,"type":"failure","queue":"critical","class":"Deliver","n":1,"exception":"RuntimeError"}
    {"t":1795780680.125,"type":"depth","queues":{"critical":12,"low":0}}
    {"t":1795780680.125,"type":"busy","n":7}

``t`` is Unix seconds (to the microsecond); ``class`` is the job class when the source knows
it. A ``job`` or ``failure`` event stands for ``n`` occurrences during the ``span`` seconds
before ``t`` (a poll interval, a log timestamp's resolution, a monitoring point's spacing);
the renderer spreads them over that span. ``depth`` carries every queue's length, ``busy``
the number of workers with a job; both are sent only when they change.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from typing import IO, Dict, Iterable, Iterator, Optional

logger = logging.getLogger("resque_compat.listen")

JOB = "job"
FAILURE = "failure"
DEPTH = "depth"
BUSY = "busy"
KINDS = (JOB, FAILURE, DEPTH, BUSY)


@dataclass(frozen=True)
class Event:
    """One thing that happened at Unix time ``t`` (see the module docstring for each kind)."""

    t: float
    kind: str
    queue: str = ""
    n: int = 1
    span: float = 0.0
    exception: str = ""
    queues: Optional[Dict[str, int]] = None
    job_class: str = ""

    @property
    def depth(self) -> int:
        """Total jobs waiting, for a ``depth`` event."""
        return sum(self.queues.values()) if self.queues else 0

    def to_json(self) -> str:
        data: Dict[str, object] = {"t": round(self.t, 6), "type": self.kind}
        if self.kind in (JOB, FAILURE):
            data["queue"] = self.queue
            if self.job_class:
                data["class"] = self.job_class
        if self.kind != DEPTH:
            data["n"] = self.n
        if self.span:
            data["span"] = round(self.span, 6)
        if self.exception:
            data["exception"] = self.exception
        if self.kind == DEPTH:
            data["queues"] = dict(self.queues or {})
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> "Event":
        """Parse one JSONL line; raises ValueError saying what is wrong with it."""
        try:
            data = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        kind = data.get("type")
        if kind not in KINDS:
            raise ValueError(f"'type' must be one of {', '.join(KINDS)} (got {kind!r})")
        try:
            t = float(data["t"])
            queues = data.get("queues")
            if kind == DEPTH:
                if not isinstance(queues, dict):
                    raise ValueError("a depth event needs 'queues': {name: length}")
                queues = {str(k): int(v) for k, v in queues.items()}
            return cls(t=t, kind=kind, queue=str(data.get("queue", "")), n=int(data.get("n", 1)),
                       span=float(data.get("span", 0.0)), exception=str(data.get("exception", "")),
                       queues=queues if kind == DEPTH else None, job_class=str(data.get("class", "")))
        except KeyError:
            raise ValueError("missing 't' (Unix seconds)") from None
        except (TypeError, ValueError) as exc:
            raise ValueError(str(exc)) from None


def write_jsonl(events: Iterable[Event], fh: IO[str]) -> int:
    """Write events one per line and flush each, so a killed recorder loses at most one line."""
    count = 0
    for event in events:
        fh.write(event.to_json() + "\n")
        fh.flush()
        count += 1
    return count


def read_jsonl(fh: IO[str], name: str = "events") -> Iterator[Event]:
    """Events from a ``--record`` file, lazily (a day of traffic need not fit in memory).

    Blank lines are skipped; a bad line is an error naming the file and line, because a
    silently shortened replay sounds like a quiet day.
    """
    for number, line in enumerate(fh, 1):
        if not line.strip():
            continue
        try:
            yield Event.from_json(line)
        except ValueError as exc:
            raise ValueError(f"{name}:{number}: {exc}; each line must be an event as written by "
                             "resque-py listen --record") from None


class TimeMap:
    """``--speed``: event time ``t`` -> ``origin + (t - first) / speed``.

    ``first`` is the first event's time; ``origin`` defaults to it (offline rendering keeps the
    event clock) or is the wall clock at start (live replay). Spans shrink by the same factor.
    """

    def __init__(self, speed: float = 1.0, origin: Optional[float] = None) -> None:
        if not speed > 0:
            raise ValueError(f"--speed must be more than 0, e.g. --speed 10 (got {speed!r})")
        self.speed = float(speed)
        self.origin = origin
        self.first: Optional[float] = None

    def __call__(self, event: Event) -> Event:
        if self.first is None:
            self.first = event.t
            if self.origin is None:
                self.origin = event.t
        assert self.origin is not None  # set by the first event
        t = self.origin + (event.t - self.first) / self.speed
        return replace(event, t=t, span=event.span / self.speed)

    def map_all(self, events: Iterable[Event]) -> Iterator[Event]:
        for event in events:
            yield self(event)
