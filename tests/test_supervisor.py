"""The process pool (``resque-py pool`` / ``work PROCESSES=N``): resque-pool's YAML, and a real
supervisor with real worker processes: signals, crash restarts with back-off, recycling, HUP."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from resque_compat.errors import ConfigurationError
from resque_compat.pool import config as pool_config
from resque_compat.pool.config import Group
from tests.conftest import JOBS_FILE, REDIS_URL, ROOT
from tests.test_worker import wait_for

# -- resque-pool's configuration file -----------------------------------------------------------

RESQUE_POOL_README = """
foo: 1
bar: 2
"foo,bar,baz": 4

production:
  "foo,bar,baz": 10
"""


def test_resque_pool_example_without_and_with_its_environment():
    assert pool_config.parse(RESQUE_POOL_README, None) == {
        Group("foo"): 1, Group("bar"): 2, Group("foo,bar,baz"): 4}
    assert pool_config.parse(RESQUE_POOL_README, "development") == {
        Group("foo"): 1, Group("bar"): 2, Group("foo,bar,baz"): 4}
    # the section is merged over the top level; other sections are ignored (resque-pool)
    text = RESQUE_POOL_README + "staging:\n  foo: 7\n  extra: 1\n"
    assert pool_config.parse(text, "production") == {
        Group("foo"): 1, Group("bar"): 2, Group("foo,bar,baz"): 10}
    assert pool_config.parse(text, "staging") == {
        Group("foo"): 7, Group("bar"): 2, Group("foo,bar,baz"): 4, Group("extra"): 1}


def test_fibers_extension_in_entries_and_sections():
    text = """
critical: {count: 2, fibers: 50}
"mailers,low": {count: 1, fibers: "10..200"}
plain: 3
production:
  critical: {count: 4, fibers: 80}
  plain: 0
