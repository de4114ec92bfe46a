"""keys: the one module that spells Redis keys, checked against every key Ruby wrote in the
fixtures, plus a scan proving no other module spells one (STYLE.md practice 1)."""
from __future__ import annotations

import ast
import glob
import os

import pytest

from resque_compat.settings import Settings
from resque_compat.wire import keys as keys_module
from resque_compat.wire.keys import DEFAULT_NAMESPACE, Keys
from tests.keyspace import FIXTURES, load_fixture

PACKAGE = os.path.dirname(os.path.abspath(keys_module.__file__))

#: Strings that start a Redis key name (WIRE §1.2), and whole key names.
KEY_PREFIXES = ("queue:", "queues:", "worker:", "workers:", "stat:", "stats:", "delayed:",
                "timestamps:")
KEY_NAMES = {"workers", "queues", "failed", "failed_queues", "workers:heartbeat",
             "pause-all-workers", "pruning_dead_workers_in_progress", "delayed_queue_schedule"}
KEY_FRAGMENTS = (":queue:", ":worker:", ":workers", ":stat:", ":failed", "_failed",
                 "pruning_dead", "pause-all", "workers:heartbeat")

#: Literals that look like key names but are not keys, each with the reason.
NOT_KEYS = {
    ("settings.py", "queues"): "the Settings field name in the QUEUE row of the settings table",
    ("listen/events.py", "queues"): "the JSONL field of a depth event (queue name -> length)",
    ("listen/logs.py", "failed"): "the --pattern group name that marks a log line as a failure",
    ("metrics/endpoint.py", "resque_jobs_failed"): "a Prometheus metric name (README, Metrics)",
}


def _docstring_nodes(tree):
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = getattr(node, "body", [])
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                yield body[0].value


