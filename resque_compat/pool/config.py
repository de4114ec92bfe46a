"""resque-pool's configuration file, read the way resque-pool reads it, plus a ``fibers`` extension.

The format is resque-pool's, so an existing ``config/resque-pool.yml`` works unchanged::

    foo: 1                   # one process working queue foo
    "foo,bar,baz": 4         # four processes working foo, then bar, then baz
    production:              # merged over the entries above when the environment is production
      "foo,bar,baz": 10

* The file: ``--config``, else ``RESQUE_POOL_CONFIG``, else ``resque-pool.yml``, else
  ``config/resque-pool.yml`` (resque-pool's search, relative to the working directory).
* The environment: ``--environment``, else the first of ``RACK_ENV``, ``RAILS_ENV``,
  ``RESQUE_ENV`` that is set (resque-pool's order; the CLI reads them). Its section is merged
  over the top level; every other section is ignored, as resque-pool does.
* A count of 0 runs no process for that queue list (useful to switch one off in a section).

Our extension: greenlets per process. In place of the number, a mapping with ``count`` and
``fibers`` (N, or ``MIN..MAX`` to autoscale)::

    critical: {count: 2, fibers: 50}
    "mailers,low": {count: 1, fibers: "10..200"}

An entry without ``fibers``, and every plain number, uses the pool's FIBERS. A mapping is read
as an entry when its keys are ``count`` with optionally ``fibers``; any other mapping is an
environment section (so a queue literally named ``count`` cannot be configured inside a section
on its own; list it with another queue). resque-pool evaluates ERB (``<%= ... %>``) in the file;
only Ruby can, so such a file is refused with a message saying so.
"""
from __future__ import annotations

import os
from typing import Any, Dict, NamedTuple, Optional

from resque_compat.common.yaml_file import load_mapping
from resque_compat.errors import ConfigurationError
from resque_compat.settings import setting_for

#: resque-pool's search order when neither --config nor RESQUE_POOL_CONFIG names a file.
CONFIG_FILES = ("resque-pool.yml", "config/resque-pool.yml")
_ENTRY_KEYS = frozenset(("count", "fibers"))
_EXAMPLE = '"critical,low": 2   or   critical: {count: 2, fibers: 50}'


class Group(NamedTuple):
    """Processes that share a configuration: their QUEUE and FIBERS (None = the pool's)."""

    queues: str
    fibers: Optional[str] = None


def find_config(explicit: Optional[str], cwd: str = ".") -> str:
    """The file to read: ``explicit`` (from --config / RESQUE_POOL_CONFIG) or resque-pool's
    default locations. Raises ConfigurationError saying where it looked."""
    if explicit:
        if not os.path.isfile(explicit):
            raise ConfigurationError(f"pool configuration {explicit!r} does not exist; check --config "
                                     "/ RESQUE_POOL_CONFIG")
        return explicit
    for name in CONFIG_FILES:
        if os.path.isfile(os.path.join(cwd, name)):
            return os.path.join(cwd, name) if cwd != "." else name
    raise ConfigurationError(f"no pool configuration: pass --config PATH or create one of "
                             f"{', '.join(CONFIG_FILES)}, with lines such as {_EXAMPLE}")


def load(path: str, environment: Optional[str]) -> Dict[Group, int]:
    """Read and parse ``path`` (see :func:`parse`)."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ConfigurationError(f"cannot read pool configuration {path!r}: {exc}") from None
    return parse(text, environment, path)


def parse(text: str, environment: Optional[str], source: str = "pool configuration") -> Dict[Group, int]:
    """``{Group: process count}`` for ``environment``, resque-pool's merge rules (module doc)."""
    data = load_mapping(text, source, what="queue lists to process counts", example=_EXAMPLE)
    merged = dict(data)
    section = data.get(environment) if environment else None
    if isinstance(section, dict) and not _is_entry(section):
        merged.update(section)  # resque-pool: config.merge!(config[environment])
    groups: Dict[Group, int] = {}
    for key, value in merged.items():
        if isinstance(value, dict) and not _is_entry(value):
            continue  # another environment's section (resque-pool drops every Hash value)
        queues = _queue_list(key, source)
        count, fibers = _entry(queues, value, source)
        group = Group(queues, fibers)
        groups[group] = groups.get(group, 0) + count
    return groups


def _is_entry(value: Dict[Any, Any]) -> bool:
    keys = {str(k) for k in value}
    return "count" in keys and keys <= _ENTRY_KEYS


def _queue_list(key: Any, source: str) -> str:
    # YAML 1.1 reads a bare yes/no/on/off as a boolean and 12 as a number; Ruby's Psych does the
    # same and resque-pool then uses the value's to_s, which is what we rebuild here.
    text = str(key).lower() if isinstance(key, bool) else ("" if key is None else str(key))
    if not text.strip(" ,"):
        raise ConfigurationError(f"{source}: an entry has no queue list; write e.g. {_EXAMPLE}")
    return text


def _entry(queues: str, value: Any, source: str) -> "tuple[int, Optional[str]]":
    fibers: Optional[str] = None
    if isinstance(value, dict):
        raw = {str(k): v for k, v in value.items()}
        value = raw["count"]
        if raw.get("fibers") is not None:
            fibers = str(raw["fibers"]).strip()
            try:
                setting_for("fibers").parse(fibers)
            except ConfigurationError as exc:
                raise ConfigurationError(f"{source}: {queues!r}: {exc}") from None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(f"{source}: {queues!r} needs a process count (a whole number, 0 or "
                                 f"more), e.g. {_EXAMPLE} (got {value!r})")
    return value, fibers
