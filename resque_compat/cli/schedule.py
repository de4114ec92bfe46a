"""``resque-py schedule``: list, show, set, remove and enqueue-now recurring schedules, on
resque-scheduler's keys (what ``Resque.set_schedule`` and resque-web's Schedule tab use)."""
from __future__ import annotations

import datetime as _dt
import json
from typing import Any, Dict, Optional, Sequence

import click

from resque_compat.cli.common import Context, connected_client, echo_json, fail, load_job_modules, table
from resque_compat.errors import ConfigurationError, ResqueError

EPILOG = """\b
Examples:
  resque-py schedule list
  resque-py schedule set nightly_report --cron "0 5 * * * Europe/Stockholm" --class NightlyReport --queue reports
  resque-py schedule set poll --every 30s --class Poller --args '[1, "x"]' --queue poll
  resque-py schedule enqueue-now nightly_report          # resque-web's "Queue now"
  resque-py schedule list --schedule config/resque_schedule.yml   # with the static file
\b
`set` stores the entry in persistent_schedules (Resque.set_schedule with persist) and marks it
in schedules_changed, so a running DYNAMIC_SCHEDULE=1 scheduler, Ruby's or ours, picks it up.
Exit codes: 0 ok, 1 Redis unreachable, 2 usage error or unknown schedule.
"""

_SCHEDULE_OPTION = click.option(
    "--schedule", "schedule_file", metavar="FILE", default=None,
    help="Also read the static schedule YAML the scheduler runs with --schedule (static entries "
         "live only in the scheduler's memory, as in Ruby).")


@click.group(epilog=EPILOG)
def schedule() -> None:
    """Recurring schedules (resque-scheduler's cron/every entries)."""


def _static(schedule_file: Optional[str]) -> Dict[str, Dict[str, Any]]:
    if not schedule_file:
        return {}
    from resque_compat.scheduler.schedule import load_yaml

    try:
        with open(schedule_file, encoding="utf-8") as fh:
            return load_yaml(fh.read(), schedule_file)
    except OSError as exc:
        fail(f"cannot read the schedule file {schedule_file!r}: {exc}")
    except ConfigurationError as exc:
        fail(str(exc))


def _all(obj: Context, schedule_file: Optional[str]) -> "tuple[Any, Dict[str, Dict[str, Any]], Dict[str, str]]":
    resque = connected_client(obj)
    static = _static(schedule_file)
    merged = {**static, **resque.schedule()}
    sources = {name: ("file" if name in static else "persistent") for name in merged}
    for name in resque.schedules.store.persistent():
        sources[name] = "persistent"
    return resque, merged, sources


def _interval(config: Dict[str, Any]) -> str:
    """resque-web's Interval column (``schedule_interval``)."""
    every, cron = config.get("every"), config.get("cron")
    if every:
        parts = every if isinstance(every, list) else [every]
        text = f"every: {parts[0]}"
        if len(parts) > 1 and isinstance(parts[-1], dict):
            text += " (" + ", ".join(f"{str(k).replace('_', ' ')} {v}" for k, v in parts[-1].items()) + ")"
        return text
    if cron:
        return f"cron: {cron if not isinstance(cron, list) else cron[0]}"
    return "Not currently scheduled"


def _next_run(name: str, config: Dict[str, Any]) -> Optional[str]:
    from resque_compat.scheduler import recurring
    from resque_compat.scheduler import schedule as _schedule
    from resque_compat.settings import Settings

    try:
        zone = recurring.local_zone(Settings.load().tz)
        entry = _schedule.build(name, config, default_zone=zone, queue_of=lambda _c: "-")
    except (ConfigurationError, ResqueError):
        return None
    if entry.trigger.cron is None:
        return None
    slot = entry.trigger.cron.next_time(_dt.datetime.now().timestamp())
    return _dt.datetime.fromtimestamp(slot, entry.trigger.cron.zone).strftime("%Y-%m-%d %H:%M:%S %z")


@schedule.command("list")
@_SCHEDULE_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object name -> {config, last_enqueued_at, source}.")
@click.pass_obj
def list_(obj: Context, schedule_file: Optional[str], as_json: bool) -> None:
    """The schedules resque-web's Schedule tab shows, with their last run."""
    resque, merged, sources = _all(obj, schedule_file)
    last = resque.schedules.store.last_enqueued()
    if as_json:
        echo_json({name: {"config": merged[name], "last_enqueued_at": last.get(name),
                          "source": sources[name]} for name in sorted(merged)})
        return
    rows = [(name, _interval(cfg), cfg.get("class"), cfg.get("queue"), cfg.get("args"),
             last.get(name) or "Never", sources[name]) for name, cfg in sorted(merged.items())]
    click.echo(table(("NAME", "INTERVAL", "CLASS", "QUEUE", "ARGS", "LAST ENQUEUED", "SOURCE"), rows))


