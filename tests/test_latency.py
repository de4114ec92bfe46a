"""Queue latency: exact from enqueued_at, estimated from the head's first sighting otherwise,
through the tracker and ``resque-py queues`` on the real Redis."""
from __future__ import annotations

import json
import time

from resque_compat import activejob
from resque_compat.metrics.latency import ESTIMATE, EXACT, OldestJobAge
from resque_compat.wire import codec
from tests.test_admin_cli import admin

PLAIN = '{"class":"Plain","args":[1]}'


def test_exact_age_from_enqueued_at_and_estimate_from_first_sighting():
    ages = OldestJobAge()
    data = activejob.job_data("MailJob", (1,), {}, queue="mail")
    data["enqueued_at"] = "2026-11-27T11:55:41.000000000Z"
    aj = codec.encode({"class": activejob.JOB_WRAPPER, "args": [data]})
    assert ages.observe("mail", aj, 1795780541 + 30) == (30.0, EXACT)
    assert ages.observe("plain", PLAIN, 1000.0) == (0.0, ESTIMATE)       # first sighting
    assert ages.observe("plain", PLAIN.encode(), 1012.5) == (12.5, ESTIMATE)
    assert ages.observe("plain", '{"class":"Plain","args":[2]}', 1013.0) == (0.0, ESTIMATE)  # popped
    assert ages.observe("plain", None, 1014.0) is None                   # empty
    assert ages.observe("plain", PLAIN, 1015.0) == (0.0, ESTIMATE)       # a new head, not the old one
    ages.forget_others({"mail"})
    assert ages.observe("plain", PLAIN, 1020.0) == (0.0, ESTIMATE)


def test_queues_shows_the_oldest_jobs_age(r, redis_url):
    now = r.time()[0]
    data = activejob.job_data("MailJob", (1,), {}, queue="mail")
    data["enqueued_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 30))
    r.sadd("resque:queues", "mail", "plain", "empty")
    r.rpush("resque:queue:mail", codec.encode({"class": activejob.JOB_WRAPPER, "args": [data]}))
    r.rpush("resque:queue:plain", PLAIN)
    text = admin(redis_url, "queues").stdout.splitlines()
    assert text[0] == "empty\t0\t-" and text[2] == "plain\t1\t?"
    name, size, age = text[1].split("\t")
    assert (name, size) == ("mail", "1") and 30 <= float(age.rstrip("s")) < 40
    result = admin(redis_url, "queues", "--json", "--watch", "0.1", "--times", "3")
    assert result.exit_code == 0, result.output
    *_, last = [json.loads(line) for line in result.stdout.splitlines()]
    by_name = {q["name"]: q for q in last}
    assert by_name["plain"]["age_method"] == "first_seen" and 0.15 <= by_name["plain"]["oldest_age"] < 5
    assert by_name["mail"]["age_method"] == "enqueued_at" and by_name["mail"]["oldest_age"] >= 30
    assert by_name["empty"]["oldest_age"] is None
