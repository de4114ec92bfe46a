"""Dump a namespace in the fixtures' JSON shape and normalise what varies between runs.

``dump(r)`` gives ``{key: {"type", "value"[, "ttl"]}}`` exactly as ``fixtures/*/README.md``
describes. ``normalize`` replaces worker ids and time strings with placeholders, so a dump of
our worker and a Ruby fixture can be compared with ``==`` (STYLE.md practice 13).
"""
from __future__ import annotations

import json
import os
import re
from typing import Any, Callable, Dict, Iterable

import redis

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "fixtures", "ruby-resque-3.0")

TIME_PATTERNS = [
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d"), "<heartbeat>"),
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"), "<run_at>"),
    (re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}"), "<started>"),
    (re.compile(r"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d [A-Z]{2,5}"), "<failed_at>"),
]


def load_fixture(name: str) -> Dict[str, Any]:
    with open(os.path.join(FIXTURES, name), encoding="utf-8") as fh:
        return json.load(fh)


#: The Ruby plugins' snapshots (copied from shared/fixtures/ruby-plugins).
PLUGIN_FIXTURES = os.path.join(os.path.dirname(FIXTURES), "ruby-plugins")
#: The pruning lock's value is a worker id and its TTL counts down: left out of comparisons.
PRUNING_LOCK = "resque:pruning_dead_workers_in_progress"


def load_plugin_fixture(name: str) -> Dict[str, Any]:
    """``fixtures/ruby-plugins/<name>.json``."""
    with open(os.path.join(PLUGIN_FIXTURES, name + ".json"), encoding="utf-8") as fh:
        return json.load(fh)


def normalized_plugin_fixture(fx: Dict[str, Any]) -> Dict[str, Any]:
    """A plugin fixture's keys, normalised as :func:`normalize` does ours (its worker ids)."""
    ids = [fx["worker_id"]] if "worker_id" in fx else fx["keys"].get("resque:workers", {}).get("value", [])
    return normalize(fx["keys"], ids, drop=[PRUNING_LOCK])


def dump(r: redis.Redis, namespace: str = "resque", with_ttl: bool = False) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key in sorted(_s(k) for k in r.keys(namespace + ":*")):
        kind = _s(r.type(key))
        if kind == "string":
            value: Any = _s(r.get(key))
        elif kind == "list":
            value = [_s(v) for v in r.lrange(key, 0, -1)]
        elif kind == "set":
            value = sorted(_s(v) for v in r.smembers(key))
        elif kind == "hash":
            value = {_s(k): _s(v) for k, v in sorted(r.hgetall(key).items())}
        elif kind == "zset":
            # The score exactly as Redis returns it ("1795780986", not "1795780986.0").
            value = [[_s(m), _s(s)] for m, s in r.zrange(key, 0, -1, withscores=True,
                                                         score_cast_func=lambda x: x)]
        else:
            value = None
        entry = {"type": kind, "value": value}
        ttl = r.ttl(key)
        if with_ttl and ttl and ttl > 0:
            entry["ttl"] = ttl
        out[key] = entry
    return out


def _s(v: Any) -> Any:
    return v.decode("utf-8", errors="surrogateescape") if isinstance(v, bytes) else v


def normalize(keys: Dict[str, Any], worker_ids: Iterable[str], drop: Iterable[str] = ()) -> Dict[str, Any]:
    """Replace each worker id with ``<worker>`` and time strings with ``<kind>`` placeholders;
    drop keys named in ``drop`` (without namespace handling: give full keys)."""
    ids = sorted(set(worker_ids), key=len, reverse=True)

    def fix(text: str) -> str:
        for wid in ids:
            text = text.replace(wid, "<worker>")
        for pattern, placeholder in TIME_PATTERNS:
            text = pattern.sub(placeholder, text)
        return text

    drop = set(drop)
    return {fix(k): {"type": v["type"], "value": map_strings(v["value"], fix)}
            for k, v in keys.items() if k not in drop}


def map_strings(value: Any, fix: Callable[[str], str]) -> Any:
    """``value`` (JSON-shaped) with ``fix`` applied to every string in it, dict keys too."""
    if isinstance(value, str):
        return fix(value)
    if isinstance(value, list):
        return [map_strings(v, fix) for v in value]
    if isinstance(value, dict):
        return {fix(k): map_strings(v, fix) for k, v in value.items()}
    return value


def load_keys(r: redis.Redis, keys: Dict[str, Any]) -> None:
    """Write a fixture's ``keys`` into Redis with raw commands (the inverse of :func:`dump`)."""
    for key, entry in keys.items():
        kind, value = entry["type"], entry["value"]
        if kind == "string":
            r.set(key, value)
        elif kind == "list":
            r.rpush(key, *value)
        elif kind == "set":
            r.sadd(key, *value)
        elif kind == "hash":
            r.hset(key, mapping=value)
        elif kind == "zset":
            r.zadd(key, {member: float(score) for member, score in value})
        else:
            raise AssertionError(f"unexpected type {kind} in fixture")
