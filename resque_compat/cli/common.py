"""What every resque-py command shares: the Context, ``fail``, settings options, loading job
modules, and opening a checked Resque client; plus the table/JSON output helpers.

Exit codes: 0 done; 1 a runtime error (Redis unreachable, a worker crashed); 2 a usage or
configuration error (bad setting, no queue, job module that does not import).
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
import traceback
from typing import TYPE_CHECKING, Any, NoReturn, Optional, Sequence

import click

from resque_compat.errors import ConfigurationError, RedisUnavailable, ResqueError
from resque_compat.settings import SETTINGS, Settings, connection_settings, is_flag

if TYPE_CHECKING:
    from resque_compat.client import Resque

EPILOG = """\b
Examples:
  resque-py work QUEUE=critical,low FIBERS=100 -r myapp.jobs
  QUEUES='*' INTERVAL=0 resque-py work -r jobs.py      # drain every queue, then exit
  resque-py enqueue critical Callbacks::Deliver '[1,"x"]'
  resque-py info
\b
Exit codes: 0 ok, 1 runtime error (e.g. Redis unreachable), 2 usage or configuration error.
"""


class Context:
    def __init__(self, redis_url: Optional[str], namespace: Optional[str]) -> None:
        self.options = {"redis_url": redis_url, "namespace": namespace}

    def settings(self, words: Sequence[str] = (), **options: Any) -> Settings:
        return Settings.load(words, {**self.options, **options})


def fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"resque-py: {message}", err=True)
    sys.exit(code)



#: Settings read under more than one name (QUEUES beats QUEUE; LOGGING is VERBOSE's Ruby alias).
_ENV_LABELS = {"QUEUE": "QUEUES/QUEUE", "VERBOSE": "VERBOSE/LOGGING"}


def setting_options(command: str) -> Any:
    """A decorator adding one click option per settings-table row of ``command``, each naming
    its env variable."""
    def decorate(func: Any) -> Any:
        for setting in reversed(SETTINGS):
            if not setting.option or setting.command != command:
                continue
            env = _ENV_LABELS.get(setting.env, setting.env)
            if is_flag(setting):  # --verbose alone; a value would swallow the next word
                func = click.option(setting.option, setting.field, is_flag=True, default=None,
                                    help=f"{setting.help} [env/word: {env}=1]")(func)
                continue
            func = click.option(setting.option, setting.field, metavar=setting.metavar, default=None,
                                help=f"{setting.help} [env/word: {env}]")(func)
        return func
    return decorate




def _importable_name(path: str) -> Optional[str]:
    """The dotted name under which ``path`` imports from sys.path (``app/jobs.py`` ->
    ``app.jobs``), so ``-r app/jobs.py`` and ``-r app.jobs`` load one module, not two."""
    for entry in sys.path:
        root = os.path.abspath(entry or os.getcwd())
        if not path.startswith(root + os.sep):
            continue
        parts = os.path.splitext(os.path.relpath(path, root))[0].split(os.sep)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if not parts or not all(p.isidentifier() for p in parts):
            continue
        name = ".".join(parts)
        try:
            spec = importlib.util.find_spec(name)
        except Exception:  # a parent package that does not import: load the file by path
            return None
        if spec is not None and spec.origin and os.path.abspath(spec.origin) == path:
            return name
    return None


def _where(exc: BaseException) -> str:
    """`` at FILE:LINE`` of the line that raised while importing a job module."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f" at {_short(exc.filename)}:{exc.lineno}"
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<frozen")]
    return f" at {_short(frames[-1].filename)}:{frames[-1].lineno}" if frames else ""


def _short(path: str) -> str:
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def load_job_modules(names: Sequence[str]) -> None:
    """Import each ``-r``/REQUIRE entry: a dotted module or a path to a .py file."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for name in names:
        try:
            if name.endswith(".py") or os.sep in name:
                path = os.path.abspath(name)
                if not os.path.exists(path):
                    fail(f"cannot load jobs from {name}: no such file")
                dotted = _importable_name(path)
                if dotted is not None:
                    importlib.import_module(dotted)
                    continue
                mod_name = "resque_jobs_" + os.path.splitext(os.path.basename(path))[0]
                loaded = sys.modules.get(mod_name)
                if loaded is not None and getattr(loaded, "__file__", None) == path:
                    continue  # the same file given twice
                spec = importlib.util.spec_from_file_location(mod_name, path)
                if spec is None or spec.loader is None:
                    fail(f"cannot load jobs from {name}: not a Python source file")
                module = importlib.util.module_from_spec(spec)
                sys.modules[mod_name] = module
                spec.loader.exec_module(module)
            else:
                importlib.import_module(name)
        except SystemExit:
            raise
        except ResqueError as exc:
            fail(f"cannot load jobs from {name}: {exc}")
        except Exception as exc:
            fail(f"cannot load jobs from {name}: {type(exc).__name__}: {exc}{_where(exc)} "
                 "(check -r/REQUIRE and that the module imports on its own)")


def resque_for(settings: Settings) -> "Resque":
    """A Resque client for ``settings`` (imported lazily, so ``--help`` stays fast)."""
    from resque_compat.client import Resque
    from resque_compat.wire import codec

    codec.set_ruby_json(settings.ruby_json)  # what enqueue & co. write, as the Ruby apps do
    try:
        return Resque.from_url(settings.redis_url, settings.namespace)
    except ConfigurationError as exc:  # ours: already one line naming the URL and the fix
        fail(str(exc))
    except ValueError as exc:  # redis-py's URL parser: bad scheme, port or DB number
        fail(f"cannot use Redis URL {settings.redis_url!r}: {exc}; check --redis / REDIS_URL")


def check_pidfile(path: Optional[str]) -> None:
    """PIDFILE's directory must exist and be writable: fail now in one line, not at start-up."""
    if not path:
        return
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        fail(f"PIDFILE {path!r} is a directory; give a file path, e.g. PIDFILE=/run/resque/worker.pid")
    if not os.path.isdir(folder):
        fail(f"PIDFILE {path!r}: directory {folder} does not exist; create it or choose another path")
    if not os.access(folder, os.W_OK):
        fail(f"PIDFILE {path!r}: directory {folder} is not writable by this user; choose another path")


def check_redis(settings: Settings) -> None:
    try:
        resque_for(settings).ping()
    except RedisUnavailable as exc:
        fail(str(exc), 1)


def connected_client(obj: Context) -> "Resque":
    """The Resque client of the global options, after a PING; fails with exit code 1."""
    try:
        settings = connection_settings(obj.options)
    except ConfigurationError as exc:
        fail(str(exc))
    resque = resque_for(settings)
    try:
        resque.ping()
    except RedisUnavailable as exc:
        fail(str(exc), 1)
    return resque


# -- client commands ------------------------------------------------------------------------------


#: Longest text shown in one table cell; ``show`` and ``--json`` give the whole value.
CELL = 60


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns two spaces apart, one line per row (cells cut to :data:`CELL`)."""
    cells = [[cell_text(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip()
                     for line in [list(headers)] + cells)


def cell_text(value: Any) -> str:
    text = "-" if value is None else value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(text.split())  # one line per row, even for multi-line error messages
    return text if len(text) <= CELL else text[: CELL - 1] + "…"


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False))


def failure_backend(obj: Context, option: Optional[str]) -> str:
    """--backend, else FAILURE_BACKEND (as the workers were started), else redis."""
    try:
        return connection_settings({**obj.options, "failure_backend": option}).failure_backend
    except ConfigurationError as exc:
        fail(str(exc))
