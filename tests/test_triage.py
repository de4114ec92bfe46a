"""Failed-job triage on the real Redis: stable ids that refuse a moved list, filters, newest
first, bulk retry/remove with a dry run, both failure backends, and a bulk retry racing workers
that keep adding failures (assertions count by stable ids, so they hold on every run)."""
from __future__ import annotations

import json
import re
import time

import gevent
import gevent.event
import pytest
import redis

from resque_compat.failures import Failures
from resque_compat.triage import Triage
from resque_compat.wire import codec, records
from resque_compat.wire.keys import Keys
from resque_compat.wire.triage import FailureFilter, Ref, entry_id, parse_failed_at, parse_when
from tests.conftest import REDIS_URL
from tests.test_admin_cli import admin

K = Keys()
BASE = 1795780000  # 2026-11-27


def entry(n, cls="Boom", exc="RuntimeError", queue="critical", worker="vm:1:critical",
          error="kaboom", when=None):
    return records.failure_entry(
        failed_at=codec.failed_at(BASE + n if when is None else when), payload_json=codec.encode(
            {"class": cls, "args": [n]}), exception=exc, error=f"{error} {n}", backtrace=[],
        worker=worker, queue=queue)


def listed(url, *args):
    result = admin(url, "failed", "list", "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_ids_are_hashes_of_the_bytes_and_refs_parse():
    raw = entry(1)
    assert entry_id(raw) == entry_id(raw.encode()) and len(entry_id(raw)) == 12
    assert entry_id(raw) != entry_id(entry(2))
    assert Ref.parse("12:" + entry_id(raw)) == Ref(12, entry_id(raw))
    assert Ref.parse(entry_id(raw)) == Ref(None, entry_id(raw)) and Ref.parse("3") == Ref(3, None)
    with pytest.raises(ValueError, match="INDEX:ID"):
        Ref.parse("3:xyz")
    assert parse_failed_at("2026/11/27 11:55:42 UTC") == 1795780542
    assert parse_failed_at("2026/11/27 06:55:42 -0500") == 1795780542
    assert parse_failed_at("2026-11-27T11:55:42.5Z") == 1795780542.5
    assert parse_failed_at(1795780542) is None and parse_failed_at("junk") is None
    assert parse_when("2h", now=10_000) == 2800 and parse_when("1d", now=86_400) == 0


def test_a_ref_acts_only_if_the_list_did_not_move(r, redis_url):
    r.rpush(K.failed, entry(0), entry(1), entry(2))
    refs = [f["ref"] for f in listed(redis_url)["failures"]]
    # resque-web's Remove of entry 0 meanwhile (LSET "" + LREM): entry 1 is now at index 0.
    r.lset(K.failed, 0, "")
    r.lrem(K.failed, 1, "")
    result = admin(redis_url, "failed", "retry", refs[1])
    assert result.exit_code == 2 and "the failure list moved" in result.stderr
    assert "give the id alone" in result.stderr
    assert r.llen(K.queue("critical")) == 0 and "retried_at" not in r.lindex(K.failed, 0)
    assert admin(redis_url, "failed", "remove", refs[2]).exit_code == 2
    # The id alone finds the entry wherever it went.
    result = admin(redis_url, "failed", "retry", refs[1].split(":")[1])
    assert result.exit_code == 0, result.output
    assert r.lrange(K.queue("critical"), 0, -1) == ['{"class":"Boom","args":[1]}']
    assert json.loads(r.lindex(K.failed, 0))["retried_at"]
    ref2 = [f["ref"] for f in listed(redis_url)["failures"]][1]
    assert admin(redis_url, "failed", "remove", ref2).exit_code == 0
    assert [json.loads(e)["payload"]["args"] for e in r.lrange(K.failed, 0, -1)] == [[1]]
    shown = json.loads(admin(redis_url, "failed", "show", "0", "--json").stdout)
    assert shown["ref"] == "0:" + entry_id(r.lindex(K.failed, 0))


def test_filters_newest_first_and_limit(r, redis_url):
    r.rpush(K.failed,
            entry(0, cls="A", when=BASE - 7200), entry(1, cls="B", exc="Resque::DirtyExit"),
            entry(2, cls="A", queue="low", worker="other:9:low", error="timeout talking to S3"),
            entry(3, cls="ActiveJob::QueueAdapters::ResqueAdapter::JobWrapper"), "not json")
    r.lset(K.failed, 3, codec.encode({**json.loads(r.lindex(K.failed, 3)), "payload": {
        "class": "ActiveJob::QueueAdapters::ResqueAdapter::JobWrapper",
        "args": [{"job_class": "MailJob", "arguments": []}]}}))

    def indexes(*args):
        return [f["index"] for f in listed(redis_url, *args)["failures"]]

    assert indexes() == [0, 1, 2, 3, 4]
    assert indexes("--newest") == [4, 3, 2, 1, 0]
    assert indexes("--newest", "--limit", "2") == [4, 3]
    assert indexes("--class", "A") == [0, 2]
    assert indexes("--class", "MailJob") == [3]
    assert indexes("--exception", "Resque::DirtyExit") == [1]
    assert indexes("--queue", "low") == [2]
    assert indexes("--worker", "other:9") == [2] and indexes("--worker", "vm") == [0, 1, 3]
    assert indexes("--grep", "TIMEOUT.*s3") == [2]
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(BASE - 3600))
    assert indexes("--since", since, "--class", "A") == [2]
    assert indexes("--until", since) == [0]
    assert listed(redis_url, "--class", "A", "--limit", "1")["total"] == 2
    result = admin(redis_url, "failed", "list", "--since", "yesterday")
    assert result.exit_code == 2 and "30m, 2h or 7d" in result.stderr