def _exempt_nodes(tree):
    """Constants that cannot be keys: docstrings, dict-display keys (JSON/info field names),
    and the arguments of calls on the Keys API (``self.keys.worker_stat("failed", id)``),
    which keys.py itself joins into a key."""
    exempt = {id(n) for n in _docstring_nodes(tree)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            exempt.update(id(k) for k in node.keys if k is not None)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            owner_name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
            if owner_name == "keys":
                exempt.update(id(a) for a in node.args)
    return exempt


def _looks_like_key(text: str) -> bool:
    return (text.startswith(KEY_PREFIXES) or text in KEY_NAMES
            or any(fragment in text for fragment in KEY_FRAGMENTS))


def key_literals(path):
    """(line, text) of every string constant in ``path`` that is shaped like a Redis key."""
    with open(path, encoding="utf-8") as fh:
        tree = ast.parse(fh.read(), path)
    exempt = _exempt_nodes(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in exempt:
            if _looks_like_key(node.value):
                found.append((node.lineno, node.value))
    return found


def package_files():
    return sorted(glob.glob(os.path.join(PACKAGE, "**", "*.py"), recursive=True))


def test_no_module_but_keys_py_spells_a_redis_key():
    offenders = []
    for path in package_files():
        name = os.path.relpath(path, PACKAGE)
        if name == "keys.py":
            continue
        for line, text in key_literals(path):
            if (name, text) not in NOT_KEYS:
                offenders.append(f"{name}:{line}: {text[:60]!r}")
    assert not offenders, ("Redis key names spelled outside resque_compat/keys.py; add a Keys "
                           "method and use it instead:\n" + "\n".join(offenders))


def test_the_scan_finds_keys_where_they_are_spelled():
    """The scanner must not be vacuous: keys.py's own literals are found."""
    found = {text for _, text in key_literals(os.path.join(PACKAGE, "keys.py"))}
    assert {"queues", "queue:", "worker:", "workers", "workers:heartbeat", "stat:", "failed",
            "failed_queues", "pruning_dead_workers_in_progress", "pause-all-workers"} <= found


def test_the_scan_catches_keys_hidden_in_code(tmp_path):
    src = tmp_path / "leaky.py"
    src.write_text(
        '"""Docstrings may say queue:critical and workers freely."""\n'
        'def f(r, ns, q, wid):\n'
        '    """Pushes to queue:<q>."""\n'
        '    r.rpush(ns + ":queue:" + q, "x")\n'
        '    r.sadd("queues", q)\n'
        '    r.get(f"{ns}:stat:processed")\n'
        '    r.llen("failed")\n'
        '    r.hset("resque:workers:heartbeat", wid, "t")\n'
        '    return {"queues": 1, "failed": 2}\n'
    )
    found = sorted(text for _, text in key_literals(str(src)))
    assert found == [":queue:", ":stat:processed", "failed", "queues", "resque:workers:heartbeat"]


# -- namespace ------------------------------------------------------------------------------------

def test_default_namespace_is_resque():
    assert DEFAULT_NAMESPACE == "resque"
    assert Keys().queue("x") == "resque:queue:x"
    assert Settings.load(environ={}).namespace == "resque"


@pytest.mark.parametrize("namespace, expected", [
    ("myns", "myns:queue:x"),
    ("resque:GitHub", "resque:GitHub:queue:x"),
])
def test_custom_and_nested_namespaces(namespace, expected):
    k = Keys(namespace)
    assert k.queue("x") == expected
    assert k.queues == namespace + ":queues"
    assert k.worker("vm:1:x") == namespace + ":worker:vm:1:x"
    assert k.strip(expected) == "queue:x"
    assert k.pattern() == namespace + ":*"


def test_namespace_from_environment_words_and_options():
    assert Settings.load(environ={"RESQUE_NAMESPACE": "myns"}).namespace == "myns"
    assert Settings.load(["RESQUE_NAMESPACE=resque:GitHub"], environ={"RESQUE_NAMESPACE": "myns"}).namespace == "resque:GitHub"
    assert Settings.load(["RESQUE_NAMESPACE=a"], {"namespace": "b"}, environ={}).namespace == "b"


def test_empty_namespace_is_refused():
    with pytest.raises(ValueError, match="namespace"):
        Keys("")


def test_strip_leaves_foreign_keys_alone():
    assert Keys("myns").strip("other:queue:x") == "other:queue:x"
    assert Keys("myns").strip("myns:queues") == "queues"


# -- every key Ruby wrote ----------------------------------------------------------------------------

CORE_FIXTURES = [os.path.basename(p) for p in sorted(glob.glob(os.path.join(FIXTURES, "*.json")))
                 if not os.path.basename(p).startswith(("08b", "09"))]  # resque-scheduler keys: §7


def _ids_in(fx):
    ids = set()
    for key, item in fx["keys"].items():
        if key in ("resque:workers",):
            ids.update(item["value"])
        if key == "resque:workers:heartbeat":
            ids.update(item["value"])
        if key.startswith("resque:worker:"):
            rest = key[len("resque:worker:"):]
            ids.add(rest[: -len(":started")] if rest.endswith(":started") else rest)
    return ids


def _queues_in(fx):
    names = set()
    for key, item in fx["keys"].items():
        if key in ("resque:queues",):
            names.update(item["value"])
        if key.startswith("resque:queue:"):
            names.add(key[len("resque:queue:"):])
    return names


@pytest.mark.parametrize("fixture", CORE_FIXTURES)
def test_every_key_in_the_fixture_is_one_keys_py_builds(fixture):
    fx = load_fixture(fixture)
    k = Keys(fx["namespace"])
    built = {k.queues, k.workers, k.heartbeats, k.pruning_lock, k.pause_all_workers, k.processed,
             k.failed_count, k.failed, k.failed_queues}
    for q in _queues_in(fx):
        built |= {k.queue(q), k.queue_failed(q)}
    for wid in _ids_in(fx):
        built |= {k.worker(wid), k.worker_started(wid), k.worker_stat("processed", wid),
                  k.worker_stat("failed", wid), k.worker_processed(wid), k.worker_failed(wid)}
    assert set(fx["keys"]) <= built, set(fx["keys"]) - built


def test_key_spellings_match_ruby_exactly():
    fx04 = load_fixture("04_processed.json")
    wid = fx04["worker_id"]
    k = Keys()
    assert k.processed == "resque:stat:processed"          # never the README's stats:processed
    assert k.failed_count == "resque:stat:failed"
    assert k.worker_processed(wid) == f"resque:stat:processed:{wid}" == k.worker_stat("processed", wid)
    assert k.worker_failed(wid) == f"resque:stat:failed:{wid}"
    assert {k.processed, k.failed_count, k.worker_processed(wid), k.worker_failed(wid),
            k.worker_started(wid), k.workers, k.heartbeats, k.pruning_lock, k.failed,
            k.queues} == set(fx04["keys"])
    fx10 = load_fixture("10_failed_multi_queue.json")
    assert {k.queue_failed("critical"), k.queue_failed("low"), k.failed_queues} <= set(fx10["keys"])
    assert sorted(fx10["keys"]["resque:failed_queues"]["value"]) == [
        Keys.queue_failed_name("critical"), Keys.queue_failed_name("low")]
    assert k.pause_all_workers == "resque:pause-all-workers"


@pytest.mark.parametrize("backend", ["redis", "multiple"])
def test_failure_list_is_failed_outside_redis_multi_queue(backend):
    k = Keys()
    assert k.failure_list("critical", backend) == k.failure_list(None, backend) == "resque:failed"
    assert k.failed_queues_member("critical", backend) is None


def test_failure_list_of_redis_multi_queue_is_the_queues_own_list():
    k = Keys()
    assert k.failure_list("critical", "redis_multi_queue") == "resque:critical_failed"
    assert k.failed_queues_member("critical", "redis_multi_queue") == "critical_failed"
    # An entry without a job queue (a held job whose record lost it) still lands somewhere.
    assert k.failure_list(None, "redis_multi_queue") == "resque:failed"
    assert k.failed_queues_member(None, "redis_multi_queue") is None
