"""README.rst's examples run as written (issue 15, "Done when").

Every code block of README.rst is extracted and given to the check its kind needs; a block of
no known kind fails the test, so a new example has to be checkable too:

* Python: run in order in one fresh interpreter (not gevent-patched, as a user's script), on
  the test Redis DB (README's ``redis://127.0.0.1:6379/0`` is swapped for it), in one
  namespace as a reader follows the page; the job registry is emptied before each block,
  since several blocks register the same class name;
* ``resque-py`` commands: each one's command and options must exist (click parses it, with
  placeholders such as ``N`` and ``Q`` filled in); those that only read or enqueue run for real;
* the "Testing your jobs" example: run by pytest in a directory of its own, as a user would;
* resque-pool.yml: read by the pool's own loader; the systemd unit: parsed, its command and
  environment checked; the ACL rule: given to a private redis-server; the package map: every
  module it names exists; ``make`` targets exist; the Ruby line enqueues the class the Python
  example registers.
"""
from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
from typing import List, NamedTuple

import pytest

from resque_compat.cli.main import main
from tests.conftest import REDIS_URL
from tests.redis_servers import redis_servers  # noqa: F401  (fixture)
from tests.test_cli import CLI_ENV

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README_URL = "redis://127.0.0.1:6379/0"


class Block(NamedTuple):
    line: int
    language: str  # "python", "ruby" or "" for a literal block (``::``)
    text: str


