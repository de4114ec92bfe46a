"""``resque-py listen`` issue 18 items 3 and 5 (and issue 15 item 8): voices from Resque's and
resque-py's own logs, and monitoring servers as sources.

* resque-py's logs are written by real workers (VVERBOSE text and LOG_FORMAT=json);
* Ruby's lines are Resque 3.0's formats verbatim (VeryVerboseFormatter ``** [%H:%M:%S %Y-%m-%d]
  pid: msg``, ``done: #{job.inspect}``, ``#{job.inspect} failed: #{exception.inspect}`` logged by
  both Worker#report_failed_job and Job#fail), as no Ruby Resque is installed here;
* Prometheus is Debian's ``prometheus`` (installed by .ci/services), started on a free loopback
  port with a temporary config scraping a running worker's ``/metrics``;
* Graphite: Debian's carbon-cache and graphite-web (installed by .ci/services), started on free
  loopback ports with temporary storage, fed by a running worker's ``GRAPHITE=`` sink; and, for
  the exact mapping, a loopback server answering the render API's documented JSON shape
  (``[{"target": ..., "datapoints": [[value|null, time]]}]``).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections import Counter

import pytest
from gevent import pywsgi

from bench.run import free_port
from resque_compat.listen.events import FAILURE, JOB, read_jsonl
from resque_compat.listen.logs import read_log
from resque_compat.listen.monitoring import Series, parse_duration, series_events, voice_names
from resque_compat.listen.session import ListenOptions
from resque_compat.listen.synth import queue_voice
from resque_compat.wire.keys import Keys
from tests.conftest import REDIS_URL, ROOT


def listen(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "resque_compat", "--redis", REDIS_URL, "listen", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def push(r, queue, payloads):
    keys = Keys()
    pipe = r.pipeline()
    for payload in payloads:
        pipe.rpush(keys.queue(queue), json.dumps(payload))
    pipe.sadd(keys.queues, queue)
    pipe.execute()


def kinds(events):
    return Counter((e.kind, e.queue, e.job_class) for e in events)


# -- logs ------------------------------------------------------------------------------------

@pytest.mark.parametrize("log_format", ["text", "json"])
def test_resque_py_logs_give_queue_class_and_failures_without_a_pattern(r, start_worker, tmp_path, log_format):
    push(r, "critical", [{"class": "OkJob", "args": [i]} for i in range(4)] + [{"class": "FailJob", "args": []}])
    push(r, "low", [{"class": "Jobs::Nested", "args": [1]}] * 2)
    worker = start_worker("QUEUE=critical,low", "INTERVAL=0", "VVERBOSE=1", f"LOG_FORMAT={log_format}")
    assert worker.wait() == 0, worker.output
    log = tmp_path / "worker.log"
    log.write_text(worker.output)
    events = list(read_log(str(log)))
    assert kinds(events) == {(JOB, "critical", "OkJob"): 4, (FAILURE, "critical", "FailJob"): 1,
                             (JOB, "low", "Jobs::Nested"): 2}, worker.output
    assert [e.exception for e in events if e.kind == FAILURE] == ["RuntimeError"]
    assert all(e.t > time.time() - 120 for e in events), "timed by the lines"


RUBY_LOG = """\
** [09:00:00 2027-01-05] 4242: Starting worker host:4242:critical,low
** [09:00:00 2027-01-05] 4242: got: (Job{critical} | Callbacks::Deliver | [3])
** [09:00:00 2027-01-05] 4242: done: (Job{critical} | Callbacks::Deliver | [3])
** [09:00:01 2027-01-05] 4242: got: (Job{critical} | Callbacks::Deliver | [4])
** [09:00:01 2027-01-05] 4242: (Job{critical} | Callbacks::Deliver | [4]) failed: #<RuntimeError: boom (x) failed: y>
** [09:00:01 2027-01-05] 4242: (Job{critical} | Callbacks::Deliver | [4]) failed: #<RuntimeError: boom (x) failed: y>
** [09:00:02 2027-01-05] 4242: done: (Job{low} | Reports::Nightly | [{"day"=>"mon"}])
** [09:00:02 2027-01-05] 4242: (Job{low} | Reports::Nightly | [1]) failed: #<Resque::TermException: SIGTERM>
** [09:00:02 2027-01-05] 4242: (Job{low} | Reports::Nightly | [1]) failed: #<Resque::TermException: SIGTERM>
*** done: (Job{low} | Reports::Nightly | [2])
"""


def test_ruby_resque_logs_give_queue_class_and_each_failure_once(tmp_path):
    log = tmp_path / "resque.log"
    log.write_text(RUBY_LOG)
    events = list(read_log(str(log)))
    assert [(e.kind, e.queue, e.job_class, e.exception) for e in events] == [
        (JOB, "critical", "Callbacks::Deliver", ""),
        (FAILURE, "critical", "Callbacks::Deliver", "RuntimeError"),
        (JOB, "low", "Reports::Nightly", ""),
        (FAILURE, "low", "Reports::Nightly", "Resque::TermException"),
        (JOB, "low", "Reports::Nightly", ""),  # a VERBOSE line takes the previous line's time
    ]
    t0 = 1799139600.0  # 2027-01-05 09:00:00 UTC
    assert [e.t - t0 for e in events] == [0, 1, 2, 2, 2]
    assert queue_voice("critical") != queue_voice("low"), "two queues, two voices"


def test_a_users_pattern_names_queue_class_and_failures(tmp_path):
    log = tmp_path / "app.log"
    log.write_text(
        "2027-01-05T09:00:00.250000+00:00 INFO done: (Job{critical} | Callbacks::Deliver | [3]) processed\n"
        "2027-01-05T09:00:00.500000+00:00 ERROR (Job{mailers} | Welcome | [4]) failed: boom\n"
        "2027-01-05T09:00:00.750000+01:00 app=shop q=billing cls=Invoice status=error\n")
    issue = list(read_log(str(log), r"processed|(?P<failed>failed)"))  # the issue's command
    assert [(e.kind, e.queue, e.job_class) for e in issue] == [
        (JOB, "critical", "Callbacks::Deliver"), (FAILURE, "mailers", "Welcome")]
    own = list(read_log(str(log), r"q=(?P<queue>\w+) cls=(?P<class>\w+) status=(?:ok|(?P<failed>error))"))
    assert [(e.kind, e.queue, e.job_class, e.t) for e in own] == [
        (FAILURE, "billing", "Invoice", 1799139600.75 - 3600)]


def test_source_options_are_checked(tmp_path):
    out = str(tmp_path / "x.wav")
    graphite = dict(from_graphite="http://g", target=("a",), out=out)
    for options, message in [
        (dict(query=("up",), out=out), "--query only applies to --from-prometheus"),
        (dict(from_prometheus="http://p", out=out), "--from-prometheus needs --query"),
        (dict(from_graphite="http://g", out=out), "--from-graphite needs --target"),
        (dict(follow=True, out=out), "--follow and --step apply to"),
        (dict(graphite, from_log=__file__), "give one source, not --from-log and --from-graphite"),
        (dict(graphite, follow=True, speed=2.0), "--speed only applies to"),
        (dict(graphite, since="soon"), "30s, 15m, 1h"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            ListenOptions(**options).validate()
    assert ListenOptions(**graphite, since="2h").step_seconds() == 4.0, "2,000 points at most"
    usage = listen("--query", "up", "--out", out)
    assert usage.returncode == 2 and "--query only applies to --from-prometheus" in usage.stderr
    port = free_port()  # nothing listens there
    down = listen("--from-prometheus", f"http://127.0.0.1:{port}", "--query", "up", "--out", out)
    assert down.returncode == 1 and "cannot reach Prometheus" in down.stderr, down.stderr
    assert not os.path.exists(out)


def test_input_without_events_is_refused_with_a_reason(tmp_path):
    verbose = tmp_path / "verbose.log"
    verbose.write_text("*** done: (Job{critical} | A | [])\n*** done: (Job{critical} | A | [])\n")
    other = tmp_path / "nginx.log"
    other.write_text('127.0.0.1 - - [27/Nov/2026:06:55:41 -0500] "GET / HTTP/1.1" 200\n')
    cases = [(verbose, (), "none has a timestamp", "VVERBOSE=1"),
             (other, (), "is a Resque job line", "--pattern REGEX"),
             (other, ("--pattern", "POST"), "matches --pattern 'POST'", "check the pattern")]
    for path, extra, reason, advice in cases:
        out = tmp_path / "out.wav"
        done = listen("--from-log", str(path), *extra, "--out", str(out), "--record", str(tmp_path / "e.jsonl"))
        assert done.returncode == 1, done.stderr
        assert reason in done.stderr and advice in done.stderr, done.stderr
        assert not out.exists() and not (tmp_path / "e.jsonl").exists(), "nothing written for no events"


# -- Prometheus ---------------------------------------------------------------------------------

@pytest.fixture
def prometheus(tmp_path):
    """Start Debian's prometheus on a free loopback port; yields (base URL, scrape target
    setter). Stopped (SIGTERM, then killed) after the test."""
    binary = shutil.which("prometheus") or "/usr/bin/prometheus"
    if not os.path.exists(binary):
        pytest.fail("prometheus is not installed: apt-get install -y prometheus (.ci/services does "
                    "this in CI)", pytrace=False)
    procs = []

    def start(metrics_port):
        port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                          "scrape_configs:\n  - job_name: resque\n    static_configs:\n"
                          f"      - targets: ['127.0.0.1:{metrics_port}']\n")
        proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 20
        while not _ok(base + "/-/ready"):
            assert proc.poll() is None, proc.stderr.read()
            assert time.time() < deadline, "prometheus did not become ready"
            time.sleep(0.05)
        return base

    try:
        yield start
    finally:
        _stop(procs)


def _stop(procs):
    """Stop the servers a test started (SIGTERM, then SIGKILL after 10 s), by their handles."""
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _ok(url):
    try:
        return urllib.request.urlopen(url, timeout=2).status == 200
    except OSError:
        return False


def _instant(base, query):
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    result = json.loads(urllib.request.urlopen(url, timeout=5).read())["data"]["result"]
    return {item["metric"].get("queue", ""): float(item["value"][1]) for item in result}


def test_a_real_prometheus_fed_by_a_worker_is_heard_per_queue(r, start_worker, prometheus, tmp_path):
    metrics_port = free_port()
    worker = start_worker("QUEUE=critical,low", "FIBERS=1", f"METRICS_PORT={metrics_port}",
                          "METRICS_BIND=127.0.0.1")
    worker.wait_registered(r)
    base = prometheus(metrics_port)
    deadline = time.time() + 30
    while _instant(base, 'up{job="resque"}') != {"": 1.0}:  # discovery takes up to 5 s at start
        assert time.time() < deadline, "prometheus never scraped the worker's /metrics"
        time.sleep(0.2)
    follow_rec = tmp_path / "follow.jsonl"  # --follow: a query every --step while traffic runs
    follower = subprocess.Popen(
        [sys.executable, "-m", "resque_compat", "--redis", REDIS_URL, "listen", "--from-prometheus", base,
         "--query", "rate(resque_jobs_processed_total[2s])", "--follow", "--step", "1", "--seconds", "60",
         "--record", str(follow_rec)], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    assert "polling prometheus" in follower.stderr.readline()
    # steady traffic for ~4 s at ~20 jobs/s: 36 jobs of 50 ms on critical, 4 failing at its end,
    # then 40 on low
    push(r, "critical", [{"class": "SleepJob", "args": [0.05]}] * 36 + [{"class": "FailJob", "args": []}] * 4)
    push(r, "low", [{"class": "SleepJob", "args": [0.05]}] * 40)
    while _instant(base, "resque_jobs_processed_total") != {"critical": 40.0, "low": 40.0}:
        assert time.time() < deadline, _instant(base, "resque_jobs_processed_total")
        time.sleep(0.2)  # Prometheus scrapes every second: wait for the scrape that saw them all
    rec, out = tmp_path / "prom.jsonl", tmp_path / "prom.wav"
    done = listen("--from-prometheus", base, "--query", "rate(resque_jobs_processed_total[2s])",
                  "--query", "rate(resque_jobs_failed_total[2s])", "--since", "40s", "--step", "1",
                  "--record", str(rec), "--out", str(out))
    assert done.returncode == 0, done.stderr
    with open(rec) as fh:
        events = list(read_jsonl(fh))
    busiest = Counter()
    for e in events:  # n per 1 s step is the rate Prometheus computed: ~20 jobs/s while busy
        busiest[(e.kind, e.queue)] = max(busiest[(e.kind, e.queue)], e.n)
    assert 8 <= busiest[(JOB, "critical")] <= 30 and 8 <= busiest[(JOB, "low")] <= 30, events
    assert busiest[(FAILURE, "critical")] >= 1 and (FAILURE, "low") not in busiest, events
    assert all(e.span == 1.0 for e in events)
    assert [e.t for e in events] == sorted(e.t for e in events)
    assert out.stat().st_size > 44 + 44100 * 4, "audio was rendered"
    followed = []
    while {e.queue for e in followed} != {"critical", "low"}:  # --record writes each event at once
        assert time.time() < deadline + 20 and follower.poll() is None, followed
        time.sleep(0.2)
        with open(follow_rec) as fh:
            followed = list(read_jsonl(fh))
    follower.terminate()
    assert follower.wait(10) == 0, follower.stderr.read()
    assert {e.queue for e in followed} == {"critical", "low"} and all(e.kind == JOB for e in followed), followed
    assert max(e.n / e.span for e in followed) <= 30, "each point is played once, over its own time"
    bad = listen("--from-prometheus", base, "--query", "rate(", "--out", str(tmp_path / "x.wav"))
    assert bad.returncode == 1 and "Prometheus answered HTTP 400" in bad.stderr, bad.stderr
    empty = listen("--from-prometheus", base, "--query", "rate(no_such_metric[1m])", "--out", str(tmp_path / "y.wav"))
    assert empty.returncode == 1 and "returned no data" in empty.stderr, empty.stderr


# -- Graphite ---------------------------------------------------------------------------------

CARBON_CONF = """[cache]
STORAGE_DIR = {tmp}/storage/
LOCAL_DATA_DIR = {tmp}/storage/whisper/
WHITELISTS_DIR = {tmp}/storage/lists/
CONF_DIR = {tmp}/conf/
LOG_DIR = {tmp}/log/
PID_DIR = {tmp}/run/
ENABLE_LOGROTATION = False
USER =
MAX_CACHE_SIZE = inf
MAX_UPDATES_PER_SECOND = 10000
MAX_CREATES_PER_MINUTE = inf
LINE_RECEIVER_INTERFACE = 127.0.0.1
LINE_RECEIVER_PORT = {line}
ENABLE_UDP_LISTENER = False
PICKLE_RECEIVER_INTERFACE = 127.0.0.1
PICKLE_RECEIVER_PORT = {pickle}
CACHE_QUERY_INTERFACE = 127.0.0.1
CACHE_QUERY_PORT = {query}
"""


@pytest.fixture
def graphite(tmp_path):
    """Debian's carbon-cache and graphite-web (Django's server, the system python3) on free
    loopback ports, storing 1 s points under tmp_path; yields (render URL, Carbon line port)."""
    if not shutil.which("carbon-cache") or not os.path.isdir("/usr/lib/python3/dist-packages/graphite"):
        pytest.fail("graphite is not installed: apt-get install -y graphite-carbon graphite-web "
                    "python3-whisper (.ci/services does this in CI)", pytrace=False)
    for sub in ("conf", "storage/whisper", "storage/log/webapp", "log", "run", "web"):
        (tmp_path / sub).mkdir(parents=True)
    line, pickle, query, web = (free_port() for _ in range(4))
    carbon_conf = CARBON_CONF.format(tmp=tmp_path, line=line, pickle=pickle, query=query)
    (tmp_path / "conf" / "carbon.conf").write_text(carbon_conf)
    (tmp_path / "conf" / "storage-schemas.conf").write_text("[all]\npattern = .*\nretentions = 1s:1h\n")
    (tmp_path / "web" / "listen_graphite_settings.py").write_text(
        f"SECRET_KEY = 'listen-test'\nSTORAGE_DIR = '{tmp_path}/storage/'\n"
        f"CARBONLINK_HOSTS = ['127.0.0.1:{query}:a']\nALLOWED_HOSTS = ['127.0.0.1']\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "web"), "GRAPHITE_SETTINGS_MODULE": "listen_graphite_settings",
           "DJANGO_SETTINGS_MODULE": "graphite.settings"}
    procs = [subprocess.Popen(["carbon-cache", f"--config={tmp_path}/conf/carbon.conf", "--nodaemon",
                               f"--pidfile={tmp_path}/run/carbon.pid", "start"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
             subprocess.Popen(["/usr/bin/python3", "-m", "django", "runserver", f"127.0.0.1:{web}", "--noreload"],
                              env=env, cwd=str(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    base = f"http://127.0.0.1:{web}"
    try:
        deadline = time.time() + 30
        while not (_ok(base + "/render?target=none&format=json") and _accepts(line)):
            assert all(p.poll() is None for p in procs), "carbon-cache or graphite-web exited"
            assert time.time() < deadline, "carbon-cache / graphite-web did not start"
            time.sleep(0.1)
        yield base, line
    finally:
        _stop(procs)


def _accepts(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _graphite_latest(base, target):
    """The newest value of each series of ``target``."""
    url = f"{base}/render?{urllib.parse.urlencode({'target': target, 'from': '-60s', 'format': 'json'})}"
    series = json.loads(urllib.request.urlopen(url, timeout=5).read())
    return {s["target"]: [v for v, _ in s["datapoints"] if v is not None][-1:] for s in series}


def test_a_real_graphite_fed_by_a_worker_is_heard_per_queue(r, start_worker, graphite, tmp_path):
    base, line_port = graphite
    worker = start_worker("QUEUE=critical,low", "FIBERS=1", f"GRAPHITE=127.0.0.1:{line_port}",
                          "METRICS_INTERVAL=0.5")
    worker.wait_registered(r)
    push(r, "critical", [{"class": "SleepJob", "args": [0.05]}] * 36 + [{"class": "FailJob", "args": []}] * 4)
    push(r, "low", [{"class": "SleepJob", "args": [0.05]}] * 40)
    processed = "perSecond(resque.*.*.queue.*.processed)"
    deadline = time.time() + 40
    while list(_graphite_latest(base, "sumSeries(resque.*.*.queue.*.processed)").values()) != [[80.0]]:
        assert time.time() < deadline, (_graphite_latest(base, "resque.*.*.queue.*.processed"),
                                        r.get(Keys().processed), r.llen(Keys().queue("low")))
        time.sleep(0.25)  # the worker flushes every 0.5 s: wait for the flush that sent them all
    rec = tmp_path / "graphite.jsonl"
    done = listen("--from-graphite", base, "--target", processed, "--target", "perSecond(resque.*.*.queue.*.failed)",
                  "--since", "60s", "--step", "1", "--record", str(rec), "--out", str(tmp_path / "g.wav"))
    assert done.returncode == 0, done.stderr
    with open(rec) as fh:
        events = list(read_jsonl(fh))
    totals, busiest = Counter(), Counter()
    for e in events:
        totals[(e.kind, e.queue)] += e.n
        busiest[(e.kind, e.queue)] = max(busiest[(e.kind, e.queue)], e.n)
    # perSecond of Carbon's totals, one point a second, counts each job once, except those in a
    # series' first point (a derivative has nothing before it): the failures' series starts at 0
    assert totals[(FAILURE, "critical")] == 4 and (FAILURE, "low") not in totals, totals
    assert 15 <= totals[(JOB, "critical")] <= 40 and 15 <= totals[(JOB, "low")] <= 40, totals
    assert 8 <= busiest[(JOB, "critical")] <= 30 and 8 <= busiest[(JOB, "low")] <= 30, events


# -- Graphite: the request and the exact mapping, on the documented JSON shape ----------------------

def graphite_server(series, requests):
    def app(environ, start_response):
        requests.append((environ["PATH_INFO"], urllib.parse.parse_qs(environ["QUERY_STRING"])))
        body = json.dumps(series).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    server = pywsgi.WSGIServer(("127.0.0.1", 0), app, log=None)
    server.start()
    return server


def test_graphite_render_json_becomes_voices_rates_and_failures(tmp_path):
    now = int(time.time()) // 10 * 10
    series = [
        {"target": "stats.resque.critical.processed", "tags": {"name": "stats.resque.critical.processed"},
         "datapoints": [[20.0, now - 30], [None, now - 20], [40.0, now - 10]]},
        {"target": "stats.resque.low.processed", "datapoints": [[2.5, now - 30], [2.5, now - 20], [0.0, now - 10]]},
        {"target": "stats.resque.low.failed", "datapoints": [[0.1, now - 30], [0.1, now - 20], [0.1, now - 10]]},
    ]
    requests = []
    server = graphite_server(series, requests)
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        rec = tmp_path / "g.jsonl"
        done = listen("--from-graphite", base, "--target", "stats.resque.*.processed",
                      "--target", "stats.resque.*.failed", "--since", "1m", "--step", "10", "--record", str(rec))
        assert done.returncode == 0, done.stderr
        path, query = requests[0]
        assert path == "/render" and query["format"] == ["json"]
        assert query["target"] == ["stats.resque.*.processed", "stats.resque.*.failed"]
        assert int(query["until"][0]) - int(query["from"][0]) == 60
        with open(rec) as fh:
            events = [(e.t - now, e.kind, e.queue, e.n, e.span) for e in read_jsonl(fh)]
        assert events == [
            (-30, JOB, "critical", 200, 10.0), (-30, JOB, "low", 25, 10.0),
            (-30, FAILURE, "low", 1, 10.0), (-20, JOB, "low", 25, 10.0),
            (-20, FAILURE, "low", 1, 10.0), (-10, JOB, "critical", 400, 10.0),
            (-10, FAILURE, "low", 1, 10.0)]
    finally:
        server.stop()
    assert voice_names(["a.b.processed"], [False]) == ["a.b.processed"], "one series: its path"
    # Graphite answers at its own resolution: 10 s points are 10 s of jobs whatever --step says
    coarse = list(series_events([Series("q", False, [(0.0, 2.0), (10.0, 2.0), (20.0, 2.0)])], step=1.0))
    assert [(e.t, e.n, e.span) for e in coarse] == [(0.0, 20, 10.0), (10.0, 20, 10.0), (20.0, 20, 10.0)]
    assert parse_duration("15m") == 900 and parse_duration("90") == 90
    with pytest.raises(ValueError, match="30s, 15m"):
        parse_duration("soon")
