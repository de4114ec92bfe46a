"""Your monitoring as a source (issue 18 item 5): Prometheus range queries and Graphite's render
API, replayed (``--since``) or followed live (``--follow``).

Each series is one voice: its per-second value is a job rate, so it becomes job events whose
density is the rate (``n`` jobs over the time each point stands for, fractions carried to the
next point), and a
series about failures becomes failure events (the low tone). The voice's name is:

* Prometheus: the series' ``queue`` label, else its labels (``{instance="a:9"}``); a series is
  about failures when its query or metric name contains ``fail``
  (``rate(resque_jobs_failed_total[1m])``);
* Graphite: the nodes of the series' path that tell the job series apart
  (``stats.resque.critical.processed``, ``stats.resque.low.processed`` and
  ``stats.resque.low.failed`` -> ``critical``, ``low``, ``low``); a series is about failures
  when its path contains ``fail``. Values are taken as
  per second: wrap counters in ``perSecond(...)`` or use statsd's ``stats.*`` rates.

Only the standard library talks HTTP here: one GET per query (and per ``step`` when following).
"""
from __future__ import annotations

import heapq
import json
import logging
import math
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Iterator, List, Optional, Sequence, Tuple

from resque_compat.listen.events import FAILURE, JOB, Event

logger = logging.getLogger("resque_compat.listen")

#: Seconds an HTTP request to the monitoring server may take before the run reports it.
HTTP_TIMEOUT = 10.0
#: Most points a replay asks for per series (Prometheus refuses more than 11,000).
MAX_POINTS = 2000


@dataclass
class Series:
    """One time series: a voice, whether it counts failures, and (Unix time, value/s) points."""

    name: str
    failed: bool
    points: List[Tuple[float, float]] = field(default_factory=list)
    #: Seconds per point when the server says (Graphite, counting its empty points), else 0.
    every: float = 0.0


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``1h``, ``2d`` -> seconds; ValueError with an example."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text or "")
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"a duration is a number of seconds or 30s, 15m, 1h, 2d (got {text!r})")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def _get_json(url: str, what: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT) as reply:
            return json.loads(reply.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        body = exc.read().decode("utf-8", "replace")
        try:
            detail = json.loads(body).get("error") or body
        except ValueError:
            detail = body
        raise ValueError(f"{what} answered HTTP {exc.code}: {detail.strip()[:300]}; check the "
                         "query/target and the URL") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise OSError(f"cannot reach {what} at {url.split('?')[0]} ({reason}); is the URL right "
                      "and the server up?") from None
    except ValueError:
        raise ValueError(f"{what} at {url.split('?')[0]} did not answer JSON; give the server's "
                         "base URL, e.g. http://127.0.0.1:9090") from None


def _series_name(labels: dict) -> str:
    if labels.get("queue"):
        return str(labels["queue"])
    rest = {k: v for k, v in labels.items() if k != "__name__"}
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(rest.items())) + "}" if rest else labels.get("__name__", "")


def prometheus_range(url: str, queries: Sequence[str], start: float, end: float, step: float) -> List[Series]:
    """Every series of ``queries`` between ``start`` and ``end`` (``/api/v1/query_range``)."""
    out: List[Series] = []
    for query in queries:
        params = urllib.parse.urlencode({"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}",
                                         "step": f"{step:g}"})
        reply = _get_json(f"{url.rstrip('/')}/api/v1/query_range?{params}", "Prometheus")
        if reply.get("status") != "success":
            raise ValueError(f"Prometheus refused {query!r}: {reply.get('error', reply)}")
        data = reply.get("data") or {}
        if data.get("resultType") != "matrix":
            raise ValueError(f"{query!r} gives a {data.get('resultType')}, not series; "
                             "e.g. --query 'rate(resque_jobs_processed_total[1m])'")
        for item in data.get("result") or []:
            labels = item.get("metric") or {}
            failed = "fail" in query.lower() or "fail" in str(labels.get("__name__", "")).lower()
            points = [(float(t), float(v)) for t, v in item.get("values") or []
                      if math.isfinite(float(v))]
            out.append(Series(_series_name(labels), failed, points))
    return out


def graphite_render(url: str, targets: Sequence[str], start: float, end: float) -> List[Series]:
    """Every series of ``targets`` between ``start`` and ``end`` (``/render?format=json``)."""
    until = int(math.ceil(end))
    params = [("target", t) for t in targets] + [
        ("from", str(until - int(math.ceil(end - start)))), ("until", str(until)), ("format", "json")]
    reply = _get_json(f"{url.rstrip('/')}/render?{urllib.parse.urlencode(params)}", "Graphite")
    if not isinstance(reply, list):
        raise ValueError(f"Graphite's render API should answer a JSON list of series, not {type(reply).__name__}")
    paths = [str(item.get("target", "")) for item in reply]
    failed = ["fail" in path.lower() for path in paths]
    out = []
    for item, name, fail in zip(reply, voice_names(paths, failed), failed):
        datapoints = item.get("datapoints") or []
        points = [(float(t), float(v)) for v, t in datapoints if v is not None]
        out.append(Series(name, fail, points, spacing([(float(t), 0.0) for _, t in datapoints], 0.0)))
    return out


