"""Ruby plugin fixtures (fixtures/ruby-plugins/) and what varies between their runs and ours.

``plugin_state(keys)`` keeps what a plugin contract is about: it drops worker registration
(ids, heartbeats, per-worker stats, the pruning and scheduler locks) and replaces epoch-derived
names and values (``delayed:<ts>``, lock expiries) and the volatile fields of failure entries
(``failed_at``, ``worker``, ``backtrace``) with placeholders, after checking their format, so a
dump of our Redis and a Ruby fixture compare with ``==``.
"""
from __future__ import annotations

import json
import os
import re
from typing import Any, Dict

from resque_compat.wire import codec
from tests.conftest import ROOT

PLUGIN_FIXTURES = os.path.join(ROOT, "fixtures", "ruby-plugins")

_REGISTRATION = re.compile(r"^resque:(workers|workers:heartbeat|worker:.*|pruning_dead_workers_in_progress"
                           r"|stat:(processed|failed):.+|resque:resque_scheduler_master_lock)$")
_DELAYED = re.compile(r"delayed:(\d+)")
FAILED_AT_NO_ZONE = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d$")
FAILED_AT_ZONE = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d [A-Z]{2,5}$")
ENTRY_FIELDS = ["failed_at", "payload", "exception", "error", "backtrace", "worker", "queue"]


def load_plugin_fixture(name: str) -> Dict[str, Any]:
    with open(os.path.join(PLUGIN_FIXTURES, name), encoding="utf-8") as fh:
        return json.load(fh)


def _entry(raw: str, failed_at: "re.Pattern[str]") -> str:
    data = json.loads(raw)
    assert codec.encode(data) == raw, raw  # Ruby's bytes: so the rewrite below loses nothing
    assert list(data) == ENTRY_FIELDS, raw
    assert failed_at.match(data["failed_at"]), data["failed_at"]
    assert isinstance(data["backtrace"], list) and data["backtrace"], raw
    data.update(failed_at="<failed_at>", backtrace="<backtrace>", worker="<worker>")
    return codec.encode(data)


def plugin_state(keys: Dict[str, Any], epoch_values: bool = False) -> Dict[str, Any]:
    """See the module docstring. ``epoch_values``: string values that are epoch seconds (lock
    expiries) become ``<epoch>``."""
    stamps = sorted({m.group(1) for k in keys for m in _DELAYED.finditer(k)})
    names = {ts: f"<ts{i}>" for i, ts in enumerate(stamps)}

    def fix(text: str) -> str:
        return _DELAYED.sub(lambda m: "delayed:" + names.get(m.group(1), m.group(1)), text)

    out: Dict[str, Any] = {}
    for key, entry in keys.items():
        if _REGISTRATION.match(key):
            continue
        value = entry["value"]
        if key.startswith("resque:failure-resque-retry:"):
            value = _entry(value, FAILED_AT_NO_ZONE)
        elif key == "resque:failed":
            value = [_entry(v, FAILED_AT_ZONE) for v in value]
        elif key == "resque:delayed_queue_schedule":
            value = [[names[m], names[s]] for m, s in value]
        elif isinstance(value, list):
            value = [fix(v) for v in value]
        elif epoch_values and isinstance(value, str) and re.fullmatch(r"\d{10}", value):
            value = "<epoch>"
        out[fix(key)] = {"type": entry["type"], "value": value}
    return out


def assert_ttls(r, fixture_keys: Dict[str, Any]) -> None:
    """Every plugin key has the fixture's TTL (±1 s, they count down) or, like it, none."""
    for key, entry in fixture_keys.items():
        if _REGISTRATION.match(key) or _DELAYED.search(key) or not r.exists(key):
            continue
        ttl = r.ttl(key)
        if "ttl" in entry:
            assert abs(ttl - entry["ttl"]) <= 1, (key, ttl, entry["ttl"])
        else:
            assert ttl == -1, (key, ttl)


def load_plugin_state(r, fixture_keys: Dict[str, Any]) -> None:
    """Write what Ruby left (without its worker's registration) into our Redis, TTLs included."""
    from tests.keyspace import load_keys

    kept = {k: v for k, v in fixture_keys.items() if not _REGISTRATION.match(k)}
    load_keys(r, kept)
    for key, entry in kept.items():
        if "ttl" in entry:
            r.expire(key, entry["ttl"])
