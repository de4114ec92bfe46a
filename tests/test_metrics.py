"""Metrics (issue 7 item 3): a real worker process with --statsd, --graphite and --metrics-port,
read by listeners in the test: UDP for StatsD, TCP for Carbon, HTTP for /metrics and /healthz.
"""
from __future__ import annotations

import json
import re
import signal
import socket
import time
import urllib.error
import urllib.request
from typing import Dict, List, Optional, Tuple

import gevent
import pytest
from prometheus_client.parser import text_string_to_metric_families

from resque_compat import activejob
from resque_compat.client import Resque
from resque_compat.metrics.recorder import (
    BUCKETS,
    SAMPLES,
    Histogram,
    enqueued_at,
    name_part,
)
from resque_compat.metrics.sinks import STATSD_PACKET, CarbonSink, packets
from resque_compat.wire.records import parse_job
from tests.conftest import MYSQL_URL, REDIS_URL, ROOT
from tests.redis_servers import free_port, redis_servers  # noqa: F401  (fixture)
from tests.test_worker import wait_for

AJ_JOBS = f"{ROOT}/tests/aj_jobs.py"  # AjJob, and (through tests.jobs) OkJob, FailJob, WaitJob


# -- listeners -------------------------------------------------------------------------------

class StatsdListener:
    """UDP on 127.0.0.1: every datagram kept, split into StatsD lines."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.datagrams: List[bytes] = []
        self.reader = gevent.spawn(self._read)

    def _read(self) -> None:
        while True:
            self.datagrams.append(self.sock.recv(65535))

    def lines(self) -> List[str]:
        return [line for d in self.datagrams for line in d.decode().split("\n")]

    def counter(self, name: str) -> int:
        """Sum of every ``name:N|c`` (StatsD adds counter deltas up)."""
        return sum(int(line.split(":")[1].split("|")[0]) for line in self.lines()
                   if line.startswith(name + ":") and line.endswith("|c"))

    def timings(self, name: str) -> List[float]:
        return [float(line.split(":")[1].split("|")[0]) for line in self.lines()
                if line.startswith(name + ":") and "|ms" in line]

    def gauge(self, name: str) -> Optional[float]:
        found = [line for line in self.lines() if line.startswith(name + ":") and line.endswith("|g")]
        return float(found[-1].split(":")[1].split("|")[0]) if found else None

    def close(self) -> None:
        self.reader.kill()
        self.sock.close()


class CarbonListener:
    """TCP on 127.0.0.1 (or a given port): Carbon plaintext lines from every connection."""

    def __init__(self, port: int = 0) -> None:
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", port))
        self.server.listen(8)
        self.port = self.server.getsockname()[1]
        self.received: List[Tuple[str, float, int]] = []
        self.connections = 0
        self.greenlets = [gevent.spawn(self._accept)]

    def _accept(self) -> None:
        while True:
            conn, _ = self.server.accept()
            self.connections += 1
            self.greenlets.append(gevent.spawn(self._read, conn))

    def _read(self, conn: socket.socket) -> None:
        buf = b""
        while True:
            data = conn.recv(65536)
            if not data:
                return
            buf += data
            *complete, buf = buf.split(b"\n")
            for line in complete:
                path, value, ts = line.decode().split(" ")
                self.received.append((path, float(value), int(ts)))

    def last(self, path: str) -> Optional[float]:
        values = [v for p, v, _ in self.received if p == path]
        return values[-1] if values else None

    def close(self) -> None:
        gevent.killall(self.greenlets)
        self.server.close()


@pytest.fixture
def statsd():
    listener = StatsdListener()
    yield listener
    listener.close()


@pytest.fixture
def carbon():
    listener = CarbonListener()
    yield listener
    listener.close()


def http_get(port: int, path: str) -> Tuple[Optional[int], str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (OSError, urllib.error.URLError):
        return None, ""


def scrape(port: int) -> Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` from /metrics, parsed by prometheus-client."""
    status, text = http_get(port, "/metrics")
    assert status == 200, text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def metric(port: int, name: str, **labels: str) -> Optional[float]:
    return scrape(port).get((name, tuple(sorted(labels.items()))))


# -- a real worker, every sink at once --------------------------------------------------------

