"""``--metrics-port``: Prometheus text at ``/metrics`` and readiness at ``/healthz``, served by a
gevent WSGI server in the worker process (a greenlet, not a thread: a scrape never races a job).

The numbers come from :class:`~resque_compat.metrics.recorder.Metrics` at scrape time through one custom
collector (prometheus-client's exposition format and its process_* collector), so jobs update
plain integers and never a prometheus-client object.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, List

from gevent.pywsgi import WSGIServer
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)

if TYPE_CHECKING:
    from resque_compat.metrics.recorder import Metrics


class ResqueCollector:
    """Every resque_* family, read from the Metrics aggregates when Prometheus scrapes."""

    def __init__(self, metrics: "Metrics") -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Any]:
        m = self.metrics
        processed = CounterMetricFamily("resque_jobs_processed", "Jobs finished, failed or not "
                                        "(Resque's stat:processed), by queue", labels=["queue"])
        failed = CounterMetricFamily("resque_jobs_failed", "Jobs that raised, by queue (Resque "
                                     "counts them in its failed stat too)", labels=["queue"])
        duration = HistogramMetricFamily("resque_job_duration_seconds", "Time in perform, hooks "
                                         "included", labels=["queue"])
        pickup = HistogramMetricFamily("resque_job_pickup_latency_seconds", "Enqueue to start, "
                                       "for payloads with an enqueued_at (ActiveJob)", labels=["queue"])
        for queue, stats in m.queues.items():
            processed.add_metric([queue], stats.processed)
            failed.add_metric([queue], stats.failed)
            duration.add_metric([queue], stats.duration.buckets(), stats.duration.sum)
            pickup.add_metric([queue], stats.pickup.buckets(), stats.pickup.sum)
        yield from (processed, failed, duration, pickup)
        length = GaugeMetricFamily("resque_queue_length", "Jobs waiting in the queue (polled "
                                   "every METRICS_INTERVAL)", labels=["queue"])
        for queue, size in m.queue_lengths.items():
            length.add_metric([queue], size)
        yield length
        oldest = GaugeMetricFamily("resque_queue_oldest_job_age_seconds", "Age of the oldest job "
                                   "waiting in the queue: exact from enqueued_at (ActiveJob), else "
                                   "estimated as the time its head was first seen (a lower bound)",
                                   labels=["queue", "method"])
        for queue, (age, method) in m.oldest_ages.items():
            oldest.add_metric([queue, method], age)
        yield oldest
        runner = m.runner
        yield GaugeMetricFamily("resque_workers", "Worker slots (greenlets) in this process",
                                value=len(runner.workers))
        yield GaugeMetricFamily("resque_busy_workers", "Slots running a job now", value=runner.busy_count())
        yield CounterMetricFamily("resque_redis_round_trips", "Reserve/finish script calls",
                                  value=runner.fetcher.round_trips)
        yield CounterMetricFamily("resque_redis_reconnects", "Redis outages this process got "
                                  "over: its reserve trips failed, then Redis answered again",
                                  value=runner.fetcher.reconnects)
        timeouts = CounterMetricFamily("resque_redis_timeouts", "Redis operations that ran out of "
                                       "time: connect, tls (handshake), read (a reply), write",
                                       labels=["what"])
        for name, count in m.redis_counts().items():
            if name.startswith("timeouts."):
                timeouts.add_metric([name[len("timeouts."):]], count)
        yield timeouts
        pools = [GaugeMetricFamily(f"resque_pool_{what}", text, labels=["pool"]) for what, text in (
            ("size", "Most connections the pool opens"),
            ("in_use", "Connections (HTTP: requests) in use now"),
            ("waiting", "Callers waiting for a free connection now"))]
        for pool, usage in m.pools().items():
            for family, key in zip(pools, ("size", "in_use", "waiting")):
                family.add_metric([pool], usage[key])
        yield from pools
        yield GaugeMetricFamily("resque_hub_lag_seconds", "Largest gevent hub lag in the last "
                                "interval (how late a 0.1 s sleep woke up)", value=m.hub_lag)
        if m.heartbeat_age is not None:
            yield GaugeMetricFamily("resque_heartbeat_age_seconds", "Age of this process's "
                                    "heartbeat in Redis, by Redis TIME", value=m.heartbeat_age)
        ready, _ = m.health()
        yield GaugeMetricFamily("resque_ready", "1 when /healthz says ready", value=int(ready))


class MetricsServer:
    """The HTTP endpoint; binds in the constructor so a busy port fails at start-up."""

    def __init__(self, metrics: "Metrics", host: str, port: int) -> None:
        self.metrics = metrics
        self.registry = CollectorRegistry()
        self.registry.register(ResqueCollector(metrics))
        ProcessCollector(registry=self.registry)
        self.server = WSGIServer((host, port), self.app, log=None)
        self.server.init_socket()

    @property
    def port(self) -> int:
        return self.server.server_port

    def start(self) -> None:
        self.server.start()

    def close(self) -> None:
        self.server.stop(timeout=1)

    def app(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            body = generate_latest(self.registry)
            return _respond(start_response, "200 OK", CONTENT_TYPE_LATEST, body)
        if path == "/healthz":
            ready, reason = self.metrics.health()
            status = "200 OK" if ready else "503 Service Unavailable"
            return _respond(start_response, status, "text/plain; charset=utf-8",
                            (reason + "\n").encode("utf-8"))
        return _respond(start_response, "404 Not Found", "text/plain; charset=utf-8",
                        b"not found: try /metrics or /healthz\n")


def _respond(start_response: Callable[..., Any], status: str, content_type: str,
             body: bytes) -> List[bytes]:
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]