def test_bulk_retry_and_remove_count_first(r, redis_url):
    r.rpush(K.failed, *[entry(n, cls="A" if n % 2 else "B") for n in range(10)])
    result = admin(redis_url, "failed", "retry", "--class", "A", "--dry-run")
    assert result.stdout == "5 failure(s) match; nothing done (dry run)\n"
    assert r.llen(K.queue("critical")) == 0
    result = admin(redis_url, "failed", "retry", "--class", "A", input="n\n")
    assert result.exit_code == 1 and "Retry 5 failure(s)?" in result.output
    assert r.llen(K.queue("critical")) == 0
    result = admin(redis_url, "failed", "retry", "--class", "A", input="y\n")
    assert result.exit_code == 0 and "retried 5 of 5 matching failure(s)" in result.output
    assert sorted(json.loads(j)["args"][0] for j in r.lrange(K.queue("critical"), 0, -1)) == [1, 3, 5, 7, 9]
    result = admin(redis_url, "failed", "remove", "--class", "B", "--yes")
    assert result.stdout == "removed 5 of 5 matching failure(s)\n"
    assert [json.loads(e)["payload"]["args"][0] for e in r.lrange(K.failed, 0, -1)] == [1, 3, 5, 7, 9]
    assert all("retried_at" in json.loads(e) for e in r.lrange(K.failed, 0, -1))
    result = admin(redis_url, "failed", "retry", "--class", "A", "--all")
    assert result.exit_code == 2 and "give either a failure INDEX or --all" in result.stderr


def test_multi_queue_backend(r, redis_url):
    for q in ("critical", "low"):
        r.sadd(K.failed_queues, K.queue_failed_name(q))
    r.rpush(K.queue_failed("critical"), entry(0, queue="critical"), entry(2, queue="critical", cls="A"))
    r.rpush(K.queue_failed("low"), entry(1, queue="low", cls="A"), entry(3, queue="low"))
    multi = ["--backend", "redis_multi_queue"]
    data = json.loads(admin(redis_url, "failed", *multi, "list", "--json", "--newest").stdout)
    assert [(f["list"], f["entry"]["payload"]["args"][0]) for f in data["failures"]] == [
        ("low_failed", 3), ("critical_failed", 2), ("low_failed", 1), ("critical_failed", 0)]
    result = admin(redis_url, "failed", *multi, "retry", "--class", "A", "--yes")
    assert result.exit_code == 0 and "retried 2 of 2" in result.stdout
    assert r.lrange(K.queue("critical"), 0, -1) == ['{"class":"A","args":[2]}']
    assert r.lrange(K.queue("low"), 0, -1) == ['{"class":"A","args":[1]}']
    # RedisMultiQueue's retried_at has no zone (fixture 10b).
    assert re.fullmatch(r"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d",
                        json.loads(r.lindex(K.queue_failed("low"), 0))["retried_at"])
    ref = data["failures"][0]["ref"]
    assert admin(redis_url, "failed", *multi, "remove", ref, "--queue", "low").exit_code == 0
    assert r.llen(K.queue_failed("low")) == 1


