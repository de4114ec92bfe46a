"""``resque-py pool`` (resque-pool's command) and ``resque-py work PROCESSES=N``: a supervisor
of worker processes (:mod:`supervisor`, issue 7).

Added to :data:`resque_compat.cli.main.main_group` by ``cli/main.py``.
"""
from __future__ import annotations

import sys
from typing import Any, Dict, List, Optional, Sequence

import click

from resque_compat.cli.common import Context, check_redis, fail, setting_options
from resque_compat.errors import ConfigurationError
from resque_compat.settings import SETTINGS, Settings, setting_for

EPILOG = """\b
Examples:
  resque-py pool --config config/resque-pool.yml -r myapp.jobs
  RAILS_ENV=production resque-py pool FIBERS=50 -r myapp.jobs
  resque-py work QUEUE=critical FIBERS=100 PROCESSES=2 -r myapp.jobs    # same, without a file
\b
config/resque-pool.yml (resque-pool's format; fibers per entry is ours):
  foo: 1
  "foo,bar,baz": 4
  critical: {count: 2, fibers: 50}
  production:
    "foo,bar,baz": 10
\b
Signals: QUIT/TERM/INT go to every worker process (Resque's meaning) and the pool exits after
them; USR1/USR2/CONT are passed on; HUP re-reads the file and starts/stops processes to match.
\b
Exit codes: 0 stopped by a signal, 2 usage or configuration error (also when every worker
process failed with one).
"""

#: Settings each child gets from its group or the supervisor, never from the pool's own words
#: or options.
_PER_CHILD = frozenset(s.field for s in SETTINGS if s.env in ("QUEUE", "FIBERS", "PROCESSES", "PIDFILE",
                                                            "METRICS_PORT", "RESQUE_SUPERVISOR_FD"))


@click.command(epilog=EPILOG)
@click.argument("words", nargs=-1, metavar="[KEY=VALUE]...")
@click.option("-c", "--config", "config_path", envvar="RESQUE_POOL_CONFIG", metavar="PATH",
              help="resque-pool.yml to read [env: RESQUE_POOL_CONFIG; default: resque-pool.yml, "
                   "then config/resque-pool.yml].")
@click.option("-E", "--environment", envvar=["RACK_ENV", "RAILS_ENV", "RESQUE_ENV"], metavar="ENV",
              help="Section of the file merged over its top level [env: RACK_ENV, RAILS_ENV, "
                   "RESQUE_ENV, the first set, as resque-pool].")
@click.option("-r", "--require", "require", multiple=True, metavar="MODULE_OR_FILE",
              help="Passed to every worker process: import this module or .py file for @job "
                   "classes; repeatable [env/word: REQUIRE].")
@setting_options("work")
@click.pass_obj
def pool(obj: Context, words: Sequence[str], config_path: Optional[str], environment: Optional[str],
         require: Sequence[str], **options: Any) -> None:
    """Run the worker processes that config/resque-pool.yml lists, as resque-pool does; each is a
    `resque-py work` with that entry's queues and FIBERS greenlets.

    Other settings (KEY=VALUE words, environment, options) apply to every worker process.
    """
    from resque_compat.pool import config as pool_config

    settings = _settings(obj, words, options)
    if {s.env for s in SETTINGS if options.get(s.field) is not None} & {"QUEUE", "PROCESSES"}:
        fail("pool takes queues and process counts from its configuration file; drop --queue "
             "and --processes (or use resque-py work QUEUE=... PROCESSES=N without a file)")
    try:
        path = pool_config.find_config(config_path)
        groups = pool_config.load(path, environment)
    except ConfigurationError as exc:
        fail(str(exc))
    if not any(groups.values()):
        fail(f"{path} lists no process for the {environment or 'default'} environment; add "
             "lines such as \"critical,low\": 2")
    _supervise(obj, settings, words, require, options, groups,
               reload=lambda: pool_config.load(path, environment))


def run_work_pool(obj: Context, settings: Settings, words: Sequence[str], require: Sequence[str],
                  options: Dict[str, Any]) -> None:
    """``resque-py work ... PROCESSES=N``: N identical worker processes under a supervisor."""
    from resque_compat.pool.config import Group

    groups = {Group(",".join(settings.queues)): settings.processes}
    _supervise(obj, settings, words, require, options, groups, reload=None)


def _settings(obj: Context, words: Sequence[str], options: Dict[str, Any]) -> Settings:
    try:
        typed = {name: setting_for(name).parse(value) for name, value in options.items() if value is not None}
        return obj.settings(words, **typed)
    except ConfigurationError as exc:
        fail(str(exc))


def _supervise(obj: Context, settings: Settings, words: Sequence[str], require: Sequence[str],
               options: Dict[str, Any], groups: Any, reload: Any) -> None:
    from resque_compat import log
    from resque_compat.pool.supervisor import Supervisor, WorkCommand, dead_child_cleaner

    check_redis(settings)  # before any child: N children failing in a loop say less than one line
    log.setup(settings.log_level, settings.log_format)
    global_args: List[str] = []
    for flag, value in (("--redis", obj.options.get("redis_url")), ("--namespace", obj.options.get("namespace"))):
        if value is not None:
            global_args += [flag, value]
    work_args = list(words)
    for module in require:
        work_args += ["-r", module]
    for name, value in options.items():  # raw option text: the child parses it as we did
        if value is not None and name not in _PER_CHILD:
            if value is True:  # a flag (--verbose) takes no value
                work_args.append(setting_for(name).option)
            else:
                work_args += [setting_for(name).option, value]
    fibers = f"{settings.fibers_min}..{settings.fibers}" if settings.autoscale else str(settings.fibers)
    supervisor = Supervisor(WorkCommand(global_args, work_args, fibers, settings.metrics_port),
                            groups, reload=reload,
                            drain=settings.drain, pidfile=settings.pidfile,
                            unregister_dead=dead_child_cleaner(settings))
    sys.exit(supervisor.run())
