"""Issue 15, "Why" items 1 and 2: a job module's own logger works with no setup, in the
worker's format and levels; a worker with no registered job refuses to start.

Each test writes a job module as a user would (``log = logging.getLogger(__name__)``), runs a
real ``resque-py work ... INTERVAL=0`` process on it and reads what it printed.
"""
from __future__ import annotations

import json
import textwrap

import pytest

from resque_compat.wire import codec
from tests.test_cli import run

JOB_MODULE = textwrap.dedent('''
    import logging

    from resque_compat import job

    log = logging.getLogger(__name__)


    @job("Demo::Log", queue="demo")
    def demo(n):
        log.debug("debug line %s", n)
        log.info("info line %s", n)
        log.warning("warning line %s", n)
''')


@pytest.fixture
def job_file(tmp_path):
    path = tmp_path / "logjobs.py"
    path.write_text(JOB_MODULE)
    return str(path)


def work(redis_url, job_file, *words, **env):
    proc = run("work", "QUEUE=demo", "INTERVAL=0", "-r", job_file, "--redis", redis_url, *words, **env)
    assert proc.returncode == 0, proc.stderr
    return proc


def enqueue(r, n=1):
    r.rpush("resque:queue:demo", codec.encode({"class": "Demo::Log", "args": [n]}))


def test_job_logger_levels_follow_verbose_and_vverbose(r, redis_url, job_file):
    enqueue(r)
    quiet = work(redis_url, job_file).stdout
    assert "warning line 1" in quiet and "info line" not in quiet and "debug line" not in quiet
    enqueue(r)
    verbose = work(redis_url, job_file, "VERBOSE=1").stdout
    assert "info line 1" in verbose and "warning line 1" in verbose and "debug line" not in verbose
    enqueue(r)
    vverbose = work(redis_url, job_file, "--vverbose").stdout
    assert "debug line 1" in vverbose and "info line 1" in vverbose


def test_job_lines_name_their_time_level_and_logger(r, redis_url, job_file):
    enqueue(r)
    out = work(redis_url, job_file).stdout
    line = next(line for line in out.splitlines() if "warning line 1" in line)
    # *** [2026-12-07 06:40:01] WARNING resque_jobs_logjobs: warning line 1
    assert line.startswith("*** [20") and "WARNING resque_jobs_logjobs: warning line 1" in line
    enqueue(r)
    out = work(redis_url, job_file, "VVERBOSE=1").stdout
    line = next(line for line in out.splitlines() if "info line 1" in line)
    assert line.startswith("** [") and "INFO resque_jobs_logjobs: info line 1" in line
    # our own routine lines keep Ruby's exact format
    assert any(line.startswith("** [") and "done: (demo) Demo::Log" in line for line in out.splitlines())


def test_json_format_applies_to_job_lines_with_the_job_attached(r, redis_url, job_file):
    enqueue(r, 7)
    out = work(redis_url, job_file, "VERBOSE=1", "--log-format", "json").stdout
    entries = [json.loads(line) for line in out.splitlines()]  # every line is JSON
    info = next(e for e in entries if e["message"] == "info line 7")
    assert info["level"] == "info" and info["logger"] == "resque_jobs_logjobs"
    assert info["queue"] == "demo" and info["job_class"] == "Demo::Log"
    assert info["worker"].endswith(":demo:0")
    for said in ("got: ", "done: "):  # the worker's own lines about the job name it too
        line = next(e for e in entries if e["message"].startswith(said))
        assert (line["queue"], line["job_class"]) == ("demo", "Demo::Log")
        assert line["worker"] == info["worker"]


def test_a_job_modules_own_logging_config_wins(r, redis_url, tmp_path):
    path = tmp_path / "ownlog.py"
    path.write_text(JOB_MODULE + textwrap.dedent('''
        import sys
        logging.basicConfig(force=True, stream=sys.stdout, level=logging.INFO, format="MINE %(message)s")
    '''))
    enqueue(r)
    out = work(redis_url, str(path)).stdout
    assert "MINE info line 1" in out and "MINE warning line 1" in out


# -- 2: no registered job ------------------------------------------------------------------------

def test_work_with_no_registered_job_refuses_to_start(r, redis_url, tmp_path):
    enqueue(r)
    proc = run("work", "QUEUE=demo", "INTERVAL=0", "--redis", redis_url)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "-r" in lines[0] and "no job is registered" in lines[0]
    assert r.llen("resque:queue:demo") == 1 and r.llen("resque:failed") == 0  # nothing drained
    empty = tmp_path / "empty.py"
    empty.write_text("X = 1\n")
    proc = run("work", "QUEUE=demo", "INTERVAL=0", "-r", str(empty), "--redis", redis_url)
    assert proc.returncode == 2 and "no job is registered" in proc.stderr


def test_allow_no_jobs_opts_in(r, redis_url):
    proc = run("work", "QUEUE=demo", "INTERVAL=0", "--allow-no-jobs", "--redis", redis_url)
    assert proc.returncode == 0, proc.stderr
    proc = run("work", "QUEUE=demo", "INTERVAL=0", "--redis", redis_url, ALLOW_NO_JOBS="1")
    assert proc.returncode == 0, proc.stderr