def test_statsd_graphite_and_prometheus_report_a_real_worker(r, start_worker, statsd, carbon):
    resque = Resque.from_url(REDIS_URL)
    resque.enqueue_to("critical", "WaitJob", "t1")  # holds the only slot while we look
    for n in range(3):
        resque.enqueue_to("critical", "OkJob", n)
    resque.enqueue_to("critical", "FailJob", "x")
    resque.enqueue_to("critical", "CpuJob", 0.5)  # holds the hub: the lag must show it
    data = activejob.job_data("AjJob", (7,), {}, queue="critical")
    data["enqueued_at"] = time.strftime("%Y-%m-%dT%H:%M:%S.123456789Z", time.gmtime(time.time() - 3))
    resque.enqueue_to("critical", activejob.JOB_WRAPPER, data)  # Rails 7.1+'s nanosecond format

    port = free_port()
    worker = start_worker("QUEUE=critical", "FIBERS=1", "METRICS_INTERVAL=0.2", "DB_POOL=3",
                          require=AJ_JOBS, env={"DATABASE_URL": MYSQL_URL},
                          extra_args=["--statsd", f"127.0.0.1:{statsd.port}",
                                      "--graphite", f"127.0.0.1:{carbon.port}",
                                      "--metrics-port", str(port), "--metrics-bind", "127.0.0.1",
                                      "--metrics-prefix", "app.resque"])
    [wid] = worker.wait_registered(r)
    host = name_part(wid.split(":")[0])
    proc = f"app.resque.{host}.{worker.pid}"
    assert r.blpop(["test:started"], timeout=10) == ("test:started", "t1")
    wait_started = time.time()

    # While WaitJob runs: one busy slot of one, five jobs behind it, ready.
    wait_for(lambda: metric(port, "resque_queue_length", queue="critical") == 6, what="queue length 6")
    sample = scrape(port)
    assert sample[("resque_busy_workers", ())] == 1 and sample[("resque_workers", ())] == 1
    assert sample[("resque_pool_size", (("pool", "redis"),))] == 5  # REDIS_POOL default min(1,16)+4
    assert sample[("resque_pool_size", (("pool", "mysql"),))] == 3
    assert sample[("resque_pool_size", (("pool", "http"),))] == 1    # per host: FIBERS
    assert sample[("resque_pool_in_use", (("pool", "mysql"),))] == 0
    assert sample[("resque_ready", ())] == 1
    assert 0 <= sample[("resque_heartbeat_age_seconds", ())] < 5
    assert sample[("resque_hub_lag_seconds", ())] < 1
    assert "process_resident_memory_bytes" in {name for name, _ in sample}
    assert http_get(port, "/healthz") == (200, "ready\n")
    # The head (OkJob 0, a plain payload) has waited at least since the worker first saw it.
    first = metric(port, "resque_queue_oldest_job_age_seconds", queue="critical", method="first_seen")
    assert first is not None and first >= 0
    wait_for(lambda: (metric(port, "resque_queue_oldest_job_age_seconds", queue="critical",
                             method="first_seen") or 0) > first, what="the head's age to grow")
    wait_for(lambda: statsd.gauge("app.resque.queue.critical.length") == 6, what="StatsD queue length")
    wait_for(lambda: statsd.gauge("app.resque.queue.critical.oldest_job_age_seconds") is not None,
             what="StatsD oldest job age")
    wait_for(lambda: carbon.last("app.resque.queue.critical.oldest_job_age_seconds") is not None,
             what="Carbon oldest job age")
    wait_for(lambda: statsd.gauge(f"{proc}.busy_workers") == 1, what="StatsD busy gauge")
    wait_for(lambda: carbon.last(f"{proc}.busy_workers") == 1, what="Carbon busy gauge")
    assert carbon.last("app.resque.queue.critical.length") == 6

    started = time.time()
    held = started - wait_started  # WaitJob ran at least this long
    r.rpush("test:release:t1", "go")
    wait_for(lambda: metric(port, "resque_jobs_processed_total", queue="critical") == 7, what="7 processed")
    sample = scrape(port)
    assert sample[("resque_jobs_failed_total", (("queue", "critical"),))] == 1
    assert sample[("resque_job_duration_seconds_count", (("queue", "critical"),))] == 7
    assert sample[("resque_job_duration_seconds_bucket", (("le", "+Inf"), ("queue", "critical")))] == 7
    assert sample[("resque_job_duration_seconds_bucket", (("le", "1.0"), ("queue", "critical")))] >= 5
    # WaitJob ran for as long as the test took to release it, and CpuJob for 0.5 s.
    assert sample[("resque_job_duration_seconds_sum", (("queue", "critical"),))] >= 0.5 + held
    assert sample[("resque_job_pickup_latency_seconds_count", (("queue", "critical"),))] == 1
    assert 3.0 <= sample[("resque_job_pickup_latency_seconds_sum", (("queue", "critical"),))] < 3.0 + 30
    assert sample[("resque_redis_round_trips_total", ())] >= 7

    wait_for(lambda: statsd.counter("app.resque.queue.critical.processed") == 7, what="StatsD processed")
    assert statsd.counter("app.resque.queue.critical.failed") == 1
    durations = statsd.timings("app.resque.queue.critical.duration")
    assert len(durations) == 7 and max(durations) >= 500  # ms; CpuJob
    assert sorted(durations)[-2] >= min(500, held * 1000)   # WaitJob
    [pickup] = statsd.timings("app.resque.queue.critical.pickup")
    assert pickup >= 3000
    assert all(len(d) <= STATSD_PACKET for d in statsd.datagrams)
    wait_for(lambda: carbon.last(f"{proc}.queue.critical.processed") == 7, what="Carbon processed")
    assert carbon.last(f"{proc}.queue.critical.failed") == 1
    assert carbon.last(f"{proc}.queue.critical.pickup_ms.max") >= 3000
    assert max(v for p, v, _ in carbon.received if p == f"{proc}.queue.critical.duration_ms.max") >= 500
    # CpuJob kept the hub for 0.5 s: one interval's lag gauge says so, in both sinks.
    assert max(v for p, v, _ in carbon.received if p == f"{proc}.hub_lag_ms") >= 400
    assert max(float(line.split(":")[1].split("|")[0]) for line in statsd.lines()
               if line.startswith(f"{proc}.hub_lag_ms:")) >= 400
    assert carbon.connections == 1  # one connection, batched lines
    assert all(abs(ts - time.time()) < 60 for _, _, ts in carbon.received)  # epoch seconds, now

    # QUIT with a job running: not ready (shutting down) until the process is gone.
    r.delete("test:started")  # CpuJob said "cpu" there too
    resque.enqueue_to("critical", "WaitJob", "t2")
    assert r.blpop(["test:started"], timeout=10) == ("test:started", "t2")
    worker.signal(signal.SIGQUIT)
    status, body = wait_for(lambda: (lambda s: s if s[0] == 503 else None)(http_get(port, "/healthz")),
                            what="/healthz to say shutting down")
    assert body.startswith("shutting down")
    r.rpush("test:release:t2", "go")
    assert worker.wait() == 0
    # The last flush happened at exit: the eighth job is counted everywhere.
    assert statsd.counter("app.resque.queue.critical.processed") == 8
    assert carbon.last(f"{proc}.queue.critical.processed") == 8
    assert http_get(port, "/healthz")[0] is None  # the port is closed with the process


