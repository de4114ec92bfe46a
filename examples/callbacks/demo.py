"""``make demo``: 5,000 slow HTTP callbacks gated by a little MySQL, run by ``resque-py work``.

1. creates the ``callbacks`` table in database ``resque_demo`` (MariaDB on 127.0.0.1:3306);
2. starts a local callback endpoint that answers after 100 ms;
3. inserts 5,000 callback rows and enqueues ``Callbacks::Deliver(id)`` for each, with the exact
   bytes Rails' ``Resque.enqueue(Callbacks::Deliver, id)`` writes (namespace ``resque-demo`` on
   Redis DB 0, so no other data is touched);
4. runs ``resque-py work QUEUE=callbacks FIBERS=100 DB_POOL=20 INTERVAL=0`` and shows progress;
5. reports jobs/s, p50/p99 job time, the most MySQL connections used, and failures.

``python examples/callbacks/demo.py [--jobs N] [--fibers N] [--db-pool N]``
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from typing import List

import pymysql

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, ROOT)

from resque_compat import Resque  # noqa: E402

DATABASE = "resque_demo"
NAMESPACE = "resque-demo"
REDIS_URL = os.environ.get("DEMO_REDIS_URL", "redis://127.0.0.1:6379/0")
MYSQL = dict(host="127.0.0.1", port=3306, user="root", password="")


def percentile(values: List[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def prepare_database(count: int, url: str) -> List[int]:
    conn = pymysql.connect(**MYSQL, autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
        cur.execute(f"USE {DATABASE}")
        cur.execute("DROP TABLE IF EXISTS callbacks")
        with open(os.path.join(HERE, "schema.sql")) as fh:
            cur.execute(fh.read())
        rows = [(url, json.dumps({"event": "install", "n": n})) for n in range(count)]
        cur.executemany("INSERT INTO callbacks (url, payload) VALUES (%s, %s)", rows)
        cur.execute("SELECT id FROM callbacks ORDER BY id")
        ids = [row[0] for row in cur.fetchall()]
    conn.close()
    return ids


class ConnectionCounter(threading.Thread):
    """The most MariaDB connections to the demo database seen, sampled every 20 ms."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.conn = pymysql.connect(**MYSQL)
        self.most = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.02):
            with self.conn.cursor() as cur:
                cur.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB=%s", (DATABASE,))
                self.most = max(self.most, int(cur.fetchone()[0]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--fibers", type=int, default=100)
    parser.add_argument("--db-pool", type=int, default=20)
    opts = parser.parse_args()

    endpoint = subprocess.Popen([sys.executable, os.path.join(HERE, "endpoint.py"), "--port", "0",
                                 "--delay", "0.1"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        port = int(endpoint.stdout.readline())
        url = f"http://127.0.0.1:{port}/callback"
        print(f"endpoint: {url} (answers after 100 ms)")
        ids = prepare_database(opts.jobs, url)
        print(f"mysql: {len(ids)} rows in {DATABASE}.callbacks")

        resque = Resque.from_url(REDIS_URL, NAMESPACE)
        stale = list(resque.redis.scan_iter(match=resque.keys.pattern("*"), count=1000))
        if stale:
            resque.redis.delete(*stale)
        pipe_started = time.time()
        for chunk in range(0, len(ids), 500):  # as Rails would: Resque.enqueue(Callbacks::Deliver, id)
            for callback_id in ids[chunk:chunk + 500]:
                resque.enqueue_to("callbacks", "Callbacks::Deliver", callback_id)
        print(f"redis: enqueued {len(ids)} jobs on {NAMESPACE}:queue:callbacks in "
              f"{time.time() - pipe_started:.1f}s; first: {resque.peek('callbacks')}")

        counter = ConnectionCounter()
        counter.start()
        env = {**os.environ, "REDIS_URL": REDIS_URL, "RESQUE_NAMESPACE": NAMESPACE,
               "DATABASE_URL": f"mysql://root@127.0.0.1:3306/{DATABASE}", "DB_POOL": str(opts.db_pool),
               "LOG_FORMAT": "json", "VERBOSE": "1", "PYTHONPATH": ROOT}
        command = [sys.executable, "-m", "resque_compat", "work", "QUEUE=callbacks",
                   f"FIBERS={opts.fibers}", "INTERVAL=0", "-r", "examples.callbacks.jobs"]
        print("$ " + " ".join(["resque-py"] + command[3:]))
        started = time.time()
        # resque-py logs to stdout, as Ruby's workers do
        worker = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        seconds: List[float] = []
        reader = threading.Thread(target=_collect, args=(worker.stdout, seconds), daemon=True)
        reader.start()
        while worker.poll() is None:
            time.sleep(0.5)
            info = resque.info()
            print(f"  {time.time() - started:5.1f}s  processed {info['processed']:>5}  pending "
                  f"{info['pending']:>5}  working {info['working']:>3}/{info['workers']}  "
                  f"failed {info['failed']}  mysql connections {counter.most}", flush=True)
        reader.join(5)
        elapsed = time.time() - started
        counter.done.set()
        info = resque.info()
        delivered = _count_delivered()
        print()
        print(f"report: {info['processed']} jobs in {elapsed:.1f}s = {info['processed'] / elapsed:.0f} jobs/s "
              f"(ideal {opts.fibers / 0.1:.0f}/s: {opts.fibers} workers x 100 ms), including start-up")
        print(f"        job time p50 {percentile(seconds, 0.5) * 1000:.0f} ms, "
              f"p99 {percentile(seconds, 0.99) * 1000:.0f} ms ({len(seconds)} jobs)")
        print(f"        most MySQL connections used: {counter.most} (DB_POOL={opts.db_pool}, "
              f"{opts.fibers} workers)")
        print(f"        failures: {info['failed']}; rows delivered: {delivered}/{len(ids)}")
        return 0 if worker.returncode == 0 and info["failed"] == 0 and delivered == len(ids) else 1
    finally:
        endpoint.terminate()


def _collect(stream, seconds: List[float]) -> None:
    """Job durations from the worker's JSON log lines ("done" lines carry ``seconds``)."""
    for line in stream:
        try:
            entry = json.loads(line)
        except ValueError:
            sys.stderr.write(line)
            continue
        if "seconds" in entry:
            seconds.append(float(entry["seconds"]))
        elif entry.get("level") in ("warning", "error"):
            print(f"  worker: {entry['message']}", flush=True)


def _count_delivered() -> int:
    conn = pymysql.connect(**MYSQL, database=DATABASE)
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM callbacks WHERE status = 'delivered'")
        count = int(cur.fetchone()[0])
    conn.close()
    return count


if __name__ == "__main__":
    sys.exit(main())
