"""``make bench``: the workloads of issue 4, each one table row, plus the floor beside it.

W1 no-op (20,000 jobs, FIBERS=100); W2 callback (5,000 jobs, one HTTP GET to a local endpoint
answering after 100 ms, FIBERS=100, ideal 1,000 jobs/s); W3 as W2 plus one SELECT through
DB_POOL=20; W4 as W2 with FIBERS=1000 and 20,000 jobs (ideal 10,000 jobs/s). W2x2, W3x2 and
W4x2 run the same with PROCESSES=2 (a supervisor and two worker processes; their floor is two
floor processes with half the jobs each), and show the ratio to the one-process row. Then the
multi-host simulation (bench/scale.py): several pools with distinct HOSTNAMEs on one Redis,
with Redis's own CPU per 1000 jobs and the throughput at which Redis would saturate a core.

For each: the queue is filled, ``resque-py work ... INTERVAL=0`` drains it (throughput, CPU,
peak RSS, most MySQL and Redis connections seen), then a paced stream at half that rate goes
to a running worker (pickup latency, enqueue -> start). The floor runs the same job bodies on
bare greenlets. A private redis-server is started so Redis numbers are ours alone. Figures
vary between runs on a shared 2-core machine: compare ratios within one run.

Issue 17 adds W1r (each job one INCR through redis-py, function job), W1c (the same as a class
job), W1s (the INCR through resque_compat.redis, auto-pipelined) and W3s (W2 + SELECT
SLEEP(0.005) through DB_POOL=20), and node-resque (bench/node_resque.py) running the same job
bodies beside W1, W1r, W2 and W3s: a second table gives our jobs/s as a ratio of node-resque's
and of the floor's (medians of three drains of each, taken in turn), start-up (spawn -> first
job done; the median of five one-job runs of each, taken in turn, beside the import floor: a
process that only patches gevent and imports redis-py and click) and CPU per job of all three.
The package is byte-compiled first, as pip does when it installs it.

``python bench/run.py [--quick] [--only W1,W2,W4x2] [--hosts 1,2,4] [--no-node]``
"""
from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List, Tuple

import pymysql
import redis

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from bench import node_resque  # noqa: E402
from bench.scale import merge_outputs, multi_host, run_processes  # noqa: E402

PY = sys.executable
BENCH_DB = "resque_bench"
MYSQL = dict(host="127.0.0.1", port=3306, user="root", password="")
#: Paired one-job runs behind each start-up figure (see startups()).
STARTUP_ROUNDS = 5
#: Interleaved drains of ours, the floor and node-resque behind each row of the node-resque
#: table (see side_by_side()).
NODE_ROUNDS = 3

WORKLOADS = {
    "W1": dict(cls="Bench::Noop", jobs=20000, fibers=100, ideal=None, db=False, node="noop"),
    "W2": dict(cls="Bench::Callback", jobs=5000, fibers=100, ideal=1000, db=False, node="callback"),
    "W3": dict(cls="Bench::CallbackDb", jobs=5000, fibers=100, ideal=1000, db=True),
    "W4": dict(cls="Bench::Callback", jobs=20000, fibers=1000, ideal=10000, db=False),
    # Issue 17's workloads, each beside node-resque doing the same work (bench/node/worker.js).
    "W1r": dict(cls="Bench::Incr", jobs=20000, fibers=100, ideal=None, db=False, node="incr"),
    "W1c": dict(cls="Bench::IncrClass", jobs=20000, fibers=100, ideal=None, db=False, node="incr"),
    "W1s": dict(cls="Bench::IncrShared", jobs=20000, fibers=100, ideal=None, db=False, node="incr"),
    "W3s": dict(cls="Bench::CallbackSleep", jobs=5000, fibers=100, ideal=1000, db=True, node="callback_sleep"),
    "W2x2": dict(cls="Bench::Callback", jobs=5000, fibers=100, ideal=2000, db=False, processes=2),
    "W3x2": dict(cls="Bench::CallbackDb", jobs=5000, fibers=100, ideal=2000, db=True, processes=2),
    "W4x2": dict(cls="Bench::Callback", jobs=20000, fibers=1000, ideal=20000, db=False, processes=2),
}
#: Multi-host simulation: each "host" is a pool of this many processes of this many greenlets.
HOST_PROCESSES = 2
HOST_FIBERS = 100
HOST_JOBS = 20000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def machine() -> str:
    model = "?"
    try:
        with open("/proc/cpuinfo") as fh:
            model = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{platform.node()}: {model}, {os.cpu_count()} cores, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}")