@schedule.command()
@click.argument("name")
@_SCHEDULE_OPTION
@click.pass_obj
def show(obj: Context, name: str, schedule_file: Optional[str]) -> None:
    """One schedule's whole config, last run and next cron slot, as JSON."""
    resque, merged, sources = _all(obj, schedule_file)
    if name not in merged:
        fail(f"no schedule named {name!r}; see resque-py schedule list (static entries need --schedule FILE)")
    config = merged[name]
    echo_json({"name": name, "config": config, "source": sources[name],
               "last_enqueued_at": resque.schedules.store.last_enqueued_at(name),
               "next_run": _next_run(name, config)})


@schedule.command("set")
@click.argument("name")
@click.option("--cron", default=None, help='Cron line, e.g. "0 5 * * *" or "*/30 * * * * * Europe/Stockholm".')
@click.option("--every", default=None, help="Interval, e.g. 30s, 5m, 1h30m.")
@click.option("--class", "class_name", default=None, help="Job class (default: NAME, as Ruby).")
@click.option("--queue", default=None, help="Queue (default: the queue of the Python @job loaded with -r).")
@click.option("--args", "args_json", default=None, metavar="JSON", help="Job arguments: a JSON array (or a value).")
@click.option("--description", default=None)
@click.option("--rails-env", "rails_env", default=None, metavar="LIST", help="Only for these RAILS_ENVs.")
@click.option("-r", "--require", "require", multiple=True, metavar="MODULE_OR_FILE",
              help="Import @job modules so the queue can be inferred.")
@click.pass_obj
def set_(obj: Context, name: str, cron: Optional[str], every: Optional[str], class_name: Optional[str],
         queue: Optional[str], args_json: Optional[str], description: Optional[str],
         rails_env: Optional[str], require: Sequence[str]) -> None:
    """Create or replace schedule NAME in persistent_schedules (Resque.set_schedule, persist)."""
    from resque_compat.scheduler import schedule as _schedule
    from resque_compat.scheduler.delayed import registered_queue
    from resque_compat.wire import codec

    if bool(cron) == bool(every):
        fail("give exactly one of --cron and --every")
    load_job_modules(tuple(require))
    config: Dict[str, Any] = {"class": class_name or name}
    config["cron" if cron else "every"] = cron or every
    if queue:
        config["queue"] = queue
    if args_json is not None:
        try:
            config["args"] = codec.decode(args_json)
        except codec.DecodeError as exc:
            fail(f"--args is not valid JSON ({exc}); give e.g. '[1, \"x\"]'")
    if description is not None:
        config["description"] = description
    if rails_env is not None:
        config["rails_env"] = rails_env
    try:  # the same checks the scheduler makes, so a bad entry is refused here, not at 5 a.m.
        _schedule.build(name, config, default_zone=_dt.timezone.utc, queue_of=registered_queue)
    except _schedule.ScheduleError as exc:
        fail(str(exc))
    resque = connected_client(obj)
    resque.set_schedule(name, config, persist=True)
    click.echo(f"set schedule {name}: {json.dumps(resque.fetch_schedule(name))}")


@schedule.command()
@click.argument("name")
@click.pass_obj
def remove(obj: Context, name: str) -> None:
    """Remove NAME from persistent_schedules (Resque.remove_schedule); jobs already queued stay."""
    resque = connected_client(obj)
    known = name in resque.schedules.store.persistent()
    resque.remove_schedule(name)
    if not known:
        fail(f"no persistent schedule named {name!r} (marked changed anyway); static entries are "
             "removed from the --schedule file")
    click.echo(f"removed schedule {name}")


@schedule.command("enqueue-now")
@click.argument("name")
@_SCHEDULE_OPTION
@click.option("-r", "--require", "require", multiple=True, metavar="MODULE_OR_FILE",
              help="Import @job modules so the queue can be inferred.")
@click.pass_obj
def enqueue_now(obj: Context, name: str, schedule_file: Optional[str], require: Sequence[str]) -> None:
    """Enqueue NAME's job once now, as resque-web's "Queue now" (last_enqueued_at untouched)."""
    from resque_compat.scheduler import recurring
    from resque_compat.scheduler.schedule import ScheduleError

    load_job_modules(tuple(require))
    resque, merged, _ = _all(obj, schedule_file)
    if name not in merged:
        fail(f"no schedule named {name!r}; see resque-py schedule list (static entries need --schedule FILE)")
    try:
        queue, payload = recurring.enqueue_now(resque.schedules.store, name, merged[name])
    except ScheduleError as exc:
        fail(str(exc))
    click.echo(f"enqueued {payload} on {queue}")
