"""Metrics for StatsD (``--statsd``), Graphite (``--graphite``) and Prometheus (``--metrics-port``),
plus ``/healthz`` (issue 7 item 3). Names are listed in README.rst, "Metrics".

Cost per job: with every sink off the runner makes no :class:`Metrics` and a job pays one
``is not None`` test. With a sink on, :meth:`Metrics.job_ended` updates a few numbers in memory
(counters, a histogram bucket, a bounded sample list); nothing is sent per job. One greenlet
flushes every METRICS_INTERVAL seconds: one pipelined Redis read (queue lengths, a heartbeat,
TIME), then one batch per sink. Prometheus reads the same numbers when it scrapes.

Pickup latency needs the time a job was enqueued, and a Resque payload has none. It is measured
for ActiveJob payloads (``enqueued_at`` in the job data, set by Rails) and for payloads with a
top-level ``enqueued_at`` (epoch seconds or ISO 8601), against this host's clock, so clock skew
between hosts shows up in it. Other jobs are not in the pickup metrics; the queue length gauges
show their backlog instead.

Queue latency (the age of each queue's oldest waiting job) is read at every poll from the queue
heads; :mod:`~resque_compat.metrics.latency` says how, and the error of its estimate.
"""
from __future__ import annotations

import logging
import random
import re
import time
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Tuple

import gevent
import redis

from resque_compat.errors import ConfigurationError
from resque_compat.metrics.latency import OldestJobAge, enqueued_at
from resque_compat.metrics.sinks import CarbonSink, StatsdSink
from resque_compat.store.connection import pool_usage
from resque_compat.store.survey import Survey
from resque_compat.store.timeouts import TIMEOUTS
from resque_compat.wire import codec

if TYPE_CHECKING:
    from resque_compat.runtime.runner import Runner
    from resque_compat.wire.records import Job

log = logging.getLogger("resque_compat.metrics")

#: Histogram bounds in seconds (Prometheus ``le``), from a fast callback to a slow report job.
BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
           300.0)
#: Timer samples kept per queue and flush for StatsD/Graphite; beyond it a uniform sample is
#: kept and StatsD is told the rate (``|@0.25``), so memory stays flat under any job rate.
SAMPLES = 200
#: The hub-lag ticker's period: how late a sleep of this length wakes up is the lag.
HUB_TICK = 0.1
#: Not ready once the heartbeat is older than this many heartbeat intervals (one missed beat
#: is tolerated; Ruby prunes at 5, WIRE §3.6).
HEARTBEAT_STALE = 2.0

_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]")


def name_part(text: str) -> str:
    """One dot-separated component of a StatsD/Graphite name: ``.`` ``:`` ``|`` ``@`` and the
    rest become ``_`` (queue ``mail.high`` -> ``mail_high``)."""
    return _UNSAFE.sub("_", text) or "_"


class Histogram:
    """Counts per :data:`BUCKETS` bound plus sum and count (Prometheus), and this flush's
    samples and maximum (StatsD timers, Graphite mean/max/p95)."""

    __slots__ = ("counts", "sum", "count", "samples", "seen", "window_max", "window_sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0
        self.count = 0
        self.samples: List[float] = []
        self.seen = 0
        self.window_max = 0.0
        self.window_sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(BUCKETS, seconds)] += 1
        self.sum += seconds
        self.count += 1
        self.seen += 1
        self.window_sum += seconds
        if seconds > self.window_max:
            self.window_max = seconds
        if len(self.samples) < SAMPLES:
            self.samples.append(seconds)
        else:  # reservoir sampling: every observation of the window equally likely to be kept
            slot = random.randrange(self.seen)
            if slot < SAMPLES:
                self.samples[slot] = seconds

    def take_window(self) -> Tuple[List[float], int, float, float]:
        """(samples, observations, sum, max) since the last call, and start a new window."""
        window = (self.samples, self.seen, self.window_sum, self.window_max)
        self.samples, self.seen, self.window_sum, self.window_max = [], 0, 0.0, 0.0
        return window

    def buckets(self) -> List[Tuple[str, int]]:
        """Cumulative ``(le, count)`` pairs for Prometheus."""
        out, total = [], 0
        for bound, n in zip(BUCKETS + (float("inf"),), self.counts):
            total += n
            out.append(("+Inf" if bound == float("inf") else repr(bound), total))
        return out