"""
    assert pool_config.parse(text, None) == {
        Group("critical", "50"): 2, Group("mailers,low", "10..200"): 1, Group("plain"): 3}
    assert pool_config.parse(text, "production") == {
        Group("critical", "80"): 4, Group("mailers,low", "10..200"): 1, Group("plain"): 0}
    # {count: N} alone is an entry using the pool's FIBERS
    assert pool_config.parse("x: {count: 2}", None) == {Group("x"): 2}


def test_yaml_scalars_become_queue_names_as_ruby_prints_them():
    # YAML 1.1 (Psych and PyYAML alike) reads these keys as a boolean and a number
    assert pool_config.parse("yes: 1\n12: 2\n", None) == {Group("true"): 1, Group("12"): 2}
    assert pool_config.parse("", None) == {}


@pytest.mark.parametrize("text, message", [
    ("foo: two", "needs a process count"),
    ("foo: -1", "needs a process count"),
    ("foo: true", "needs a process count"),
    ("foo: {count: 1, fibers: 0}", "FIBERS"),
    ("foo: {count: 1, fibers: 9..3}", "MIN <= MAX"),
    ("- foo\n- bar", "must map queue lists"),
    ("foo: [1", "not valid YAML"),
    ('"": 1', "no queue list"),
    ("foo: <%= ENV['N'] %>", "ERB"),
])
def test_bad_configuration_is_refused_with_the_fix(text, message):
    with pytest.raises(ConfigurationError, match=message):
        pool_config.parse(text, None)


def test_config_file_search_follows_resque_pool(tmp_path):
    with pytest.raises(ConfigurationError, match="config/resque-pool.yml"):
        pool_config.find_config(None, str(tmp_path))
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "resque-pool.yml").write_text("a: 1")
    assert pool_config.find_config(None, str(tmp_path)).endswith("config/resque-pool.yml")
    (tmp_path / "resque-pool.yml").write_text("b: 1")
    assert pool_config.find_config(None, str(tmp_path)) == str(tmp_path / "resque-pool.yml")
    assert pool_config.find_config(str(tmp_path / "config" / "resque-pool.yml")).endswith("config/resque-pool.yml")
    with pytest.raises(ConfigurationError, match="does not exist"):
        pool_config.find_config(str(tmp_path / "nope.yml"))


# -- a real supervisor ----------------------------------------------------------------------------

class Pool:
    """``python -m resque_compat <args>`` as a supervisor; its children are read from /proc."""

    def __init__(self, *args, env=None, cwd=ROOT):
        full_env = {k: v for k, v in os.environ.items()
                    if k not in ("QUEUE", "QUEUES", "FIBERS", "INTERVAL", "PROCESSES", "RAILS_ENV",
                                 "RACK_ENV", "RESQUE_ENV", "RESQUE_POOL_CONFIG")}
        full_env.update({"REDIS_URL": REDIS_URL, "PYTHONUNBUFFERED": "1", **(env or {})})
        self.proc = subprocess.Popen([sys.executable, "-m", "resque_compat", *args], env=full_env,
                                     cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.pid = self.proc.pid
        self.seen_children: set = set()

    def children(self) -> list:
        try:
            with open(f"/proc/{self.pid}/task/{self.pid}/children") as fh:
                pids = [int(p) for p in fh.read().split()]
        except OSError:
            return []
        self.seen_children.update(pids)
        return pids

    def wait_children(self, test, timeout=15.0) -> list:
        deadline = time.time() + timeout
        while time.time() < deadline:
            pids = self.children()
            if test(pids):
                return pids
            assert self.proc.poll() is None, self.output()
            time.sleep(0.005)
        raise AssertionError(f"children {self.children()} never matched; output:\n{self.output()}")

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout=20.0) -> int:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"supervisor still running after {timeout}s:\n{self.output()}")
        return self.proc.returncode

    def output(self) -> str:
        if self.proc.poll() is None:
            self.kill()
        return self.proc.stdout.read()

    def kill(self):
        for pid in self.children():
            _kill(pid)
        _kill(self.pid)
        self.proc.wait(10)


def _kill(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture
def start_pool(r):
    pools = []

    def start(*args, **kwargs):
        p = Pool(*args, **kwargs)
        pools.append(p)
        return p

    yield start
    for p in pools:
        if p.proc.poll() is None:
            p.kill()
        for pid in p.seen_children:  # a child left behind by a failed test
            _kill(pid)


def registered(r, pid=None) -> dict:
    """{pid: sorted worker ids} from the workers set (only ``pid`` if given)."""
    out: dict = {}
    for wid in r.smembers("resque:workers"):
        p = int(wid.split(":")[1])
        if pid is None or p == pid:
            out.setdefault(p, []).append(wid)
    return {p: sorted(ids) for p, ids in out.items()}


def title(pid) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as fh:
        return fh.read().split(b"\0")[0].decode()


def enqueue(r, cls, *args, queue="critical"):
    r.sadd("resque:queues", queue)
    r.rpush(f"resque:queue:{queue}", json.dumps({"class": cls, "args": list(args)}))


def test_work_processes_forwards_every_signal_with_resques_meaning(r, start_pool):
    pool = start_pool("work", "QUEUE=critical", "FIBERS=2", "PROCESSES=2", "-r", JOBS_FILE)
    kids = pool.wait_children(lambda p: len(p) == 2)
    wait_for(lambda: len(registered(r)) == 2, what="both processes registered")
    # each child is its own Resque process: its own pid in two slot ids, the supervisor in none
    assert set(registered(r)) == set(kids) and all(len(ids) == 2 for ids in registered(r).values())
    assert title(pool.pid).startswith("resque-pool-py: managing 2 processes")

    pool.signal(signal.SIGUSR2)
    wait_for(lambda: all(title(k).endswith("Paused") for k in kids), what="children paused")
    enqueue(r, "OkJob", "while paused")
    assert r.blpop("test:ran", timeout=0.5) is None
    pool.signal(signal.SIGCONT)
    assert r.blpop("test:ran", timeout=10) is not None

    enqueue(r, "WaitJob", "a")
    enqueue(r, "WaitJob", "b")
    wait_for(lambda: r.llen("test:started") == 2, what="both jobs started")
    pool.signal(signal.SIGUSR1)  # kill in-flight jobs, keep working
    wait_for(lambda: r.llen("resque:failed") == 2, what="two killed jobs")
    assert {json.loads(f)["exception"] for f in r.lrange("resque:failed", 0, -1)} == {"Resque::DirtyExit"}

    enqueue(r, "WaitJob", "c")
    wait_for(lambda: r.llen("test:started") == 3, what="job c started")
    busy = [p for p in kids if r.mget([f"resque:worker:{w}" for w in registered(r, p).get(p, [])]) != [None, None]]
    pool.signal(signal.SIGQUIT)  # finish in-flight jobs, then exit
    idle = [p for p in kids if p not in busy]
    wait_for(lambda: not registered(r, idle[0]), what="the idle child unregistered")
    assert pool.proc.poll() is None and registered(r, busy[0])  # still waiting for job c
    r.rpush("test:release:c", "go")
    assert pool.wait() == 0
    assert r.lrange("test:finished", 0, -1) == ["c"]
    assert r.llen("resque:failed") == 2 and registered(r) == {}
    assert "SIGQUIT" in pool.output()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_term_and_int_give_jobs_the_grace_period_then_stop_everything(r, start_pool, sig):
    pool = start_pool("work", "QUEUE=critical", "PROCESSES=2", "-r", JOBS_FILE,
                      env={"RESQUE_TERM_TIMEOUT": "0.3"})
    wait_for(lambda: len(registered(r)) == 2, what="both processes registered")
    enqueue(r, "WaitJob", "never-released")
    wait_for(lambda: r.llen("test:started") == 1, what="job started")
    started = time.time()
    pool.signal(sig)
    assert pool.wait(15) == 0
    assert time.time() - started < 8
    failure = json.loads(r.lindex("resque:failed", 0))
    assert failure["exception"] == "Resque::TermException" and failure["payload"]["args"] == ["never-released"]
    assert registered(r) == {} and pool.children() == []


def test_a_crashed_child_is_restarted_with_doubling_back_off(r, start_pool):
    pool = start_pool("work", "QUEUE=critical", "PROCESSES=2", "-r", JOBS_FILE)
    kids = pool.wait_children(lambda p: len(p) == 2)
    delays = []
    victim = kids[0]
    for _ in range(3):  # three crashes in a row, each before the child ran STABLE_AFTER
        others = set(pool.children()) - {victim}
        os.kill(victim, signal.SIGKILL)
        killed = time.time()
        now = pool.wait_children(lambda p: len(set(p) - others - {victim}) == 1, timeout=10)
        delays.append(time.time() - killed)
        victim = (set(now) - others).pop()
    # 0.5 s, 1 s, 2 s (BACKOFF_FIRST doubling), plus a few ms of reaping and forking
    for got, expected in zip(delays, (0.5, 1.0, 2.0)):
        assert expected - 0.05 <= got <= expected + 0.6, delays
    # the survivor was never touched, and the replacement really works
    assert kids[1] in pool.children()
    wait_for(lambda: victim in registered(r), what="the last replacement registered")
    enqueue(r, "OkJob", 1)
    assert r.blpop("test:ran", timeout=10) is not None
    pool.signal(signal.SIGQUIT)
    assert pool.wait() == 0
    out = pool.output()
    assert out.count("was killed by SIGKILL") == 3
    assert "restarting it in 0.5s" in out and "restarting it in 2.0s" in out


def test_recycled_children_are_replaced_while_they_drain_and_no_job_is_lost(r, start_pool):
    pool = start_pool("work", "QUEUE=pool", "FIBERS=2", "PROCESSES=2", "MAX_JOBS=3", "-r", JOBS_FILE)
    pool.wait_children(lambda p: len(p) == 2)
    for n in range(18):
        enqueue(r, "PidJob", f"j{n}", 0.3, queue="pool")
    counts = []
    deadline = time.time() + 40
    while r.llen("test:pids") < 18 and time.time() < deadline:
        counts.append(len(pool.children()))
        time.sleep(0.002)
    runs = [entry.split() for entry in r.lrange("test:pids", 0, -1)]
    assert sorted(tag for tag, _ in runs) == sorted(f"j{n}" for n in range(18))  # each exactly once
    assert len({pid for _, pid in runs}) >= 6  # 18 jobs / MAX_JOBS=3: recycled after three each
    # never fewer than two processes; a third while a recycled one finishes its last jobs
    assert min(counts) >= 2 and max(counts) >= 3, counts
    pool.signal(signal.SIGQUIT)
    assert pool.wait() == 0
    out = pool.output()
    assert out.count("is recycling itself") >= 4 and "restarting it in" not in out
    assert r.llen("resque:failed") == 0 and registered(r) == {}


def write_config(path, text):
    tmp = str(path) + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)  # the supervisor never reads half a file


def test_pool_reads_resque_pool_yml_for_its_environment_and_hup_reloads_it(r, start_pool, tmp_path):
    config = tmp_path / "resque-pool.yml"
    write_config(config, "critical: 1\nlow: 5\nproduction:\n  low: 0\n  \"critical,low\": {count: 1, fibers: 3}\n")
    pool = start_pool("pool", "-r", JOBS_FILE, "FIBERS=2", env={"RAILS_ENV": "production"},
                      cwd=str(tmp_path))  # found as ./resque-pool.yml, resque-pool's default
    wait_for(lambda: len(registered(r)) == 2, what="two processes")
    ids = sorted(sum(registered(r).values(), []))
    by_queue = sorted(i.split(":")[2] for i in ids)
    assert by_queue == ["critical", "critical", "critical,low", "critical,low", "critical,low"]
    first = registered(r)

    # HUP: one more critical, low back on, the critical,low group changed (fibers 3 -> 1)
    write_config(config, "critical: 2\nlow: 1\n\"critical,low\": {count: 1, fibers: 1}\n"
                 "production:\n  \"critical,low\": {count: 1, fibers: 1}\n")
    pool.signal(signal.SIGHUP)

    def settled():
        now = registered(r)
        groups = sorted((ids[0].split(":")[2], len(ids)) for ids in now.values())
        return groups == [("critical", 2), ("critical", 2), ("critical,low", 1), ("low", 2)] and now
    now = wait_for(settled, timeout=20, what="the new configuration")
    # the unchanged critical process kept running; the changed group got a new process
    old_critical = [p for p, ids in first.items() if ids[0].split(":")[2] == "critical"]
    old_mixed = [p for p, ids in first.items() if ids[0].split(":")[2] == "critical,low"]
    assert old_critical[0] in now and old_mixed[0] not in now

    # a broken file on HUP keeps the running configuration
    write_config(config, "critical: [")
    pool.signal(signal.SIGHUP)
    wait_for(lambda: "keeping the running configuration" in _peek(pool), what="the error logged")
    assert registered(r) == now

    write_config(config, "critical: 1\n")  # shrink: surplus processes get QUIT
    pool.signal(signal.SIGHUP)
    wait_for(lambda: len(registered(r)) == 1, what="one process left")
    assert list(registered(r)) == [old_critical[0]]  # the newest surplus process went first

    write_config(config, "critical: 0\n")  # nothing to run: the pool waits for the next HUP
    pool.signal(signal.SIGHUP)
    wait_for(lambda: not registered(r) and not pool.children(), what="every process stopped")
    assert pool.proc.poll() is None
    write_config(config, "low: 1\n")
    pool.signal(signal.SIGHUP)
    wait_for(lambda: [ids[0].split(":")[2] for ids in registered(r).values()] == ["low"], what="low")
    pool.signal(signal.SIGTERM)
    assert pool.wait() == 0 and registered(r) == {}


_peeked: dict = {}


def _peek(pool) -> str:
    """Output so far without waiting for the end (a non-blocking read of the pipe)."""
    fd = pool.proc.stdout.fileno()
    os.set_blocking(fd, False)
    try:
        chunk = os.read(fd, 1 << 16)
    except BlockingIOError:
        chunk = b""
    finally:
        os.set_blocking(fd, True)
    _peeked[pool.pid] = _peeked.get(pool.pid, "") + chunk.decode(errors="replace")
    return _peeked[pool.pid]


def test_children_quit_when_the_supervisor_is_killed(r, start_pool):
    pool = start_pool("work", "QUEUE=critical", "PROCESSES=2", "-r", JOBS_FILE)
    kids = pool.wait_children(lambda p: len(p) == 2)
    wait_for(lambda: len(registered(r)) == 2, what="both registered")
    os.kill(pool.pid, signal.SIGKILL)
    pool.proc.wait(5)
    wait_for(lambda: registered(r) == {}, timeout=10, what="orphans unregistered")  # QUIT: clean exit
    wait_for(lambda: not any(os.path.exists(f"/proc/{k}") for k in kids), what="orphans gone")


def test_a_configuration_error_in_the_children_is_not_restarted(r, start_pool, tmp_path):
    pool = start_pool("work", "QUEUE=critical", "PROCESSES=2", "-r", str(tmp_path / "missing.py"))
    assert pool.wait(20) == 2
    out = pool.output()
    assert out.count("cannot load jobs from") == 2 and out.count("not restarting it") == 2
    assert "restarting it in" not in out


def test_interval_zero_drains_then_the_pool_exits(r, start_pool):
    for n in range(20):
        enqueue(r, "OkJob", n)
    pool = start_pool("work", "QUEUE=critical", "FIBERS=3", "PROCESSES=2", "INTERVAL=0", "-r", JOBS_FILE)
    assert pool.wait(20) == 0
    assert r.llen("test:ran") == 20 and registered(r) == {}
    assert pool.output().count("drained its queues") == 2


def test_each_child_serves_metrics_on_its_own_port(r, start_pool):
    import socket
    import urllib.request

    def free_pair() -> int:  # two consecutive free ports
        while True:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", 0))
                try:
                    b.bind(("127.0.0.1", a.getsockname()[1] + 1))
                except OSError:
                    continue
                return a.getsockname()[1]
    base = free_pair()
    pool = start_pool("work", "QUEUE=critical", "PROCESSES=2", f"METRICS_PORT={base}", "-r", JOBS_FILE,
                      env={"METRICS_BIND": "127.0.0.1"})
    kids = pool.wait_children(lambda p: len(p) == 2)
    wait_for(lambda: len(registered(r)) == 2, what="both registered")

    def pid_on(port):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        return [line for line in text.splitlines() if line.startswith("resque_workers")]
    assert pid_on(base) and pid_on(base + 1)  # both answer: neither child failed to bind
    assert sorted(pool.children()) == sorted(kids)
    pool.signal(signal.SIGQUIT)
    assert pool.wait() == 0
    assert "not restarting" not in pool.output()
