"""Issue 15, "Why" items 3, 4 and 8: the CLI traps a new user falls into in the first hour.

Each test reproduces one reported trap with a real ``resque-py`` process (or the in-process CLI
where only parsing is involved) and asserts what the user should now see.
"""
from __future__ import annotations

import os

import pytest

from resque_compat.cli.admin import natural_key
from resque_compat.settings import Settings
from tests.test_cli import ROOT, invoke, one_line_error, run

JOBS = os.path.join(ROOT, "tests", "jobs.py")


# -- 3: --verbose and --vverbose are flags ------------------------------------------------------

@pytest.mark.parametrize("flag", ["--verbose", "--vverbose"])
def test_verbose_flag_does_not_swallow_the_next_word(r, redis_url, flag):
    # Before: --verbose took INTERVAL=0 as its value, so the worker polled for ever.
    proc = run("work", "QUEUE=demo", flag, "INTERVAL=0", "-r", JOBS, "--redis", redis_url)
    assert proc.returncode == 0, proc.stderr
    assert "Exiting" in proc.stdout + proc.stderr


@pytest.mark.parametrize("flag", ["--verbose", "--vverbose"])
def test_verbose_flag_as_the_last_word(r, redis_url, flag):
    proc = run("work", "QUEUE=demo", "INTERVAL=0", "-r", JOBS, "--redis", redis_url, flag)
    assert proc.returncode == 0, proc.stderr


# -- 4: global options after the subcommand ------------------------------------------------------

def test_redis_and_namespace_after_the_subcommand(r, redis_url):
    result = invoke("enqueue", "q", "X", "[]", "--redis", redis_url, "--namespace", "other")
    assert result.exit_code == 0, result.output
    assert r.llen("other:queue:q") == 1
    result = invoke("queues", "--namespace", "other", "--redis", redis_url)
    assert result.exit_code == 0 and "q\t1" in result.output
    proc = run("work", "QUEUE=q", "INTERVAL=0", "-r", JOBS, "--redis", redis_url, "--namespace", "other")
    assert proc.returncode == 0, proc.stderr
    assert r.llen("other:queue:q") == 0 and r.llen("other:failed") == 1  # X is not registered


# -- 8: Ruby habits ---------------------------------------------------------------------------

def test_version_option():
    for flag in ("--version", "-V"):
        proc = run(flag)
        assert proc.returncode == 0
        assert proc.stdout.startswith("resque-py ") and "Resque 3.0" in proc.stdout


def test_did_you_mean_for_a_setting_a_command_and_an_option():
    result = invoke("work", "QUEUE=x", "FIBRES=2")
    assert result.exit_code == 2
    assert "did you mean FIBERS?" in one_line_error(result.stderr)
    proc = run("wrok")
    assert proc.returncode == 2 and "Did you mean work?" in one_line_error(proc.stderr)
    proc = run("work", "--fibres", "2")
    assert proc.returncode == 2 and "--fibers" in one_line_error(proc.stderr)


def test_unknown_setting_does_not_list_internal_variables():
    result = invoke("work", "QUEUE=x", "ZZZZ=1")
    line = one_line_error(result.stderr)
    assert "FIBERS" in line and "RESQUE_SUPERVISOR_FD" not in line


def test_rubys_count_term_child_and_run_at_exit_hooks_are_accepted():
    settings = Settings.load(["QUEUE=x", "COUNT=2", "TERM_CHILD=1", "RUN_AT_EXIT_HOOKS=1"], environ={})
    assert settings.processes == 2
    assert Settings.load([], environ={"COUNT": "3"}).processes == 3
    assert Settings.load(["PROCESSES=4", "COUNT=3"], environ={}).processes == 4
    assert Settings.load([], environ={"TERM_CHILD": "1", "LOGGING": "1"}).log_level == "verbose"


def test_background_is_refused_with_what_to_use_instead():
    result = invoke("work", "QUEUE=x", "BACKGROUND=yes")
    assert result.exit_code == 2
    assert "systemd" in one_line_error(result.stderr)
    result = invoke("work", "QUEUE=x", BACKGROUND="yes")
    assert result.exit_code == 2 and "BACKGROUND" in one_line_error(result.stderr)


def test_workers_sorts_slots_naturally(r, redis_url):
    ids = [f"host:42:q:{slot}" for slot in (0, 1, 2, 10, 11, 100)]
    r.sadd("resque:workers", *ids)
    result = invoke("--redis", redis_url, "workers")
    assert result.exit_code == 0, result.output
    listed = [line.split()[0] for line in result.output.splitlines()[1:-1]]
    assert listed == ids
    assert sorted(["a:9:q:10", "a:10:q:2", "a:9:q:9"], key=natural_key) == ["a:9:q:9", "a:9:q:10", "a:10:q:2"]