class Sampler(threading.Thread):
    """Samples the most Redis clients and MySQL connections of the bench DB every 20 ms."""

    def __init__(self, r: redis.Redis) -> None:
        super().__init__(daemon=True)
        self.r = r
        self.mysql = pymysql.connect(**MYSQL)
        self.base_redis = self._redis()
        self.max_redis = 0
        self.max_mysql = 0
        self.stop_flag = threading.Event()

    def _redis(self) -> int:
        return int(self.r.info("clients")["connected_clients"])

    def _mysql(self) -> int:
        with self.mysql.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB=%s", (BENCH_DB,))
            return int(cur.fetchone()[0])

    def run(self) -> None:
        while not self.stop_flag.wait(0.02):
            self.max_redis = max(self.max_redis, self._redis() - self.base_redis)
            self.max_mysql = max(self.max_mysql, self._mysql())

    def stop(self) -> Tuple[int, int]:
        self.stop_flag.set()
        self.join()
        self.mysql.close()
        return self.max_redis, self.max_mysql


def run_process(args: List[str], env: Dict[str, str]) -> Tuple[float, float, Dict[str, Any]]:
    """Run to completion; returns (wall seconds, CPU seconds, BENCH_OUT summary of every process)."""
    return run_processes([args], env, ROOT)


def fill(r: redis.Redis, cls: str, count: int, url: str) -> None:
    pipe = r.pipeline(transaction=False)
    pipe.sadd("resque:queues", "bench")
    now = time.time()
    for _ in range(count):
        pipe.rpush("resque:queue:bench", json.dumps({"class": cls, "args": [now, url]}, separators=(",", ":")))
    pipe.execute()


def worker_args(w: Dict[str, Any], interval: str) -> List[str]:
    return [PY, "-m", "resque_compat", "work", "QUEUE=bench", f"FIBERS={w['fibers']}",
            f"INTERVAL={interval}", f"PROCESSES={w.get('processes', 1)}", "-r", "bench/jobs.py"]


def throughput(r: redis.Redis, w: Dict[str, Any], env: Dict[str, str], url: str) -> Dict[str, Any]:
    r.flushdb()
    # Start-up and shutdown cost, measured on an empty queue, is taken off the CPU figure.
    _, idle_cpu, _ = run_process(worker_args(w, "0"), env)
    fill(r, w["cls"], w["jobs"], url)
    sampler = Sampler(r)
    sampler.start()
    wall, cpu, data = run_process(worker_args(w, "0"), env)
    max_redis, max_mysql = sampler.stop()
    assert int(r.get("resque:stat:processed") or 0) == w["jobs"], "not every job was processed"
    assert r.llen("resque:failed") == 0, r.lindex("resque:failed", 0)
    if "Incr" in w["cls"]:
        assert int(r.get("bench:counter") or 0) == w["jobs"], "an INCR went missing"
    window = data["window_s"] or wall
    return dict(jobs_s=w["jobs"] / window, cpu_per_1000=(cpu - idle_cpu) / w["jobs"] * 1000,
                rss=data["peak_rss_mb"], max_redis=max_redis, max_mysql=max_mysql, wall=wall,
                startup=data["first_end"] - data["spawned"], cycle_mean_ms=data["cycle_mean_ms"],
                cycle_p50_ms=data["cycle_p50_ms"], cycle_p99_ms=data["cycle_p99_ms"])


def cycle(r: redis.Redis, w: Dict[str, Any], env: Dict[str, str], url: str) -> Dict[str, Any]:
    """The pick-up cycle of a drain, taken apart by bench/cycle.py (a separate run: its timing
    wrappers cost a little CPU)."""
    r.flushdb()
    fill(r, w["cls"], w["jobs"], url)
    _, _, data = run_process(worker_args(w, "0") + ["-r", "bench/cycle.py"], env)
    return data