def voice_names(paths: List[str], failed: List[bool]) -> List[str]:
    """Each path reduced to the dot-separated nodes that tell the job series apart
    (``stats.resque.critical.processed`` / ``stats.resque.low.failed`` -> ``critical`` /
    ``low``), so a queue's failures carry its name; the whole path when nothing does."""
    split = [p.split(".") for p in paths]
    jobs = [s for s, fail in zip(split, failed) if not fail]
    if len(jobs) < 2 or len({len(s) for s in split}) != 1:
        return paths
    keep = [i for i in range(len(split[0])) if len({s[i] for s in jobs}) > 1]
    return [".".join(s[i] for i in keep) or p for s, p in zip(split, paths)] if keep else paths


def spacing(points: Sequence[Tuple[float, float]], default: float) -> float:
    """Seconds each point of a series stands for: the median gap between its points (Graphite
    answers at its own retention, whatever --step says), else ``default``."""
    gaps = sorted(b[0] - a[0] for a, b in zip(points, points[1:]) if b[0] > a[0])
    return gaps[len(gaps) // 2] if gaps else default


def series_events(series: Sequence[Series], step: float) -> Iterator[Event]:
    """Job / failure events of every series, merged in time order (module docstring)."""
    def one(s: Series) -> Iterator[Event]:
        carry = 0.0
        points = sorted(s.points)
        every = s.every or spacing(points, step)
        for t, rate in points:
            expected = max(0.0, rate) * every + carry
            n = int(expected)
            carry = expected - n
            if n:
                yield Event(t, FAILURE if s.failed else JOB, queue=s.name, n=n, span=every)
    return heapq.merge(*(one(s) for s in series), key=lambda e: e.t)


class MetricsSource:
    """A Prometheus or Graphite server read as a source: ``replay`` for ``--since``, ``poll``
    for ``--follow`` (the :class:`~.poller.Poller` interface the live loop drives)."""

    #: What a failed poll raises; the live loop logs it and retries.
    errors: Tuple[type, ...] = (OSError, ValueError)

    def __init__(self, kind: str, url: str, exprs: Sequence[str], step: float) -> None:
        if kind not in ("prometheus", "graphite"):
            raise ValueError(f"unknown monitoring source {kind!r}")
        self.kind, self.url, self.exprs, self.step = kind, url, list(exprs), step
        self._seen: dict = {}
        self._carry: dict = {}

    def fetch(self, start: float, end: float) -> List[Series]:
        if self.kind == "prometheus":
            return prometheus_range(self.url, self.exprs, start, end, self.step)
        return graphite_render(self.url, self.exprs, start, end)

    def replay(self, since: float, now: Optional[float] = None) -> Iterator[Event]:
        """Events of the last ``since`` seconds; ValueError when there is nothing to play."""
        end = time.time() if now is None else now
        series = self.fetch(end - since, end)
        if not any(s.points for s in series):
            raise ValueError(f"{self.kind} returned no data for {', '.join(map(repr, self.exprs))} "
                             f"in the last {since:g} s; check the query in its own UI, or widen --since")
        return series_events(series, self.step)

    def poll(self, now: float) -> List[Event]:
        """Events for points that appeared since the previous poll, timed now (as the Redis
        poller times what it reads), spread over the steps they cover. The query is aligned
        to whole steps so that successive polls see the same point times."""
        end = math.floor(now / self.step) * self.step
        events = []
        for s in self.fetch(end - 4 * self.step, end):
            key = (s.name, s.failed)
            last = self._seen.get(key)
            points = sorted(s.points)
            every = s.every or spacing(points, self.step)
            fresh = [(t, v) for t, v in points if last is None or t > last]
            if not fresh:
                continue
            self._seen[key] = fresh[-1][0]
            if last is None:
                fresh = fresh[-1:]  # the first poll plays only the newest point, not 4 steps at once
            expected = sum(max(0.0, v) for _, v in fresh) * every + self._carry.get(key, 0.0)
            n = int(expected)
            self._carry[key] = expected - n
            if n:
                events.append(Event(now, FAILURE if s.failed else JOB, queue=s.name, n=n,
                                    span=every * len(fresh)))
        return events
