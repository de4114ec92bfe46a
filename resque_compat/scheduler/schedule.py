"""resque-scheduler's schedule entries: the YAML file, the config hashes and what each one means.

Pure: turns text and dicts into :class:`Entry` values; no Redis, no clock. The rules are
resque-scheduler 5.0's (``Resque.schedule=``, ``load_schedule_job``, ``enqueue_from_config``;
fixtures ``sched_01``..``sched_05b``):

* the file is a mapping of schedule name to config; an entry without ``class`` uses its name;
* ``cron`` wins over ``every``; either may be ``[value, {options}]`` (rufus-scheduler options);
  an entry with neither is skipped with one line, as Ruby logs "no cron / every found";
* ``rails_env``/``env``: a comma/space list; the entry is loaded only where RAILS_ENV is listed
  (``rails_env`` wins over ``env`` unless it is null);
* ``args``: a Hash becomes ``[hash]``, nothing becomes ``[]``, a scalar ``[scalar]``;
* ``queue``: the entry's, else the queue of the Python ``@job`` registered under the class
  (Ruby reads the class's ``@queue``); with neither the entry cannot be enqueued and is refused;
* ``persist: true`` (loading a file) writes the entry to ``persistent_schedules``, as
  ``Resque.schedule=`` does through ``set_schedule``.

Every refused entry raises :class:`ScheduleError`, whose text names the entry and the field.
"""
from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional

from resque_compat.common.yaml_file import load_mapping
from resque_compat.errors import ConfigurationError, EncodeError
from resque_compat.scheduler import cron as _cron
from resque_compat.wire import codec

#: rufus-scheduler job options that only matter for a block that runs in the scheduler (ours
#: enqueues, which takes no time): accepted and ignored.
IGNORED_OPTIONS = frozenset(("overlap", "mutex", "timeout", "tag", "tags", "blocking", "job",
                             "discard_past", "name", "locals"))