def side_by_side(r: redis.Redis, w: Dict[str, Any], env: Dict[str, str], url: str, redis_port: int,
                 t: Dict[str, Any], f: Dict[str, Any], node_runs: Dict[str, List[Dict[str, Any]]],
                 rounds: int = NODE_ROUNDS) -> Dict[str, float]:
    """Our drain ``t`` and the floor's ``f`` (the main table's), then ``rounds - 1`` more of
    each, and ``rounds`` drains of node-resque, taken in turn: the medians of jobs/s and CPU
    per job, and the medians of each round's ratios. One drain swings by several per cent on a
    busy 2-core machine, as much as the margins this table is read for (issue 17 req 2).
    ``node_runs`` keeps node-resque's drains by kind: W1r, W1c and W1s share theirs."""
    kind = w["node"]
    nodes = node_runs.setdefault(kind, [])
    ours, floors = [t], [f]
    for n in range(rounds):
        if n:
            ours.append(throughput(r, w, env, url))
            floors.append(floor(w, env, url))
        if len(nodes) <= n:
            nodes.append(node_resque.throughput(
                kind, w["jobs"], w["fibers"], url, env, redis_port,
                fill=lambda count: fill(r, node_resque.CLASSES[kind], count, url), flush=r.flushdb))
            if kind == "incr":
                assert int(r.get("bench:counter") or 0) == w["jobs"], "node-resque lost an INCR"

    def median(runs: List[Dict[str, Any]], key: str) -> float:
        return statistics.median(run[key] for run in runs)

    return dict(
        ours=median(ours, "jobs_s"), node=median(nodes[:rounds], "jobs_s"), floor=median(floors, "jobs_s"),
        x_node=statistics.median(o["jobs_s"] / nd["jobs_s"] for o, nd in zip(ours, nodes)),
        x_floor=statistics.median(o["jobs_s"] / fl["jobs_s"] for o, fl in zip(ours, floors)),
        ours_cpu=median(ours, "cpu_per_1000"), node_cpu=median(nodes[:rounds], "cpu_per_1000"),
        floor_cpu=median(floors, "cpu_per_1000"),
        ours_rss=max(o["rss"] for o in ours), node_rss=max(nd["rss"] for nd in nodes[:rounds]))


def startups(r: redis.Redis, w: Dict[str, Any], env: Dict[str, str], url: str, redis_port: int,
             rounds: int = STARTUP_ROUNDS) -> Tuple[float, float, float]:
    """Start-up, spawn -> first job done, of our worker and of node-resque, and the import floor
    beside them: the median of ``rounds`` runs each, the three taken in turn. One drain's figure
    swings by 30 % on a busy 2-core machine; the median of paired runs is what the table compares.

    The import floor is a Python process that only patches gevent and imports redis-py and click
    (spawn -> imported): what any worker built on our fixed dependencies pays before its first
    command, so the table shows how much of our start-up is ours (issue 17 req 6), first job
    included (W2's is a 100 ms call)."""
    ours: List[float] = []
    node: List[float] = []
    deps: List[float] = []
    kind = w["node"]
    for _ in range(rounds):
        r.flushdb()
        fill(r, w["cls"], 1, url)
        _, _, data = run_process(worker_args(w, "0"), env)
        ours.append(data["first_end"] - data["spawned"])
        node.append(node_resque.startup(
            kind, w["fibers"], url, env, redis_port,
            fill=lambda n: fill(r, node_resque.CLASSES[kind], n, url), flush=r.flushdb))
        began = time.time()
        done = subprocess.run(IMPORT_FLOOR, env=env, cwd=ROOT, check=True, capture_output=True, text=True)
        deps.append(float(done.stdout) - began)
    r.flushdb()
    return statistics.median(ours), statistics.median(node), statistics.median(deps)


#: The import floor of start-up (see startups()): gevent patched as ``resque-py`` patches it
#: (``resque_compat.__main__``: patch_all with one entry-point scan), then the two dependencies
#: every ``resque-py work`` imports before it can reserve; it prints when they are in, as our
#: worker's first job done is its own clock's reading (interpreter exit is not start-up).
IMPORT_FLOOR = [PY, "-c", "import resque_compat.__main__, redis, click, time; print(time.time())"]