@dataclass
class QueueStats:
    """One queue's numbers in this process since start."""

    processed: int = 0
    failed: int = 0
    duration: Histogram = field(default_factory=Histogram)
    pickup: Histogram = field(default_factory=Histogram)
    sent_processed: int = 0  # what StatsD has been told (its counters take deltas)
    sent_failed: int = 0


class Metrics:
    """Aggregates one worker process's numbers and publishes them (module docstring)."""

    def __init__(self, runner: "Runner") -> None:
        settings = runner.settings
        self.runner = runner
        self.interval = settings.metrics_interval
        self.prefix = ".".join(name_part(p) for p in settings.metrics_prefix.split(".") if p) or "resque"
        self.process_prefix = f"{self.prefix}.{name_part(runner.hostname)}.{runner.pid}"
        self.queues: Dict[str, QueueStats] = {}
        self.queue_lengths: Dict[str, int] = {}
        #: queue -> (age of the oldest waiting job in seconds, "enqueued_at" or "first_seen").
        self.oldest_ages: Dict[str, Tuple[float, str]] = {}
        self._oldest = OldestJobAge()
        self.heartbeat_age: Optional[float] = None
        self.redis_error: Optional[str] = "not polled yet"
        self.redis_down_since: Optional[float] = None  # the first failed poll of this outage
        self.hub_lag = 0.0          # the largest lag seen in the last complete window
        self._lag_window = 0.0
        self.statsd = StatsdSink(settings.statsd) if settings.statsd else None
        self.carbon = CarbonSink(settings.graphite) if settings.graphite else None
        self.http = None
        if settings.metrics_port:
            from resque_compat.metrics.endpoint import MetricsServer

            self.http = MetricsServer(self, settings.metrics_bind, settings.metrics_port)
        self._greenlets: List[gevent.Greenlet] = []
        self._stopped = False

    # -- the per-job hook (hot path) -----------------------------------------------------------
    def job_ended(self, job: "Job", started: float, ended: float, failed: bool) -> None:
        """Count one finished job (called by the worker for every job, failed or not)."""
        stats = self.queues.get(job.queue)
        if stats is None:
            stats = self.queues[job.queue] = QueueStats()
        stats.processed += 1
        if failed:
            stats.failed += 1
        stats.duration.observe(ended - started)
        if job.payload is not None:
            when = enqueued_at(job)
            if when is not None:
                stats.pickup.observe(max(0.0, started - when))

    # -- life cycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self.poll()
        self._greenlets = [gevent.spawn(self._flush_loop), gevent.spawn(self._hub_ticker)]
        if self.http is not None:
            self.http.start()

    def stop(self) -> None:
        """Last flush (the final jobs' counts), then close everything. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        gevent.killall(self._greenlets)
        if self._greenlets:
            self.flush()
        for sink in (self.statsd, self.carbon, self.http):
            if sink is not None:
                sink.close()

    def _flush_loop(self) -> None:
        while True:
            gevent.sleep(self.interval)
            try:
                self.poll()
                self.flush()
            except Exception:  # a metrics bug must never take the worker down
                log.exception("metrics flush failed; trying again in %.1fs", self.interval)

    def _hub_ticker(self) -> None:
        while True:
            start = time.perf_counter()
            gevent.sleep(HUB_TICK)
            lag = time.perf_counter() - start - HUB_TICK
            if lag > self._lag_window:
                self._lag_window = lag

    # -- periodic work -------------------------------------------------------------------------
    def poll(self) -> None:
        """Queue lengths, our heartbeat's age by Redis TIME, and whether Redis answers."""
        self.hub_lag, self._lag_window = self._lag_window, 0.0
        queues = list(self.runner.fetcher.current_queues)
        try:
            sizes, beat, now = self.runner.store.queue_sizes_and_heartbeat(queues, self.runner.ids[0])
        except redis.RedisError as exc:
            self._redis_failed(exc)
            return
        self.redis_error = None
        self.redis_down_since = None
        self.queue_lengths = dict(zip(queues, sizes))
        self._poll_oldest(queues, now)
        when = codec.parse_heartbeat(beat) if beat else None
        self.heartbeat_age = None if when is None else max(0.0, now - when)

    def _poll_oldest(self, queues: List[str], now: float) -> None:
        """The heads of the non-empty queues: one more pipelined read per poll."""
        busy = [q for q in queues if self.queue_lengths.get(q)]
        store = self.runner.store
        try:
            heads = Survey(store.redis, store.keys).heads([store.keys.queue(q) for q in busy])
        except redis.RedisError as exc:
            self._redis_failed(exc)
            return
        self._oldest.forget_others(set(busy))
        ages = {}
        for queue, head in zip(busy, heads):
            age = self._oldest.observe(queue, head, now)
            if age is not None:
                ages[queue] = age
        self.oldest_ages = ages

    def _redis_failed(self, exc: redis.RedisError) -> None:
        self.redis_error = str(exc) or type(exc).__name__
        if self.redis_down_since is None:
            self.redis_down_since = time.time()

    def redis_counts(self) -> Dict[str, int]:
        """Outages ended (``reconnects``) and timeouts by what timed out, since start."""
        out = {"reconnects": self.runner.fetcher.reconnects}
        out.update((f"timeouts.{what}", n) for what, n in TIMEOUTS.items())
        return out

    def flush(self) -> None:
        windows = {q: (s.duration.take_window(), s.pickup.take_window()) for q, s in self.queues.items()}
        if self.statsd is not None:
            self.statsd.send(list(self.statsd_lines(windows)))
        if self.carbon is not None:
            self.carbon.send(list(self.carbon_lines(windows, int(time.time()))))

    def gauges(self) -> Dict[str, float]:
        """Per-process gauges, by their StatsD/Graphite name after the process prefix."""
        runner = self.runner
        out: Dict[str, float] = {
            "workers": len(runner.workers),
            "busy_workers": runner.busy_count(),
            "hub_lag_ms": round(self.hub_lag * 1000, 3),
        }
        if self.heartbeat_age is not None:
            out["heartbeat_age_seconds"] = round(self.heartbeat_age, 3)
        for name, count in self.redis_counts().items():
            out[f"redis.{name}"] = count
        for pool, usage in self.pools().items():
            out[f"pool.{pool}.in_use"] = usage["in_use"]
            out[f"pool.{pool}.waiting"] = usage["waiting"]
        return out

    def pools(self) -> Dict[str, Dict[str, int]]:
        """size / in_use / waiting of the Redis, MySQL (if configured) and HTTP pools."""
        from resque_compat import db, http

        out = {"redis": pool_usage(self.runner.store.redis)}
        mysql = db.stats()
        if mysql.get("size"):
            out["mysql"] = {"size": mysql["size"], "in_use": mysql["in_use"], "waiting": mysql["waiting"]}
        web = http.stats()
        out["http"] = {"size": web["pool_size"], "in_use": web["in_flight"], "waiting": web.get("waiting", 0)}
        return out

    def statsd_lines(self, windows: Dict[str, Any]) -> Iterator[str]:
        """Counters and timers per queue (summed across processes by StatsD), queue lengths,
        and this process's gauges under ``<prefix>.<host>.<pid>``."""
        for queue, stats in self.queues.items():
            base = f"{self.prefix}.queue.{name_part(queue)}"
            if stats.processed > stats.sent_processed:
                yield f"{base}.processed:{stats.processed - stats.sent_processed}|c"
                stats.sent_processed = stats.processed
            if stats.failed > stats.sent_failed:
                yield f"{base}.failed:{stats.failed - stats.sent_failed}|c"
                stats.sent_failed = stats.failed
            for timer, (samples, seen, _, _) in zip(("duration", "pickup"), windows[queue]):
                rate = "" if seen <= len(samples) else f"|@{len(samples) / seen:.6g}"
                for seconds in samples:
                    yield f"{base}.{timer}:{seconds * 1000:.3f}|ms{rate}"
        for queue, length in self.queue_lengths.items():
            yield f"{self.prefix}.queue.{name_part(queue)}.length:{length}|g"
        for queue, (age, _) in self.oldest_ages.items():
            yield f"{self.prefix}.queue.{name_part(queue)}.oldest_job_age_seconds:{age:.3f}|g"
        for name, value in self.gauges().items():
            yield f"{self.process_prefix}.{name}:{value:g}|g"

    def carbon_lines(self, windows: Dict[str, Any], now: int) -> Iterator[str]:
        """Everything under ``<prefix>.<host>.<pid>`` (Carbon keeps the last value sent for a
        path and time, so processes must not share a path); counters are totals since start."""
        for queue, stats in self.queues.items():
            base = f"{self.process_prefix}.queue.{name_part(queue)}"
            yield f"{base}.processed {stats.processed} {now}"
            yield f"{base}.failed {stats.failed} {now}"
            for timer, (samples, seen, total, top) in zip(("duration", "pickup"), windows[queue]):
                if not seen:
                    continue
                ordered = sorted(samples)
                p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
                yield f"{base}.{timer}_ms.mean {total / seen * 1000:.3f} {now}"
                yield f"{base}.{timer}_ms.p95 {p95 * 1000:.3f} {now}"
                yield f"{base}.{timer}_ms.max {top * 1000:.3f} {now}"
        for queue, length in self.queue_lengths.items():
            yield f"{self.prefix}.queue.{name_part(queue)}.length {length} {now}"
        for queue, (age, _) in self.oldest_ages.items():
            yield f"{self.prefix}.queue.{name_part(queue)}.oldest_job_age_seconds {age:.3f} {now}"
        for name, value in self.gauges().items():
            yield f"{self.process_prefix}.{name} {value:g} {now}"

    # -- readiness -----------------------------------------------------------------------------
    def health(self) -> Tuple[bool, str]:
        """(ready, reason) for /healthz."""
        runner = self.runner
        if runner.shutdown_requested.is_set():
            return False, "shutting down (finishing in-flight jobs, taking no new ones)"
        down = self._redis_down()
        if down:
            return False, down
        limit = HEARTBEAT_STALE * runner.settings.heartbeat_interval
        if self.heartbeat_age is None:
            return False, "no heartbeat in Redis for this worker"
        if self.heartbeat_age > limit:
            return False, (f"heartbeat too old: {self.heartbeat_age:.0f}s (limit {limit:g}s); Ruby "
                           f"workers prune ours after {runner.settings.effective_prune_interval:g}s")
        return True, "ready"

    def _redis_down(self) -> str:
        """Why Redis counts as unreachable, from this poller's view or the fetcher's (which
        notices first while jobs are taken); '' when both last reached it."""
        fetcher = self.runner.fetcher
        since = [t for t in (self.redis_down_since, fetcher.down_since) if t is not None]
        error = fetcher.down_error if fetcher.down_since is not None else self.redis_error
        if not since:
            return f"Redis unreachable: {error}" if self.redis_error is not None else ""
        first = min(since)
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(first))
        return f"Redis unreachable since {when} ({time.time() - first:.0f}s): {error}"


def for_runner(runner: "Runner") -> Metrics:
    """The runner's metrics (``settings.metrics_enabled``); binds the metrics port now."""
    settings = runner.settings
    try:
        return Metrics(runner)
    except OSError as exc:
        raise ConfigurationError(f"cannot serve metrics on {settings.metrics_bind}:{settings.metrics_port} "
                                 f"({exc}); choose a free --metrics-port") from None
