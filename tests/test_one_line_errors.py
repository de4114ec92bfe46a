"""Issue 15, "Why" items 5 and 6 (requirement 4): bad input is one clear line with exit code 2
(usage) or 1 (runtime), never a traceback.

First one test per reported case, as a real process; then every ``resque-py`` command against
a list of bad inputs, in-process through ``main()`` (the console script's own entry point).
"""
from __future__ import annotations

import os

import click
import pytest
from gevent.server import StreamServer

from resque_compat.cli.main import main, main_group
from tests.test_cli import CLI_ENV, ROOT, one_line_error, run

JOBS = os.path.join(ROOT, "tests", "jobs.py")


@pytest.fixture
def not_redis():
    """A TCP port that answers like an HTTP server, not like Redis."""
    def answer(sock, _address):
        sock.recv(1024)
        sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        sock.close()

    server = StreamServer(("127.0.0.1", 0), answer)
    server.start()
    yield f"redis://127.0.0.1:{server.server_port}/0"
    server.stop()


def test_db_index_out_of_range_is_one_line_exit_1(r):
    proc = run("info", REDIS_URL="redis://127.0.0.1:6379/99")
    assert proc.returncode == 1
    assert "DB index is out of range" in one_line_error(proc.stderr)


def test_metrics_port_out_of_range_is_one_line_exit_2():
    proc = run("work", "QUEUE=x", "-r", JOBS, METRICS_PORT="99999")
    assert proc.returncode == 2
    assert "METRICS_PORT must be at most 65535" in one_line_error(proc.stderr)


def test_pidfile_in_a_missing_directory_is_one_line_exit_2(redis_url):
    proc = run("work", "QUEUE=x", "-r", JOBS, "--redis", redis_url, PIDFILE="/nonexistent/dir/x.pid")
    assert proc.returncode == 2
    assert "/nonexistent/dir does not exist" in one_line_error(proc.stderr)


def test_a_server_that_is_not_redis_is_one_line_exit_1(not_redis):
    proc = run("info", "--redis", not_redis)
    assert proc.returncode == 1
    assert "is a Redis server" in one_line_error(proc.stderr)


def test_listen_out_to_a_missing_directory_is_one_line_exit_2(r, redis_url):
    proc = run("listen", "--out", "/nonexistent/x.wav", "--seconds", "1", "--redis", redis_url)
    assert proc.returncode == 2
    assert "/nonexistent does not exist" in one_line_error(proc.stderr)  # no "Exception ignored"


def test_a_redis_url_whose_db_is_not_a_number_is_refused():
    proc = run("info", "--redis", "redis://127.0.0.1:6379/abc")
    assert proc.returncode == 2
    assert "must be a DB number" in one_line_error(proc.stderr)


def test_a_module_given_by_path_and_by_name_loads_once(r, redis_url, tmp_path):
    package = tmp_path / "app"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "jobs.py").write_text("from resque_compat import job\n\n@job('App::Job')\ndef f():\n    pass\n")
    proc = run("work", "QUEUE=x", "INTERVAL=0", "-r", "app/jobs.py", "-r", "app.jobs", "-r", "app/jobs.py",
               "--redis", redis_url, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr


def test_the_same_file_under_two_module_names_says_so():
    from resque_compat import registry

    def perform():
        pass

    registry.job("Twice::Loaded")(perform)
    try:
        clone = type(perform)(perform.__code__, {"__name__": "elsewhere"})
        clone.__module__ = "elsewhere"
        with pytest.raises(registry.RegistryError, match="loaded twice, as modules .* two names"):
            registry.job("Twice::Loaded")(clone)
    finally:
        registry.unregister("Twice::Loaded")


def test_a_module_that_raises_at_import_names_its_file_and_line(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n\nx = 1\nraise ValueError('boom')\n")
    proc = run("work", "QUEUE=x", "-r", str(bad))
    assert proc.returncode == 2
    assert f"ValueError: boom at {bad}:4" in one_line_error(proc.stderr)
    bad.write_text("def f(:\n")
    proc = run("work", "QUEUE=x", "-r", str(bad))
    assert proc.returncode == 2 and f"at {bad}:1" in one_line_error(proc.stderr)


def test_listen_bad_pattern_is_a_usage_error(tmp_path):
    log = tmp_path / "x.log"
    log.write_text("2026-11-27T11:55:41Z done\n")
    proc = run("listen", "--from-log", str(log), "--pattern", "(", "--out", str(tmp_path / "x.wav"))
    assert proc.returncode == 2
    assert "not a valid regular expression" in one_line_error(proc.stderr)


# -- every command x bad inputs ---------------------------------------------------------------

def leaf_commands(group=main_group, path=()):
    ctx = click.Context(group)
    for name in group.list_commands(ctx):  # main_group loads each command on first use
        command = group.get_command(ctx, name)
        if isinstance(command, click.Group):
            yield from leaf_commands(command, path + (name,))
        else:
            yield path + (name,)


#: Arguments a command needs before its options are even read.
NEEDS = {
    ("enqueue",): ["q", "X", "[]"],
    ("remove-worker",): ["host:1:q:0"],
    ("failed", "show"): ["0"],
    ("failed", "retry"): ["0"],
    ("pause-queue",): ["q"],
    ("resume-queue",): ["q"],
    ("schedule", "show"): ["nightly"],
    ("schedule", "set"): ["nightly", "--every", "5m", "--queue", "q"],
    ("schedule", "remove"): ["nightly"],
    ("schedule", "enqueue-now"): ["nightly"],
    ("failed", "remove"): ["0"],
    ("work",): ["QUEUE=q", "INTERVAL=0", "-r", JOBS],
    ("pool",): ["--config", "POOL_CONFIG", "INTERVAL=0", "-r", JOBS],
    ("scheduler",): ["INTERVAL=0"],
    ("listen",): ["--seconds", "1", "--record", os.devnull],
}

COMMANDS = [path for path in leaf_commands() if path != ("version",)]

BAD = {
    "db-not-a-number": (["--redis", "redis://127.0.0.1:6379/abc"], 2),
    "db-out-of-range": (["--redis", "redis://127.0.0.1:6379/99"], 1),
    "unreachable": (["--redis", "redis://127.0.0.1:1/0"], 1),
    "not-redis": (["--redis", "NOT_REDIS"], 1),
    "bad-scheme": (["--redis", "http://127.0.0.1:6379/0"], 2),
    "unknown-option": (["--no-such-option"], 2),
}


def test_every_command_is_covered():
    assert {p[0] for p in COMMANDS} >= {"work", "enqueue", "info", "queues", "workers", "failed",
                                        "scheduler", "pool", "listen", "pause-all", "resume-all"}


@pytest.mark.parametrize("bad", sorted(BAD))
@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_bad_input_is_one_line_without_a_traceback(r, not_redis, monkeypatch, capsys, tmp_path,
                                                   command, bad):
    for name in CLI_ENV:
        monkeypatch.delenv(name, raising=False)
    pool_config = tmp_path / "resque-pool.yml"
    pool_config.write_text("q: 1\n")
    words, code = BAD[bad]
    stand_ins = {"NOT_REDIS": not_redis, "POOL_CONFIG": str(pool_config)}
    argv = [stand_ins.get(w, w) for w in [*command, *NEEDS.get(command, []), *words]]
    got = main(argv)  # an exception here is the traceback a user would have seen
    err = capsys.readouterr().err
    assert got == code, f"resque-py {' '.join(argv)} exited {got}:\n{err}"
    one_line_error(err)