def test_bulk_retry_while_workers_add_failures_and_others_remove(r):
    """Workers RPUSH new failures of the same class, and resque-web removes other entries
    (shifting indexes down) while a bulk retry runs: every failure present at the start is
    retried exactly once, nothing else is touched, and the report adds up."""
    originals = [entry(n, cls="A" if n % 3 else "B") for n in range(3000)]
    r.rpush(K.failed, *originals)
    wanted = {json.loads(e)["payload"]["args"][0] for e in originals if '"A"' in e}
    done = gevent.event.Event()
    added, removed = [], []

    def worker():  # a worker failing jobs of the same class, on its own connection
        client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
        n = 10_000
        while not done.is_set():
            client.rpush(K.failed, entry(n, cls="A"))
            added.append(n)
            n += 1
            gevent.sleep(0)

    def web_remover():  # resque-web's Remove of B entries near the head, by index, all along
        client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
        index = 0
        while not done.is_set() and index < 1500:
            raw = client.lindex(K.failed, index)
            if raw and '"B"' in raw:
                client.lset(K.failed, index, "")
                client.lrem(K.failed, 1, "")
                removed.append(json.loads(raw)["payload"]["args"][0])
            index += 1
            gevent.sleep(0)

    triage = Triage(Failures(redis.Redis.from_url(REDIS_URL), K))
    greenlets = [gevent.spawn(worker), gevent.spawn(web_remover)]
    report = triage.bulk("retry", FailureFilter(class_name="A"))
    done.set()
    gevent.joinall(greenlets, raise_error=True)

    assert added and removed  # the race really happened
    requeued = [json.loads(j)["args"][0] for j in r.lrange(K.queue("critical"), 0, -1)]
    assert sorted(requeued) == sorted(set(requeued))          # nobody retried twice
    assert wanted <= set(requeued)                            # every original A retried
    assert set(requeued) <= wanted | set(added)               # no B ever
    # Failures pushed before the scan read the list's length are in it, later ones are not:
    # the extras are exactly the first few pushed.
    extras = sorted(set(requeued) - wanted)
    assert extras == added[:len(extras)] and len(extras) < len(added)
    assert len(requeued) == report.done == report.matched and report.problems == [] and report.gone == 0
    entries = [json.loads(e) for e in r.lrange(K.failed, 0, -1)]
    retried = {e["payload"]["args"][0] for e in entries if "retried_at" in e}
    assert retried == set(requeued)                           # the marks match the pushes
    assert not set(removed) & retried and len(entries) == len(originals) + len(added) - len(removed)


def test_bulk_remove_while_workers_add_failures(r):
    """A bulk remove racing a worker's RPUSHes removes exactly the matching entries present when
    its scan began (the first few pushed may be among them) and nothing else."""
    r.rpush(K.failed, *[entry(n, cls="A" if n % 2 else "B") for n in range(4000)])
    done = gevent.event.Event()
    added = []

    def worker():
        client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
        n = 10_000
        while not done.is_set():
            client.rpush(K.failed, entry(n, cls="A" if n % 2 else "B"))
            added.append(n)
            n += 1
            gevent.sleep(0)

    greenlet = gevent.spawn(worker)
    report = Triage(Failures(redis.Redis.from_url(REDIS_URL), K)).bulk("remove", FailureFilter(class_name="A"))
    done.set()
    greenlet.join()
    left = [json.loads(e)["payload"] for e in r.lrange(K.failed, 0, -1)]
    assert added and report.gone == 0 and report.done == report.matched
    assert [p["args"][0] for p in left if p["class"] == "B"] == \
        list(range(0, 4000, 2)) + [n for n in added if n % 2 == 0]        # every B kept, in order
    kept_new_a = [p["args"][0] for p in left if p["class"] == "A"]
    removed_new_a = [n for n in added if n % 2 and n not in kept_new_a]
    assert all(p["args"][0] >= 10_000 for p in left if p["class"] == "A")  # every original A gone
    assert removed_new_a == [n for n in added if n % 2][:len(removed_new_a)]
    assert report.done == 2000 + len(removed_new_a)