def floor(w: Dict[str, Any], env: Dict[str, str], url: str) -> Dict[str, Any]:
    base = [PY, "bench/floor.py", w["cls"]]
    n = w.get("processes", 1)  # a pool's floor: as many bare processes, each with its share
    _, idle_cpu, _ = run_processes([base + ["0", str(w["fibers"]), url]] * n, env, ROOT)
    wall, cpu, data = run_processes([base + [str(w["jobs"] // n), str(w["fibers"]), url]] * n, env, ROOT)
    window = data["window_s"] or wall
    return dict(jobs_s=w["jobs"] / window, cpu_per_1000=(cpu - idle_cpu) / w["jobs"] * 1000)


def latency(r: redis.Redis, w: Dict[str, Any], env: Dict[str, str], url: str, rate: float,
            seconds: float) -> Dict[str, Any]:
    """Pickup latency of a paced stream at ``rate`` jobs/s into a running, idle-at-start worker."""
    r.flushdb()
    outdir = tempfile.mkdtemp(prefix="bench-")
    proc = subprocess.Popen(worker_args(w, "5"), env={**env, "BENCH_OUT": os.path.join(outdir, "{pid}.json")},
                            cwd=ROOT)
    deadline = time.time() + 20
    while len(r.smembers("resque:workers")) < w["fibers"] * w.get("processes", 1) and time.time() < deadline:
        time.sleep(0.05)
    total = int(rate * seconds)
    start = time.time()
    batch = max(1, int(rate / 100))  # enqueue in 10 ms steps
    sent = 0
    while sent < total:
        due = start + sent / rate
        pause = due - time.time()
        if pause > 0:
            time.sleep(pause)
        pipe = r.pipeline(transaction=False)
        for _ in range(min(batch, total - sent)):
            pipe.rpush("resque:queue:bench", json.dumps({"class": w["cls"], "args": [time.time(), url]},
                                                        separators=(",", ":")))
        pipe.sadd("resque:queues", "bench")
        pipe.execute()
        sent += batch
    while int(r.get("resque:stat:processed") or 0) < total and time.time() < start + seconds + 30:
        time.sleep(0.05)
    proc.send_signal(signal.SIGQUIT)
    proc.wait(30)
    data = merge_outputs(outdir)
    shutil.rmtree(outdir, ignore_errors=True)
    return dict(p50=data["pickup_p50_ms"], p99=data["pickup_p99_ms"], rate=rate)


def start_redis() -> Tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port),
                             "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--maxclients", "10000"], stdout=subprocess.DEVNULL)
    r = redis.Redis(port=port)
    for _ in range(100):
        try:
            r.ping()
            return proc, port
        except redis.ConnectionError:
            time.sleep(0.05)
    raise SystemExit("could not start a private redis-server for the benchmark")


def start_endpoint(delay: float) -> Tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([PY, "examples/callbacks/endpoint.py", "--port", "0", "--delay", str(delay)],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
    return proc, int(proc.stdout.readline().strip())


def endpoint_lateness(port: int) -> Dict[str, Any]:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as resp:
        return json.loads(resp.read())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a tenth of the jobs (smoke test)")
    parser.add_argument("--only", default="W1,W1r,W1c,W1s,W2,W3,W3s,W4,W2x2,W3x2,W4x2")
    parser.add_argument("--no-node", action="store_true", help="leave out the node-resque rows")
    parser.add_argument("--hosts", default="1,2,4", help="pools in the multi-host simulation ('' = skip)")
    parser.add_argument("--results", default=os.path.join(ROOT, "bench", "results.md"))
    opts = parser.parse_args()
    # An installed package has its .pyc files; a checkout under PYTHONDONTWRITEBYTECODE would
    # compile every module at each start, which is not what start-up means here.
    compileall.compile_dir(os.path.join(ROOT, "resque_compat"), quiet=1)
    compileall.compile_dir(os.path.join(ROOT, "bench"), quiet=1, maxlevels=0)
    node_missing = "--no-node given" if opts.no_node else node_resque.available()

    mysql = pymysql.connect(**MYSQL)
    with mysql.cursor() as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS {BENCH_DB}")
    mysql.close()
    redis_proc, redis_port = start_redis()
    endpoint, port = start_endpoint(0.1)
    url = f"http://127.0.0.1:{port}/callback"
    r = redis.Redis(port=redis_port, decode_responses=True)
    env = {**os.environ, "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
           "DATABASE_URL": f"mysql://root@127.0.0.1:3306/{BENCH_DB}", "DB_POOL": "20"}
    for name in ("QUEUE", "QUEUES", "FIBERS", "INTERVAL", "VERBOSE", "VVERBOSE", "PROCESSES", "HOSTNAME"):
        env.pop(name, None)
    rows = []
    node_rows: List[str] = []
    cycle_rows: List[str] = []
    node_runs: Dict[str, List[Dict[str, Any]]] = {}
    jobs_s: Dict[str, float] = {}
    host_rows: List[Dict[str, Any]] = []
    print(f"machine: {machine()}")
    load_at_start = load()
    print(f"load at start: {load_at_start}")
    header = ("| workload | jobs/s | ideal % | floor jobs/s | pickup p50/p99 ms | peak RSS MB | "
              "CPU s/1000 jobs | floor CPU s/1000 | overhead ms/job | max MySQL | max Redis |")
    print(header)
    try:
        for name in opts.only.split(","):
            w = dict(WORKLOADS[name])
            if opts.quick:
                w["jobs"] //= 10
            env_w = env if w["db"] else {k: v for k, v in env.items() if k != "DATABASE_URL"}
            t = throughput(r, w, env_w, url)
            f = floor(w, env_w, url)
            lat = latency(r, w, env_w, url, rate=min(t["jobs_s"] * 0.5, 2000), seconds=3 if not opts.quick else 1)
            ideal = f"{100 * t['jobs_s'] / w['ideal']:.0f}" if w["ideal"] else "-"
            jobs_s[name] = t["jobs_s"]
            label = f"{name} {w['cls']} x{w['jobs']} F={w['fibers']}"
            if w.get("processes", 1) > 1:  # W4x2: P=2, and its speed-up over W4 in this run
                single = name.split("x")[0]
                label += f" P={w['processes']}" + (f" ({t['jobs_s'] / jobs_s[single]:.2f}x {single})"
                                                   if single in jobs_s else "")
            row = (f"| {label} | {t['jobs_s']:.0f} | {ideal} | "
                   f"{f['jobs_s']:.0f} | {lat['p50']:.1f} / {lat['p99']:.1f} | {t['rss']:.0f} | "
                   f"{t['cpu_per_1000']:.2f} | {f['cpu_per_1000']:.2f} | "
                   f"{t['cpu_per_1000'] - f['cpu_per_1000']:.3f} | {t['max_mysql']} | {t['max_redis']} |")
            print(row, flush=True)
            rows.append(row)
            if w["cls"] in CYCLE_CLASSES and w.get("processes", 1) == 1:
                c = cycle(r, w, env_w, url)
                b = c.get("breakdown_ms", {})
                line = (f"| {label} | {t['cycle_mean_ms']:.2f} / {t['cycle_p50_ms']:.2f} / {t['cycle_p99_ms']:.2f} | "
                        + " | ".join(f"{b.get(k, 0.0):.2f}" for k in CYCLE_STEPS) + " |")
                cycle_rows.append(line)
                print(f"  pick-up cycle: {line}", flush=True)
            if w.get("node") and not node_missing:
                side = side_by_side(r, w, env_w, url, redis_port, t, f, node_runs)
                ups = startups(r, w, env_w, url, redis_port)
                node_rows.append(node_row(label, side, *ups))
                print(f"  vs node-resque: {node_rows[-1]}", flush=True)
        hosts = [int(h) for h in opts.hosts.split(",") if h.strip()]
        if hosts:
            pool = dict(fibers=HOST_FIBERS, processes=HOST_PROCESSES)
            host_rows = multi_host(
                r, {k: v for k, v in env.items() if k != "DATABASE_URL"}, ROOT,
                lambda host: worker_args(pool, "0") + [f"HOSTNAME={host}"],
                lambda n: fill(r, "Bench::Noop", n, url), hosts, HOST_JOBS // (10 if opts.quick else 1))
            print(HOST_HEADER)
            for h in host_rows:
                print(host_row(h), flush=True)
        late = endpoint_lateness(port)
        print(f"endpoint: {late['requests']} requests, lateness max {late['max_late_ms']:.1f} ms, "
              f"p99 {late['p99_late_ms']:.1f} ms")
        if node_rows:
            print(f"\n{NODE_HEADER}\n" + "\n".join(node_rows))
        if cycle_rows:
            print(f"\n{CYCLE_HEADER}\n" + "\n".join(cycle_rows))
        load_at_end = load()
        print(f"load at end: {load_at_end}")
    finally:
        endpoint.terminate()
        redis_proc.terminate()
    with open(opts.results, "a") as fh:
        fh.write(f"\n## {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}{' (quick)' if opts.quick else ''}\n\n")
        fh.write(f"machine: {machine()}\n\nload at start: {load_at_start}; at end: {load_at_end}\n\n"
                 f"{header}\n|{'---|' * 11}\n" + "\n".join(rows) + "\n\n")
        fh.write(f"endpoint lateness: max {late['max_late_ms']:.1f} ms, p99 {late['p99_late_ms']:.1f} ms\n")
        if node_rows:
            fh.write(f"\nbeside {node_resque.version()} (one process, the same job bodies and "
                     f"concurrency; jobs/s and CPU are medians of {NODE_ROUNDS} drains of each, taken "
                     f"in turn, and the ratios medians of each turn's):\n\n{NODE_HEADER}\n|{'---|' * 8}\n"
                     + "\n".join(node_rows) + "\n")
        if cycle_rows:
            fh.write(f"\npick-up cycle (a slot's job body ended -> its next job body started; steps from "
                     f"a second run with bench/cycle.py):\n\n{CYCLE_HEADER}\n|{'---|' * 6}\n"
                     + "\n".join(cycle_rows) + "\n")
        if node_missing:
            fh.write(f"\nnode-resque rows left out: {node_missing}\n")
        if host_rows:
            fh.write(f"\nmulti-host (Bench::Noop x{HOST_JOBS // (10 if opts.quick else 1)}, each host a pool "
                     f"of {HOST_PROCESSES} x FIBERS={HOST_FIBERS}, one private Redis):\n\n{HOST_HEADER}\n"
                     f"|{'---|' * 7}\n" + "\n".join(host_row(h) for h in host_rows) + "\n")


#: Workloads whose pick-up cycle is taken apart (the ones that wait on I/O, issue 17 req 2).
CYCLE_CLASSES = ("Bench::Callback", "Bench::CallbackSleep")
CYCLE_STEPS = ("to_reserve", "to_trip", "trip", "to_start")
CYCLE_HEADER = ("| workload | cycle ms mean / p50 / p99 | end -> reserve | reserve -> trip starts | "
                "trip | reply -> job starts |")
NODE_HEADER = (f"| workload | jobs/s, median of {NODE_ROUNDS} | node-resque jobs/s | x node-resque | x floor | "
               f"start-up s, median of {STARTUP_ROUNDS} (ours / node / import floor) | "
               "CPU ms/job (ours / node / floor) | peak RSS MB (ours / node) |")


def node_row(label: str, side: Dict[str, float], ours_up: float, node_up: float, deps_up: float) -> str:
    return (f"| {label} | {side['ours']:.0f} | {side['node']:.0f} | {side['x_node']:.2f} | "
            f"{side['x_floor']:.2f} | {ours_up:.3f} / {node_up:.3f} / {deps_up:.3f} "
            f"({ours_up / node_up:.2f}x node; ours {ours_up - deps_up:.3f} above the floor) | "
            f"{side['ours_cpu']:.3f} / {side['node_cpu']:.3f} / {side['floor_cpu']:.3f} | "
            f"{side['ours_rss']:.0f} / {side['node_rss']:.0f} |")


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} ({os.cpu_count()} cores)"


HOST_HEADER = ("| hosts (pools) | worker processes | jobs/s | Redis CPU % of one core | "
               "Redis CPU ms/1000 jobs | Redis commands/job | Redis saturates at ~jobs/s |")


def host_row(h: Dict[str, Any]) -> str:
    return (f"| {h['hosts']} | {h['processes']} | {h['jobs_s']:.0f} | {h['redis_cpu_pct']:.0f} | "
            f"{h['redis_ms_per_1000']:.0f} | {h['commands_per_job']:.2f} | {h['redis_ceiling']:.0f} |")


if __name__ == "__main__":
    main()