SUPPORTED_OPTIONS = frozenset(("first_in", "first_at"))
#: Fugit::Duration's units: a month is 30 days and a year 365, as there.
_UNITS = {"y": 365 * 86400, "M": 30 * 86400, "w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
_LONG_UNITS = {"year": "y", "month": "M", "week": "w", "day": "d", "hour": "h", "minute": "m",
               "min": "m", "second": "s", "sec": "s"}
_DURATION_PART = re.compile(r"(\d+\.\d*|(?:\d*\.)?\d+) *([a-zA-Z]+)?")
_DURATION_SEP = re.compile(r"(?:[ \t,]+|and)*", re.IGNORECASE)


class ScheduleError(ConfigurationError):
    """One entry that cannot be scheduled; the others keep running."""

    def __init__(self, name: str, field_name: str, message: str) -> None:
        super().__init__(f"schedule {name!r}: {field_name}: {message}")
        self.name = name
        self.field = field_name


@dataclass(frozen=True)
class Trigger:
    """When an entry fires: a cron line, or every N seconds (rufus's ``every``)."""

    kind: str  # "cron" or "every"
    text: str
    cron: Optional[_cron.Cron] = None
    every: float = 0.0
    first_in: Optional[float] = None
    first_at: Optional[float] = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """As resque-web's Schedule tab prints it (``schedule_interval``)."""
        if self.kind == "cron":
            return f"cron: {self.text}"
        if not self.options:
            return f"every: {self.text}"
        meta = ", ".join(f"{str(k).replace('_', ' ')} {v}" for k, v in self.options.items())
        return f"every: {self.text} ({meta})"


@dataclass(frozen=True)
class Entry:
    """One schedule entry, ready to fire: what to push where, and when."""

    name: str
    config: Mapping[str, Any]
    class_name: str
    queue: str
    args: List[Any]
    trigger: Trigger
    custom_job_class: Optional[str] = None
    description: Optional[str] = None


def load_yaml(text: str, source: str = "schedule file") -> Dict[str, Dict[str, Any]]:
    """The file's ``{name: config}``, with ``class`` filled in from the name (``Resque.schedule=``).

    ERB is refused as for resque-pool's file (only Ruby evaluates it). Raises ConfigurationError.
    """
    data = load_mapping(text, source, what="schedule names to entries",
                        example='nightly_report: {cron: "0 5 * * *", class: NightlyReport, queue: reports}')
    return prepare({str(name): config for name, config in data.items()})


def prepare(schedules: Mapping[str, Any]) -> Dict[str, Dict[str, Any]]:
    """Ruby's ``prepare_schedules``: copy each config, adding ``class`` = name when absent."""
    out: Dict[str, Dict[str, Any]] = {}
    for name, config in schedules.items():
        copy = dict(config) if isinstance(config, dict) else {"__invalid__": config}
        copy = {str(k): v for k, v in copy.items()}
        if "class" not in copy:
            copy["class"] = name
        out[name] = copy
    return out


def env_matches(configured: Any, env: Optional[str]) -> bool:
    """Ruby's ``env_matches?``: RAILS_ENV is set and in the comma/space separated list."""
    return bool(env) and env in re.split(r"[\s,]+", str(configured))


def configured_env(config: Mapping[str, Any]) -> Any:
    """Ruby's ``config['rails_env'] || config['env']``: only a missing/null or false
    ``rails_env`` gives way to ``env``; ``rails_env: ""`` wins and matches no env."""
    value = config.get("rails_env")
    return config.get("env") if value is None or value is False else value


def normalize_args(args: Any) -> List[Any]:
    """``enqueue_from_config``: ``args.is_a?(Hash) ? [args] : Array(args)``."""
    if isinstance(args, dict):
        return [args]
    if args is None:
        return []
    return list(args) if isinstance(args, list) else [args]


def parse_duration(value: Any) -> float:
    """Seconds in rufus/fugit's duration text: ``30s``, ``1h30m``, ``2 days``, ``1.5h``, ``90``."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    pos, total, parts = 0, 0.0, 0
    while pos < len(text):
        sep = _DURATION_SEP.match(text, pos)
        pos = sep.end() if sep else pos
        if pos >= len(text):
            break
        match = _DURATION_PART.match(text, pos)
        if not match:
            raise ValueError(f"{text!r} is not a duration such as 30s, 5m, 1h30m or 2d")
        number, unit = float(match.group(1)), match.group(2) or "s"
        if unit not in _UNITS:
            key = unit.lower().rstrip("s") if len(unit) > 1 else unit
            unit = _LONG_UNITS.get(key, "")
        if not unit:
            raise ValueError(f"{text!r} is not a duration such as 30s, 5m, 1h30m or 2d")
        total += number * _UNITS[unit]
        parts += 1
        pos = match.end()
    if not parts:
        raise ValueError(f"{text!r} is not a duration such as 30s, 5m, 1h30m or 2d")
    return total


def build(name: str, config: Mapping[str, Any], *, default_zone: _dt.tzinfo,
          queue_of: Callable[[str], Optional[str]]) -> Entry:
    """The :class:`Entry` for one config; raises ScheduleError naming the field at fault.

    ``queue_of(class_name)`` is the queue of a registered Python job (None if there is none).
    """
    _check_mapping(name, config)
    trigger = _trigger(name, config, default_zone)
    class_name, queue, args, custom = job_target(name, config, queue_of)
    description = config.get("description")
    return Entry(name=name, config=dict(config), class_name=class_name, queue=queue, args=args,
                 trigger=trigger, custom_job_class=custom,
                 description=str(description) if description is not None else None)


def job_target(name: str, config: Mapping[str, Any],
               queue_of: Callable[[str], Optional[str]]) -> "tuple[str, str, List[Any], Optional[str]]":
    """(class, queue, args, custom_job_class) that ``enqueue_from_config`` would use; no trigger
    needed (resque-web's "Queue now" works on any entry). Raises ScheduleError."""
    _check_mapping(name, config)
    class_name = config.get("class")
    custom = config.get("custom_job_class")
    if not isinstance(class_name, str) or not class_name:
        raise ScheduleError(name, "class", f"must be a class name string (got {class_name!r}); "
                            "omit it to use the schedule's name")
    queue = config.get("queue") or queue_of(class_name)
    if not queue:
        raise ScheduleError(name, "queue", f"no queue for {class_name}: add queue: to the entry, or "
                            f"load a Python @job({class_name!r}, queue=...) with -r (Ruby reads the "
                            "class's @queue, which a Python scheduler cannot see)")
    custom_name = str(custom) if custom and custom != "Resque::Job" else None
    args = normalize_args(config.get("args"))
    try:
        codec.encode(args)
    except EncodeError as exc:
        raise ScheduleError(name, "args", str(exc)) from None
    return class_name, str(queue), args, custom_name


def _check_mapping(name: str, config: Any) -> None:
    if not isinstance(config, Mapping) or "__invalid__" in config:
        raise ScheduleError(name, "entry", "must be a mapping with cron or every, class, queue, args")


def _trigger(name: str, config: Mapping[str, Any], zone: _dt.tzinfo) -> Trigger:
    for kind in ("cron", "every"):  # Ruby's order: cron wins
        value = config.get(kind)
        if value is None or (hasattr(value, "__len__") and len(value) == 0):
            continue
        text, options = _optionized(name, kind, value)
        if kind == "cron":
            try:
                line = _cron.parse(text, zone)
                line.next_time(0)  # a line no date matches fails here, not in the leader's loop
            except _cron.CronError as exc:
                field_name = "cron (time zone)" if exc.field == "zone" else f"cron ({exc.field})"
                raise ScheduleError(name, field_name, str(exc)) from None
            return Trigger("cron", text, cron=line, options=options)
        try:
            every = parse_duration(text)
        except ValueError as exc:
            raise ScheduleError(name, "every", str(exc)) from None
        if every <= 0:
            raise ScheduleError(name, "every", f"{text!r} is not a positive interval")
        first_in = first_at = None
        try:
            if "first_in" in options:
                first_in = parse_duration(options["first_in"])
            if "first_at" in options:
                first_at = _parse_time(options["first_at"], zone)
        except ValueError as exc:
            raise ScheduleError(name, "every (options)", str(exc)) from None
        return Trigger("every", text, every=every, first_in=first_in, first_at=first_at, options=options)
    raise ScheduleError(name, "cron/every", "no cron or every found - skipping (give e.g. "
                        "cron: \"0 5 * * *\" or every: 30s)")


def _optionized(name: str, kind: str, value: Any) -> "tuple[str, Dict[str, Any]]":
    """Ruby's ``optionizate_interval_value``: ``[value, {options}]`` or a plain value."""
    options: Dict[str, Any] = {}
    if isinstance(value, list):
        if len(value) == 2 and isinstance(value[1], dict):
            options = {str(k): v for k, v in value[1].items()}
        value = value[0]
    unknown = sorted(set(options) - SUPPORTED_OPTIONS - IGNORED_OPTIONS)
    if unknown:
        raise ScheduleError(name, f"{kind} (options)", f"rufus option(s) {', '.join(unknown)} are not "
                            f"supported by resque-py; supported: {', '.join(sorted(SUPPORTED_OPTIONS))}")
    if kind == "cron" and set(options) & SUPPORTED_OPTIONS:
        raise ScheduleError(name, "cron (options)", "first_in/first_at apply to every: only")
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise ScheduleError(name, kind, f"must be a string such as {'0 5 * * *' if kind == 'cron' else '30s'} "
                            f"(got {value!r})")
    return str(value), options


def _parse_time(value: Any, zone: _dt.tzinfo) -> float:
    if isinstance(value, _dt.datetime):
        moment = value
    else:
        text = str(value).strip()
        parts = text.rsplit(" ", 1)
        if len(parts) == 2 and "/" in parts[1]:  # "2026-12-07 05:00:00 Europe/Stockholm"
            zone, text = _cron.parse_zone(parts[1]), parts[0]
        try:
            moment = _dt.datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"first_at {value!r} is not a time such as 2026-12-07 05:00:00") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.timestamp()
