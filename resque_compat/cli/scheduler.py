"""``resque-py scheduler``: resque-scheduler's delayed-job process (WIRE §7.1).

Added to :data:`resque_compat.cli.main.main_group` by ``cli/main.py``.
"""
from __future__ import annotations

import sys
from typing import Any, Sequence

import click

from resque_compat.cli.common import (
    Context,
    check_redis,
    fail,
    load_job_modules,
    setting_options,
)
from resque_compat.errors import ConfigurationError
from resque_compat.settings import setting_for

EPILOG = """\b
Examples:
  resque-py scheduler                                   # poll every 5 s, as rake resque:scheduler
  RESQUE_SCHEDULER_INTERVAL=1 resque-py scheduler -r myapp.jobs
  RAILS_ENV=production resque-py scheduler --schedule config/resque_schedule.yml -r myapp.jobs
\b
Recurring schedules (cron/every) come from --schedule (resque-scheduler's YAML, unchanged) and
from persistent_schedules (Resque.set_schedule with persist, resque-py schedule set); with
DYNAMIC_SCHEDULE=1 changes are picked up while running. A bad entry gets one error line and
the others keep running.
\b
Only the process holding resque-scheduler's leader lock (<ns>:<ns>:resque_scheduler_master_lock)
moves jobs, so it can run beside a Ruby resque-scheduler: one of them leads, the other waits.
TERM, INT and QUIT stop it after the current batch and release the lock if it still holds it.
\b
Exit codes: 0 stopped by a signal, 1 Redis unreachable at start, 2 usage or configuration error.
"""


@click.command(epilog=EPILOG)
@click.argument("words", nargs=-1, metavar="[KEY=VALUE]...")
@click.option("-r", "--require", "require", multiple=True, metavar="MODULE_OR_FILE",
              help="Import this module or .py file so delayed items without a \"queue\" go to "
                   "their @job's queue; repeatable [env/word: REQUIRE, comma-separated].")
@click.option("--schedule", "schedule_file", metavar="FILE", default=None,
              help="resque-scheduler's schedule YAML (e.g. config/resque_schedule.yml), as "
                   "Resque.schedule = YAML.load_file(...) in Ruby's initializer.")
@setting_options("scheduler")
@click.pass_obj
def scheduler(obj: Context, words: Sequence[str], require: Sequence[str], schedule_file: Any,
              **options: Any) -> None:
    """Move due delayed jobs (enqueue_at/enqueue_in, resque-retry delays, ActiveJob
    set(wait:)) to their queues, as resque-scheduler does.

    Settings come as KEY=VALUE words, environment variables of the same names, or the options
    below (VERBOSE=1 and LOG_FORMAT=json work as for `work`).
    """
    try:
        typed = {name: setting_for(name).parse(value) for name, value in options.items() if value is not None}
        settings = obj.settings(words, **typed)
    except ConfigurationError as exc:
        fail(str(exc))
    from resque_compat import log

    log.setup(settings.log_level, settings.log_format)
    load_job_modules(tuple(settings.require) + tuple(require))
    check_redis(settings)
    from resque_compat.scheduler import recurring, schedule
    from resque_compat.scheduler.leader import Scheduler
    from resque_compat.store.store import connect
    from resque_compat.wire.keys import Keys

    static = {}
    if schedule_file:
        try:
            with open(schedule_file, encoding="utf-8") as fh:
                static = schedule.load_yaml(fh.read(), schedule_file)
        except OSError as exc:
            fail(f"cannot read the schedule file {schedule_file!r}: {exc}; check --schedule")
        except ConfigurationError as exc:
            fail(str(exc))
    client = connect(settings.redis_url, max_connections=2)
    keys = Keys(settings.namespace)
    plan = recurring.Recurring(
        recurring.ScheduleStore(client, keys), static, env=settings.rails_env,
        dynamic=settings.dynamic_schedule, zone=recurring.local_zone(settings.tz),
        missed=settings.scheduler_missed,
        window=settings.scheduler_lock_timeout + 2 * settings.scheduler_interval)
    plan.publish_static()
    for name, config in static.items():  # report bad entries now, whoever leads
        plan.build(name, config)
    process = Scheduler(
        client, keys,
        interval=settings.scheduler_interval,
        batch_size=settings.delayed_requeue_batch_size,
        lock_timeout=settings.scheduler_lock_timeout,
        lock_prefix=settings.scheduler_lock_prefix,
        hostname=settings.hostname,
        recurring=plan,
    )
    sys.exit(process.run())
