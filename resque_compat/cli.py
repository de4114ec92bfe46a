"""``resque-py``: the command line. Parses arguments into Settings and makes one call.

Exit codes: 0 done; 1 a runtime error (Redis unreachable, a worker crashed); 2 a usage or
configuration error (bad setting, no queue, job module that does not import).
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
from typing import Any, Dict, NoReturn, Optional, Sequence

import click

from .errors import ConfigurationError, EncodeError, RedisUnavailable, ResqueError
from .settings import DEFAULT_REDIS_URL, SETTINGS, Settings, connection_settings
from .version import RESQUE_VERSION, __version__

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


@click.group(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--redis", "redis_url", metavar="URL", default=None,
              help=f"Redis to use [env: REDIS_URL; default: {DEFAULT_REDIS_URL}]. "
                   "The path is the DB number, as in Ruby. Also rediss:// (TLS, ?ssl_ca_certs=PATH), "
                   "redis://user:password@host (ACL) and "
                   "redis+sentinel://host1:26379,host2:26379/SERVICE/DB (README: Scaling out).")
@click.option("--namespace", metavar="NS", default=None,
              help="Key prefix [env: RESQUE_NAMESPACE; default: resque], as Resque.redis.namespace.")
@click.pass_context
def main_group(ctx: click.Context, redis_url: Optional[str], namespace: Optional[str]) -> None:
    """Python workers and tools for Ruby Resque 3.0 queues (same Redis, same resque-web)."""
    ctx.obj = Context(redis_url, namespace)


# -- work -----------------------------------------------------------------------------------------

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
            func = click.option(setting.option, setting.field, metavar=setting.metavar, default=None,
                                help=f"{setting.help} [env/word: {env}]")(func)
        return func
    return decorate


_work_options = setting_options("work")


@main_group.command(epilog=EPILOG)
@click.argument("words", nargs=-1, metavar="[KEY=VALUE]...")
@click.option("-r", "--require", "require", multiple=True, metavar="MODULE_OR_FILE",
              help="Import this module or .py file to register @job classes; repeatable "
                   "[env/word: REQUIRE, comma-separated].")
@_work_options
@click.pass_obj
def work(obj: Context, words: Sequence[str], require: Sequence[str], **options: Any) -> None:
    """Run FIBERS Resque workers in this process (greenlets), as `rake resque:work` does.

    Settings come as KEY=VALUE words (QUEUE=critical FIBERS=100), environment variables of the
    same names, or the options below; options beat words, words beat the environment.
    """
    typed: Dict[str, Any] = {}
    try:
        for name, value in options.items():
            if value is not None:
                setting = next(s for s in SETTINGS if s.field == name)
                typed[name] = setting.parse(value)
        settings = obj.settings(words, **typed)
        if require:
            settings = settings.with_(require=tuple(settings.require) + tuple(require))
        if not settings.queues:
            raise ConfigurationError("set QUEUE env var, e.g. $ QUEUE=critical,high resque-py work "
                                     "(or QUEUE=critical as a word, or --queue critical)")
    except ConfigurationError as exc:
        fail(str(exc))
    if settings.processes > 1:  # a supervisor execs PROCESSES of us with PROCESSES=1 (issue 7)
        from .cli_pool import run_work_pool

        run_work_pool(obj, settings, words, require, options)
    from . import log

    log.setup(settings.log_level, settings.log_format)
    load_job_modules(settings.require)
    from .runner import Runner

    _check_redis(settings)
    try:
        runner = Runner(settings)
    except (ConfigurationError, ValueError) as exc:
        fail(str(exc))
    sys.exit(runner.run())


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
                mod_name = "resque_jobs_" + os.path.splitext(os.path.basename(path))[0]
                spec = importlib.util.spec_from_file_location(mod_name, path)
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
            fail(f"cannot load jobs from {name}: {type(exc).__name__}: {exc} "
                 "(check -r/REQUIRE and that the module imports on its own)")


def _resque(settings: Settings):  # -> Resque, imported lazily
    from .client import Resque

    try:
        return Resque.from_url(settings.redis_url, settings.namespace)
    except ValueError as exc:  # redis-py's URL parser: bad scheme, port or DB number
        fail(f"cannot use Redis URL {settings.redis_url!r}: {exc}; check --redis / REDIS_URL")


def _check_redis(settings: Settings) -> None:
    try:
        _resque(settings).ping()
    except RedisUnavailable as exc:
        fail(str(exc), 1)


def _client(obj: Context):
    try:
        settings = connection_settings(obj.options)
    except ConfigurationError as exc:
        fail(str(exc))
    resque = _resque(settings)
    try:
        resque.ping()
    except RedisUnavailable as exc:
        fail(str(exc), 1)
    return resque


# -- client commands ------------------------------------------------------------------------------

@main_group.command()
@click.argument("queue")
@click.argument("class_name", metavar="CLASS")
@click.argument("args_json", metavar="ARGS_JSON", default="[]")
@click.pass_obj
def enqueue(obj: Context, queue: str, class_name: str, args_json: str) -> None:
    """Put a job on QUEUE with the bytes Ruby's Resque.enqueue_to writes.

    ARGS_JSON is a JSON array of arguments, e.g. '[1,"x"]' (default []).
    """
    from . import codec

    try:
        args = codec.decode(args_json)
    except codec.DecodeError as exc:
        fail(f"ARGS_JSON is not valid JSON ({exc}); give an array such as '[1,\"x\"]'")
    if not isinstance(args, list):
        fail("ARGS_JSON must be a JSON array of arguments, e.g. '[1,\"x\"]'")
    resque = _client(obj)
    try:
        resque.enqueue_to(queue, class_name, *args)
    except (EncodeError, ResqueError) as exc:
        fail(str(exc))
    click.echo(f"enqueued {class_name} on {queue}")


@main_group.command()
@click.option("--json", "as_json", is_flag=True, help="Print Resque.info as JSON.")
@click.pass_obj
def info(obj: Context, as_json: bool) -> None:
    """Show Resque.info: pending, processed, queues, workers, working, failed, servers, environment."""
    data = _client(obj).info()
    if as_json:
        click.echo(json.dumps(data))
        return
    for key, value in data.items():
        click.echo(f"{key:>12}: {', '.join(value) if isinstance(value, list) else value}")


@main_group.command()
def version() -> None:
    """Print our version and the Resque wire version we speak."""
    click.echo(f"resque-py {__version__} (Resque {RESQUE_VERSION} wire format)")


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        main_group.main(args=list(argv) if argv is not None else None, prog_name="resque-py",
                        standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


from . import cli_scheduler  # noqa: E402,F401  registers `resque-py scheduler` on main_group
from . import cli_admin  # noqa: E402,F401  workers, failed, remove-worker, pause-all, resume-all, queues
from . import cli_listen  # noqa: E402,F401  registers `resque-py listen` (issue 8)
from . import cli_pool  # noqa: E402,F401  registers `resque-py pool` (issue 7)