def test_healthz_says_why_it_is_not_ready(r, redis_servers, start_worker):
    server = redis_servers("private")
    server.wait_ready(server.client)
    url = f"redis://127.0.0.1:{server.port}/0"
    port = free_port()
    worker = start_worker("QUEUE=critical", "METRICS_INTERVAL=0.1", "RESQUE_HEARTBEAT_INTERVAL=30",
                          env={"REDIS_URL": url, "TEST_CONTROL_REDIS_URL": REDIS_URL},
                          extra_args=["--metrics-port", str(port), "--metrics-bind", "127.0.0.1"])
    private = server.client()
    [wid] = wait_for(lambda: sorted(private.smembers("resque:workers")), what="registration")
    assert wait_for(lambda: http_get(port, "/healthz")[0] == 200, what="ready")
    assert http_get(port, "/nope")[0] == 404

    # A heartbeat Ruby's pruner would find 100 s old: not ready, and the body says why.
    old = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(float(private.time()[0]) - 100))
    private.hset("resque:workers:heartbeat", wid, old)
    status, body = wait_for(lambda: (lambda s: s if s[0] == 503 else None)(http_get(port, "/healthz")),
                            what="stale heartbeat")
    assert body.startswith("heartbeat too old: 10") and "limit 60s" in body
    assert metric(port, "resque_ready") == 0 and metric(port, "resque_heartbeat_age_seconds") >= 99

    server.kill()
    status, body = wait_for(lambda: (lambda s: s if "Redis" in s[1] else None)(http_get(port, "/healthz")),
                            what="Redis unreachable")
    assert status == 503 and re.match(r"Redis unreachable since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ "
                                      r"\(\d+s\): .*refused", body), body
    assert metric(port, "resque_redis_reconnects_total") == 0

    # Back on the same port (empty): ready again once the worker re-registered and beat.
    again = redis_servers("private-again", port=server.port)
    again.wait_ready(again.client)
    assert wait_for(lambda: http_get(port, "/healthz") == (200, "ready\n"), what="ready again")
    assert wid in again.client().smembers("resque:workers")
    assert metric(port, "resque_redis_reconnects_total") == 1
    assert metric(port, "resque_redis_timeouts_total", what="connect") == 0
    worker.stop()


