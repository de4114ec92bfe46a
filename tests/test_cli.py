"""resque-py: the command line through click's CliRunner and as a real process, plus the
packaging promise that ``import resque_compat`` loads nothing heavy (STYLE.md practice 7)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import click
import pytest
from click.testing import CliRunner

from resque_compat.cli.main import main_group
from resque_compat.settings import SETTINGS
from resque_compat.version import RESQUE_VERSION, __version__
from tests.keyspace import dump, load_fixture

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESQUE_PY = os.path.join(os.path.dirname(sys.executable), "resque-py")
DEAD_REDIS = "redis://127.0.0.1:1/0"

#: Every variable the CLI reads; tests start from none of them set.
CLI_ENV = sorted({s.env for s in SETTINGS} | {"QUEUES", "REDIS_URL", "RESQUE_NAMESPACE",
                                               "RAILS_ENV", "RACK_ENV"})


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in CLI_ENV}
    env.update(extra)
    return env


def invoke(*args, **env):
    """Run the CLI in-process with a clean environment plus ``env``."""
    runner = CliRunner()
    full = {name: None for name in CLI_ENV}
    full.update(env)
    return runner.invoke(main_group, list(args), env=full, prog_name="resque-py")


def run(*args, module=False, cwd=ROOT, **env):
    """Run the CLI as a real process (the installed script, or ``python -m resque_compat``)."""
    cmd = [sys.executable, "-m", "resque_compat"] if module else [RESQUE_PY]
    return subprocess.run(cmd + list(args), env=clean_env(**env), cwd=cwd, capture_output=True,
                          text=True, timeout=30)


def one_line_error(text):
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one error line, got:\n{text}"
    assert "Traceback" not in text
    assert lines[0].startswith("resque-py: ")
    return lines[0]


# -- packaging --------------------------------------------------------------------------------------

def test_import_loads_no_redis_ssl_requests_or_pymysql():
    code = (
        "import sys, json; import resque_compat;"
        "import resque_compat.wire.codec, resque_compat.wire.records, resque_compat.wire.keys, resque_compat.wire.queues,"
        " resque_compat.settings, resque_compat.registry, resque_compat.errors;"
        "print(json.dumps(sorted(m for m in ('redis', 'ssl', 'requests', 'pymysql', 'gevent')"
        " if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_public_names_load_lazily():
    code = (
        "import sys; import resque_compat as rc; assert 'redis' not in sys.modules;"
        "from resque_compat import job, Settings, DontPerform, ResqueError;"
        "assert 'redis' not in sys.modules; rc.Resque; assert 'redis' in sys.modules;"
        "print(rc.__version__)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == __version__
    out = subprocess.run([sys.executable, "-c", "import resque_compat; resque_compat.nope"],
                         cwd=ROOT, capture_output=True, text=True)
    assert "AttributeError" in out.stderr and "nope" in out.stderr


# -- help and version ----------------------------------------------------------------------------------

COMMANDS = [
    "doctor",
    "enqueue",
    "failed",
    "info",
    "listen",
    "pause-all",
    "pause-queue",
    "pool",
    "queues",
    "remove-worker",
    "resume-all",
    "resume-queue",
    "schedule",
    "scheduler",
    "version",
    "work",
    "workers",
]


@pytest.mark.parametrize("how", ["runner", "script", "module"])
def test_help_lists_every_command(how):
    if how == "runner":
        result = invoke("--help")
        code, out = result.exit_code, result.stdout
    else:
        proc = run("--help", module=(how == "module"))
        code, out = proc.returncode, proc.stdout
    assert code == 0
    section = out.split("Commands:")[1].split("\n\n")[0]
    listed = re.findall(r"^  ([\w-]+)\s", section, re.M)
    assert sorted(listed) == COMMANDS
    assert "REDIS_URL" in out and "RESQUE_NAMESPACE" in out


def test_work_help_documents_every_option_with_its_env_name():
    result = invoke("work", "--help")
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    work = main_group.get_command(click.Context(main_group), "work")
    for param in work.params:
        if not isinstance(param, click.Option) or param.name == "help":
            continue
        assert param.help and "env" in param.help, f"option {param.opts} does not name its env variable"
    work_rows = [s for s in SETTINGS if s.command == "work"]  # scheduler rows: scheduler --help
    for name in sorted({s.env for s in work_rows} | {"QUEUES"}):
        assert re.search(rf"\b{name}\b", text), f"{name} is not documented in work --help"
    for row in work_rows:
        if row.option:
            assert row.option in text
    assert "Exit codes" in text


def test_version():
    result = invoke("version")
    assert result.exit_code == 0
    assert __version__ in result.stdout and RESQUE_VERSION in result.stdout
    proc = run("version")
    assert proc.returncode == 0 and proc.stdout == result.stdout


# -- enqueue / info / queues -------------------------------------------------------------------------

def test_enqueue_writes_rubys_exact_bytes(r, redis_url):
    result = invoke("--redis", redis_url, "enqueue", "critical", "Callbacks::Deliver", '[1,"x"]')
    assert result.exit_code == 0, result.output
    assert dump(r) == {
        "resque:queue:critical": {"type": "list", "value": ['{"class":"Callbacks::Deliver","args":[1,"x"]}']},
        "resque:queues": {"type": "set", "value": ["critical"]},
    }


def test_enqueue_as_a_real_process_reproduces_a_fixture_01_item(r, redis_url):
    proc = run("enqueue", "low", "CriticalJob", '["to-low", 1]', REDIS_URL=redis_url)
    assert proc.returncode == 0, proc.stderr
    proc = run("enqueue", "low", "Jobs::Nested", '["nested"]', module=True, REDIS_URL=redis_url)
    assert proc.returncode == 0, proc.stderr
    fx = load_fixture("01_enqueue.json")["keys"]
    assert r.lrange("resque:queue:low", 0, -1) == fx["resque:queue:low"]["value"]


def test_enqueue_default_args_and_float_bytes(r, redis_url):
    assert invoke("--redis", redis_url, "enqueue", "q", "A").exit_code == 0
    assert invoke("--redis", redis_url, "enqueue", "q", "B", "[1e20, 1.0, 2e-7]").exit_code == 0
    assert r.lrange("resque:queue:q", 0, -1) == ['{"class":"A","args":[]}',
                                                 '{"class":"B","args":[1.0e+20,1.0,2.0e-07]}']


@pytest.mark.parametrize("args_json", ["[1,", "{'a':1}", "[NaN]", "nope"])
def test_enqueue_with_bad_args_json_is_one_clear_line(r, redis_url, args_json):
    result = invoke("--redis", redis_url, "enqueue", "q", "X", args_json)
    assert result.exit_code == 2
    line = one_line_error(result.stderr)
    assert "ARGS_JSON" in line
    assert r.keys("*") == []


@pytest.mark.parametrize("args_json", ['{"a":1}', "1", '"x"'])
def test_enqueue_args_must_be_an_array(r, redis_url, args_json):
    result = invoke("--redis", redis_url, "enqueue", "q", "X", args_json)
    assert result.exit_code == 2
    assert "JSON array" in one_line_error(result.stderr)
    assert r.keys("*") == []


def test_enqueue_refuses_an_empty_class(r, redis_url):
    result = invoke("--redis", redis_url, "enqueue", "q", "", "[]")
    assert result.exit_code == 2
    assert "Jobs must be given a class." in one_line_error(result.stderr)
    assert r.keys("*") == []


def test_namespace_option_and_environment(r, redis_url):
    assert invoke("enqueue", "x", "X", REDIS_URL=redis_url, RESQUE_NAMESPACE="myns").exit_code == 0
    assert invoke("--namespace", "resque:GitHub", "enqueue", "x", "Y", REDIS_URL=redis_url,
                  RESQUE_NAMESPACE="myns").exit_code == 0
    assert r.lrange("myns:queue:x", 0, -1) == ['{"class":"X","args":[]}']
    assert r.lrange("resque:GitHub:queue:x", 0, -1) == ['{"class":"Y","args":[]}']
    assert not r.exists("resque:queue:x")


def test_redis_option_beats_the_environment(r, redis_url):
    result = invoke("--redis", redis_url, "enqueue", "x", "X", REDIS_URL=DEAD_REDIS)
    assert result.exit_code == 0, result.output
    assert r.llen("resque:queue:x") == 1


def _info_text(stdout):
    return dict(line.strip().split(": ", 1) for line in stdout.splitlines() if line.strip())


def test_info_and_queues_report_fixture_04(r, redis_url):
    from tests.test_client import load_fixture_into

    load_fixture_into(r, "04_processed.json")
    result = invoke("--redis", redis_url, "info", "--json", RAILS_ENV="staging")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "pending": 0, "processed": 4, "queues": 1, "workers": 1, "working": 0, "failed": 1,
        "servers": [redis_url], "environment": "staging",
    }
    result = invoke("--redis", redis_url, "info")
    assert result.exit_code == 0
    assert _info_text(result.stdout) == {
        "pending": "0", "processed": "4", "queues": "1", "workers": "1", "working": "0",
        "failed": "1", "servers": redis_url, "environment": "development",
    }


def test_queues_lists_names_and_sizes(r, redis_url):
    from tests.test_client import load_fixture_into

    load_fixture_into(r, "07b_wildcard_priority_and_exclusion.json")
    proc = run("queues", REDIS_URL=redis_url)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["alpha\t0\t-", "beta\t2\t?", "mid\t0\t-", "zeta\t0\t-"]
    proc = run("info", "--json", REDIS_URL=redis_url)
    assert json.loads(proc.stdout)["pending"] == 2


# -- errors ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [["info"], ["info", "--json"], ["queues"], ["enqueue", "q", "X", "[]"]])
def test_unreachable_redis_is_one_line_with_the_url_within_two_seconds(command):
    started = time.monotonic()
    result = invoke("--redis", DEAD_REDIS, *command)
    elapsed = time.monotonic() - started
    assert result.exit_code == 1
    line = one_line_error(result.stderr)
    assert "cannot reach Redis" in line and DEAD_REDIS in line
    assert elapsed < 2.0


def test_unreachable_redis_as_a_real_process():
    started = time.monotonic()
    proc = run("info", REDIS_URL=DEAD_REDIS)
    elapsed = time.monotonic() - started
    assert proc.returncode == 1
    line = one_line_error(proc.stderr)
    assert "cannot reach Redis" in line and DEAD_REDIS in line
    assert elapsed < 4.0  # 2 s for Redis plus the interpreter's start-up, generously


@pytest.mark.parametrize("url", ["localhost:6379", "http://127.0.0.1:6379/0", "redis://127.0.0.1:port/0"])
def test_malformed_redis_url_is_one_clear_line(url):
    result = invoke("--redis", url, "info")
    assert result.exit_code == 2
    line = one_line_error(result.stderr)
    assert url in line and ("REDIS_URL" in line or "--redis" in line)


def test_work_without_a_queue_mentions_queue_and_exits_2():
    proc = run("work", "-r", os.path.join(ROOT, "tests", "jobs.py"))
    assert proc.returncode == 2
    assert "QUEUE" in one_line_error(proc.stderr)
    result = invoke("work")
    assert result.exit_code == 2
    assert "QUEUE" in one_line_error(result.stderr)


def test_work_with_a_missing_job_module_is_one_clear_line():
    proc = run("work", "QUEUE=x", "-r", "no_such_module_xyz")
    assert proc.returncode == 2
    line = one_line_error(proc.stderr)
    assert "no_such_module_xyz" in line and "cannot load jobs" in line
    proc = run("work", "QUEUE=x", "-r", "no/such/file.py")
    assert proc.returncode == 2
    assert "no such file" in one_line_error(proc.stderr)


@pytest.mark.parametrize("word, text", [
    ("BOGUS=1", "unknown setting 'BOGUS'"),
    ("critical", "KEY=VALUE"),
    ("FIBERS=lots", "FIBERS"),
    ("INTERVAL=-1", "INTERVAL"),
])
def test_work_with_a_bad_word_is_one_clear_line(word, text):
    result = invoke("work", "QUEUE=x", word)
    assert result.exit_code == 2
    assert text in one_line_error(result.stderr)


def test_work_with_a_bad_option_or_env_value_names_it():
    result = invoke("work", "QUEUE=x", "--fibers", "0")
    assert result.exit_code == 2
    assert "FIBERS" in one_line_error(result.stderr)
    result = invoke("work", "QUEUE=x", RESQUE_HEARTBEAT_INTERVAL="often")
    assert result.exit_code == 2
    assert "RESQUE_HEARTBEAT_INTERVAL" in one_line_error(result.stderr)


def test_work_against_unreachable_redis_exits_1_with_the_url():
    proc = run("work", "QUEUE=x", "-r", os.path.join(ROOT, "tests", "jobs.py"), REDIS_URL=DEAD_REDIS)
    assert proc.returncode == 1
    line = one_line_error(proc.stderr)
    assert DEAD_REDIS in line


def test_unknown_command_is_a_usage_error():
    result = invoke("nope")
    assert result.exit_code == 2
    assert "nope" in result.stderr


def test_work_loads_no_other_commands_code():
    """Start-up (issue 17 req 6): each command's module loads when that command runs."""
    code = ("import sys; from resque_compat.cli.main import main_group; import click; "
            "main_group.get_command(click.Context(main_group), 'work'); "
            "print(sorted(m for m in sys.modules if m.startswith('resque_compat.cli.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = set(eval(out))
    assert "resque_compat.cli.work" in loaded
    assert not loaded & {"resque_compat.cli.failed", "resque_compat.cli.listen", "resque_compat.cli.pool",
                         "resque_compat.cli.doctor", "resque_compat.cli.schedule", "resque_compat.cli.admin"}
