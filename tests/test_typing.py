"""Issue 15, "Why" item 9: a typed package. ``py.typed`` ships, the lazy top-level names are
real types to a type checker (not ``Any``), and the package is clean under the mypy and ruff
configurations that ``make test`` (and so CI) runs."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import resque_compat

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_py_typed_ships_with_the_package():
    assert os.path.exists(os.path.join(os.path.dirname(resque_compat.__file__), "py.typed"))
    with open(os.path.join(ROOT, "setup.cfg"), encoding="utf-8") as fh:
        assert "resque_compat = py.typed" in fh.read()


def test_all_lists_exactly_the_lazy_names():
    assert set(resque_compat.__all__) == {"__version__", *resque_compat._LAZY}


def test_mypy_sees_real_types_for_the_top_level_names(tmp_path):
    user = tmp_path / "user_code.py"
    user.write_text(textwrap.dedent('''
        from resque_compat import Resque, job

        client: int = Resque.from_url("redis://127.0.0.1:6379/0")

        @job(42)
        def deliver(callback_id: int) -> None: ...
    '''))
    # A user's strict config; errors inside our package are theirs to ignore (as for an
    # installed package), what counts is the types our names give to their code.
    config = tmp_path / "mypy.ini"
    config.write_text("[mypy]\nstrict = True\n[mypy-resque_compat.*]\nignore_errors = True\n"
                      "[mypy-gevent.*,setproctitle.*,dbutils.*,pymysql.*,yaml.*,prometheus_client.*,"
                      "certifi.*,zope.*,redis.*]\nignore_missing_imports = True\n")
    proc = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(config), "--cache-dir",
                           str(tmp_path / "cache"), str(user)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    out = proc.stdout
    # With Any exports neither line would be an error.
    assert 'Incompatible types in assignment (expression has type "Resque"' in out, out
    assert 'Argument 1 to "job" has incompatible type "int"' in out, out
    assert "Found 2 errors in 1 file" in out, out


def test_package_is_clean_under_the_projects_mypy_and_ruff():
    for cmd in ([sys.executable, "-m", "mypy"], [sys.executable, "-m", "ruff", "check", "."]):
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{' '.join(cmd[2:])} is not clean:\n{proc.stdout}{proc.stderr}"


def test_make_test_runs_mypy_and_ruff():
    with open(os.path.join(ROOT, "Makefile"), encoding="utf-8") as fh:
        makefile = fh.read()
    assert "test: venv services lint" in makefile
    assert "$(PY) -m ruff check ." in makefile and "$(PY) -m mypy" in makefile