def test_a_busy_metrics_port_fails_start_up_with_exit_2(r, start_worker):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    worker = start_worker("QUEUE=critical", extra_args=[
        "--metrics-port", str(taken.getsockname()[1]), "--metrics-bind", "127.0.0.1"])
    assert worker.wait() == 2
    assert "choose a free --metrics-port" in worker.output
    taken.close()


# -- units: the pieces whose output the listeners above only sample ----------------------------

def test_histogram_buckets_and_reservoir_stay_bounded():
    h = Histogram()
    for n in range(10 * SAMPLES):
        h.observe(0.002 if n % 2 else 100.0)
    buckets = dict(h.buckets())
    assert buckets["0.001"] == 0 and buckets["0.005"] == 5 * SAMPLES
    assert buckets["60.0"] == 5 * SAMPLES and buckets["300.0"] == buckets["+Inf"] == 10 * SAMPLES
    assert len(h.buckets()) == len(BUCKETS) + 1 and h.count == 10 * SAMPLES
    samples, seen, total, top = h.take_window()
    assert len(samples) == SAMPLES and seen == 10 * SAMPLES and top == 100.0
    assert abs(total - 5 * SAMPLES * 100.002) < 1e-6
    assert 0.3 < sum(1 for s in samples if s == 100.0) / SAMPLES < 0.7  # a uniform sample
    assert h.take_window() == ([], 0, 0.0, 0.0) and h.count == 10 * SAMPLES


def test_statsd_packets_respect_the_mtu_and_keep_every_line():
    lines = [f"resque.queue.q{n}.duration:{n}.123|ms" for n in range(500)]
    datagrams = packets(lines)
    assert all(len(d) <= STATSD_PACKET for d in datagrams) and len(datagrams) > 1
    assert b"\n".join(datagrams).decode().split("\n") == lines


def test_enqueued_at_comes_from_activejob_or_a_top_level_field_only():
    aj = {"class": activejob.JOB_WRAPPER, "args": [{"job_class": "X", "enqueued_at": "2026-11-27T11:55:41.5Z"}]}
    assert enqueued_at(parse_job("q", json.dumps(aj))) == 1795780541.5
    assert enqueued_at(parse_job("q", '{"class":"A","args":[],"enqueued_at":1795780541.25}')) == 1795780541.25
    assert enqueued_at(parse_job("q", '{"class":"A","args":[{"enqueued_at":1}]}')) is None
    assert enqueued_at(parse_job("q", '{"class":"A","args":[],"enqueued_at":"yesterday"}')) is None
    assert name_part("mail.high:x|y@z") == "mail_high_x_y_z"


def test_carbon_keeps_lines_while_graphite_is_down_and_sends_them_on_reconnect():
    port = free_port()
    sink = CarbonSink(f"127.0.0.1:{port}")
    sink.send(["a.b 1 100"])  # nothing listens: kept
    assert list(sink.buffer) == ["a.b 1 100"]
    listener = CarbonListener(port)
    try:
        sink.send(["a.b 2 105"])  # still inside the 1 s back-off: kept, not tried
        assert len(sink.buffer) == 2 and listener.connections == 0
        time.sleep(1.05)  # the back-off itself is what is under test
        sink.send(["a.b 3 110"])
        wait_for(lambda: len(listener.received) == 3, what="the buffered lines")
        assert listener.received == [("a.b", 1.0, 100), ("a.b", 2.0, 105), ("a.b", 3.0, 110)]
        assert not sink.buffer
    finally:
        sink.close()
        listener.close()