def readme_blocks() -> List[Block]:
    with open(os.path.join(ROOT, "README.rst"), encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    blocks, i = [], 0
    while i < len(lines):
        line = lines[i]
        directive = line.strip().startswith(".. code-block::")
        literal = line.rstrip().endswith("::") and not line.strip().startswith("..")
        if not (directive or literal):
            i += 1
            continue
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        # The block is as deep as its first line; it ends where the text comes back out
        # (a block inside a bullet ends at the bullet's own indentation).
        indent = len(lines[j]) - len(lines[j].lstrip()) if j < len(lines) else 1
        body = []
        while j < len(lines) and (len(lines[j]) - len(lines[j].lstrip()) >= indent or not lines[j].strip()):
            body.append(lines[j])
            j += 1
        language = line.split("::", 1)[1].strip() if directive else ""
        blocks.append(Block(i + 1, language, textwrap.dedent("\n".join(body)).strip("\n")))
        i = j
    return blocks


BLOCKS = readme_blocks()


def kind(block: Block) -> str:
    first = block.text.lstrip().split("\n", 1)[0]
    if block.language == "ruby":
        return "ruby"
    if first.startswith("# test_") and "pytest" in first:
        return "user-tests"
    if first.startswith("# conftest.py"):
        return "conftest"
    if block.language == "python" or re.match(r"(from |import |@job\(|resque\.|activejob\.)", first):
        return "python"
    if re.match(r"([A-Z_]+=\S*\s+)*resque-py ", first):
        return "commands"
    if first.startswith("$ resque-py "):
        return "console"  # a command and what it prints
    if first.startswith("make "):
        return "make"
    if first.startswith("[Unit]"):
        return "systemd"
    if first.startswith("ACL SETUSER"):
        return "acl"
    if first.startswith("wire/"):
        return "package-map"
    if re.match(r"\w+: ", first) and "resque-py pool" in block.text:
        return "pool-config"
    return "unknown"


def test_every_block_is_of_a_kind_this_test_checks():
    unknown = [f"README.rst:{b.line}: {b.text[:60]!r}" for b in BLOCKS if kind(b) == "unknown"]
    assert not unknown, "teach tests/test_readme_examples.py to check these blocks:\n" + "\n".join(unknown)
    assert len([b for b in BLOCKS if kind(b) == "python"]) >= 8


# -- Python ---------------------------------------------------------------------------------------

DRIVER = r'''
import json, sys
from resque_compat import registry
namespace = {"__name__": "readme"}
for line, code in json.load(sys.stdin):
    registry._registry.clear()
    try:
        exec(compile(code, f"README.rst:{line}", "exec"), namespace)
    except BaseException as exc:
        print(f"README.rst:{line}: {type(exc).__name__}: {exc}")
        raise SystemExit(1)
print("all ran")
'''


def test_python_examples_run(r):
    blocks = [(b.line, b.text.replace(README_URL, REDIS_URL)) for b in BLOCKS if kind(b) == "python"]
    env = {k: v for k, v in os.environ.items() if k not in CLI_ENV}
    env["REDIS_URL"] = REDIS_URL
    proc = subprocess.run([sys.executable, "-c", DRIVER], input=json.dumps(blocks), env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "all ran" in proc.stdout, proc.stdout + proc.stderr
    # what the examples did reached the test DB
    assert r.llen("resque:queue:mailers") >= 1 and r.zcard("resque:delayed_queue_schedule") >= 1


def test_testing_your_jobs_example_passes_under_pytest(r, tmp_path):
    (conftest,) = [b for b in BLOCKS if kind(b) == "conftest"]
    (tests,) = [b for b in BLOCKS if kind(b) == "user-tests"]
    (tmp_path / "conftest.py").write_text(conftest.text + "\n")
    (tmp_path / "test_invoices.py").write_text(tests.text + "\n")
    env = {k: v for k, v in os.environ.items() if k not in CLI_ENV}
    env["RESQUE_TESTING_URL"] = REDIS_URL
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                          env=env, cwd=str(tmp_path), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout


# -- commands ---------------------------------------------------------------------------------

#: Synopsis words and what stands in for them (None: dropped; FILTERS are optional options).
PLACEHOLDERS = {"N": "0", "Q": "critical", "ID": "host:1:critical:0", "NAME": "critical", "REF": "0",
                "FILTERS": None, "filters": None}
#: Commands that only read or enqueue: run for real against the test DB (not --watch, which
#: runs until interrupted).
RUN = {"info", "queues", "workers", "enqueue", "version"}


def command_lines(text: str) -> List[List[str]]:
    """Each ``resque-py`` command of a block, as argv without the program name: continuation
    lines joined, comments dropped, ``[a | b]`` as ``a``, ``x / y`` as two commands."""
    found = []
    for line in text.replace("\\\n", " ").split("\n"):
        line = re.sub(r"\[([^\]]*)\]", lambda m: m.group(1).split("|")[0], line)
        words = shlex.split(line.removeprefix("$ ") if line.startswith("$ resque-py") else line, comments=True)
        while words and re.match(r"[A-Z_]+=", words[0]):  # RAILS_ENV=production resque-py ...
            words = words[1:]
        if not words or not words[0].endswith("resque-py"):
            continue
        # a|b and --a/--b: the first alternative; FILTERS: any of the filter options
        words = [w.split("|")[0] if re.fullmatch(r"[\w-]+(\|[\w-]+)+", w) else
                 w.split("/")[0] if re.fullmatch(r"--[\w-]+(/--[\w-]+)+", w) else w for w in words[1:]]
        words = [PLACEHOLDERS.get(w, w) for w in words if PLACEHOLDERS.get(w, w) is not None]
        if "/" in words:  # pause-all / resume-all
            at = words.index("/")
            found += [words[:at], words[at + 1:]]
        else:
            found.append(words)
    return found


def all_commands() -> List[List[str]]:
    commands = []
    for block in BLOCKS:
        if kind(block) in ("commands", "pool-config", "console"):
            commands += command_lines(block.text)
        if kind(block) == "systemd":
            unit = configparser.ConfigParser(strict=False, interpolation=None)
            unit.read_string(block.text)
            commands += command_lines(unit["Service"]["ExecStart"])
    return commands


def test_readme_shows_commands():
    names = {argv[0] for argv in all_commands()}
    assert {"workers", "failed", "listen", "work", "pool", "remove-worker"} <= names


@pytest.mark.parametrize("argv", all_commands(), ids=lambda argv: " ".join(argv)[:60])
def test_command_example_parses_and_read_only_ones_run(r, monkeypatch, capsys, argv):
    for name in CLI_ENV:
        monkeypatch.delenv(name, raising=False)
    # --help after the words: click still parses every option first, so a misspelt option or
    # subcommand fails, but nothing runs.
    assert main([*argv, "--help"]) == 0, capsys.readouterr().err
    capsys.readouterr()
    if argv[0] in RUN and "--watch" not in argv:
        assert main([*argv, "--redis", REDIS_URL]) == 0, capsys.readouterr().err


# -- the other kinds ------------------------------------------------------------------------------

def test_pool_config_example_is_read_by_the_pool(tmp_path):
    from resque_compat.pool.config import load

    (block,) = [b for b in BLOCKS if kind(b) == "pool-config"]
    yaml_text = block.text.split("\n\n")[0]
    path = tmp_path / "resque-pool.yml"
    path.write_text(yaml_text + "\n")
    assert sum(load(str(path), None).values()) == 1 + 4 + 2
    assert sum(load(str(path), "production").values()) == 1 + 10 + 2


def test_systemd_unit_example(monkeypatch):
    from resque_compat.settings import connection_settings

    (block,) = [b for b in BLOCKS if kind(b) == "systemd"]
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read_string(block.text)
    assert {"Unit", "Service", "Install"} <= set(unit.sections())
    environment = dict(word.split("=", 1) for word in shlex.split(unit["Service"]["Environment"]))
    assert connection_settings(environ=environment).redis_url == environment["REDIS_URL"]
    assert unit["Service"]["RestartPreventExitStatus"] == "2"  # our usage-error exit code


def test_acl_rule_example_is_accepted_by_redis(redis_servers):  # noqa: F811
    (block,) = [b for b in BLOCKS if kind(b) == "acl"]
    server = redis_servers("acl")
    server.wait_ready(server.client)
    assert server.client().execute_command(*shlex.split(block.text)) in (b"OK", "OK", True)


def test_package_map_names_real_modules():
    (block,) = [b for b in BLOCKS if kind(b) == "package-map"]
    folder = None
    for line in block.text.split("\n"):
        head = re.match(r"(\w+)/\s", line)
        folder = head.group(1) if head else folder
        for module in re.findall(r"(\w+)\.py", line):
            assert os.path.exists(os.path.join(ROOT, "resque_compat", folder, module + ".py")), (folder, module)


def test_make_targets_exist():
    with open(os.path.join(ROOT, "Makefile"), encoding="utf-8") as fh:
        makefile = fh.read()
    for block in BLOCKS:
        if kind(block) == "make":
            for words in (shlex.split(line, comments=True) for line in block.text.split("\n")):
                if words:
                    assert re.search(rf"^{words[1]}:", makefile, re.M), words


def test_ruby_example_enqueues_the_class_the_python_example_registers():
    ruby = [b for b in BLOCKS if kind(b) == "ruby"]
    assert ruby
    for block in ruby:
        name = re.search(r'Resque\.enqueue_to\(:\w+, "([\w:]+)"', block.text).group(1)
        following = BLOCKS[BLOCKS.index(block) + 1]
        assert f'@job("{name}"' in following.text
