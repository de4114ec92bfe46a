"""``resque-py work``: run FIBERS Resque workers in this process (or PROCESSES of them)."""
from __future__ import annotations

import sys
from typing import Any, Dict, Sequence

import click

from resque_compat.cli.common import (
    EPILOG,
    Context,
    check_pidfile,
    check_redis,
    fail,
    load_job_modules,
    setting_options,
)
from resque_compat.errors import ConfigurationError
from resque_compat.settings import SETTINGS

_work_options = setting_options("work")



@click.command(epilog=EPILOG)
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
    check_pidfile(settings.pidfile)
    if settings.processes > 1:  # a supervisor execs PROCESSES of us with PROCESSES=1 (issue 7)
        from resque_compat.cli.pool import run_work_pool

        run_work_pool(obj, settings, words, require, options)
    from resque_compat import log

    log.setup(settings.log_level, settings.log_format)
    load_job_modules(settings.require)
    from resque_compat import registry

    if not registry.registered() and not settings.allow_no_jobs:
        # Otherwise every job would become a JobNotRegistered failure (issue 15).
        fail("no job is registered: pass the module or .py file with your @job functions, e.g. "
             "resque-py work QUEUE=... -r myapp.jobs (or REQUIRE=myapp.jobs); "
             "ALLOW_NO_JOBS=1 (--allow-no-jobs) starts anyway, for jobs registered by plugins")
    from resque_compat.runtime.runner import Runner

    check_redis(settings)
    try:
        runner = Runner(settings)
    except (ConfigurationError, ValueError) as exc:
        fail(str(exc))
    sys.exit(runner.run())

