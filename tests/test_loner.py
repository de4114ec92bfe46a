"""resque-loner on both sides, against the gem's fixtures (fixtures/ruby-plugins/loner_*)."""
from __future__ import annotations

import pytest

from resque_compat.wire.plugins import loner_digest, loner_digest_input
from tests import loner_lock_jobs  # noqa: F401  registers LonerJob, LonerTtlJob, NotUniqueJob here too
from tests.conftest import ROOT, wait_for
from tests.keyspace import dump
from tests.plugin_fixtures import assert_ttls, load_plugin_fixture, plugin_state

JOBS = ROOT + "/tests/loner_lock_jobs.py"
ARGS = ["a", 1, {"z": 1, "a": [2, 1], "m": {"y": 1, "b": 2}}, 1.0]


def test_digest_inputs_and_md5s_are_the_gems():
    for name in ("loner_01_enqueued_twice.json",):
        for key, meta in load_plugin_fixture(name)["loner_keys"].items():
            class_name, args = ("LonerJob", ARGS) if "a\", 1" in meta["args_inspect"] else ("LonerJob", ["b"])
            assert loner_digest_input(class_name, args) == meta["digest_input"]
            assert key.endswith(loner_digest(class_name, args))
    fx = load_plugin_fixture("loner_03a_ttl_queued.json")
    for mapping in ({"b": 2, "a": 1}, {"a": 1, "b": 2}):  # both orders: one key (loner_03c)
        assert loner_digest_input("LonerTtlJob", ["ttl", mapping]) == fx["digest_input"]
        assert fx["loner_key"].endswith(loner_digest("LonerTtlJob", ["ttl", mapping]))


def test_enqueue_from_python_writes_loner_01_and_dequeue_loner_01b(r, resque):
    assert resque.enqueue("LonerJob", *ARGS) is True
    assert resque.enqueue("LonerJob", *ARGS) is False           # refused: the same job is queued
    assert resque.enqueue_to("loner", "LonerJob", *ARGS) is False
    assert resque.enqueue("LonerJob", "b") is True
    assert resque.enqueue("NotUniqueJob", "n") is True and resque.enqueue("NotUniqueJob", "n") is True
    assert dump(r, with_ttl=True) == load_plugin_fixture("loner_01_enqueued_twice.json")["keys"]
    assert resque.dequeue("LonerJob", "b") == 1
    assert dump(r, with_ttl=True) == load_plugin_fixture("loner_01b_dequeued.json")["keys"]


def test_a_job_enqueued_by_rails_is_reserved_by_python_and_can_be_enqueued_again(r, resque, start_worker):
    """loner_02a/02b: Ruby's enqueue bytes; our worker frees the key at reserve, while it runs."""
    fx = load_plugin_fixture("loner_02a_reserved_running.json")
    r.sadd("resque:queues", "loner")
    r.rpush("resque:queue:loner", '{"class":"LonerJob","args":["slow",3]}')
    r.set("resque:" + fx["loner_key"], "1")  # what the gem's Resque.enqueue wrote
    w = start_worker("QUEUE=loner", "INTERVAL=0.1", require=JOBS)
    assert r.blpop("test:started", timeout=15) == ("test:started", "slow"), w.output
    assert plugin_state(dump(r)) == plugin_state(fx["keys"])
    assert resque.enqueue("LonerJob", "slow", 3) is True  # accepted again while it runs
    fx_b = load_plugin_fixture("loner_02b_enqueued_again_while_running.json")
    assert plugin_state(dump(r)) == plugin_state(fx_b["keys"])
    r.rpush("test:release:slow", "go")


def test_ttl_and_lock_after_execution_period_like_loner_03(r, resque, start_worker):
    assert resque.enqueue("LonerTtlJob", "ttl", {"b": 2, "a": 1}) is True
    fx = load_plugin_fixture("loner_03a_ttl_queued.json")
    assert plugin_state(dump(r)) == plugin_state(fx["keys"])
    assert_ttls(r, fx["keys"])
    w = start_worker("QUEUE=loner", "INTERVAL=0.1", require=JOBS)
    wait_for(lambda: r.get("resque:stat:processed") == "1", 15, "the job to run")
    fx_b = load_plugin_fixture("loner_03b_ttl_after_reserve.json")
    assert plugin_state(dump(r)) == plugin_state(fx_b["keys"]), w.output
    assert_ttls(r, fx_b["keys"])
    assert resque.enqueue("LonerTtlJob", "ttl", {"b": 2, "a": 1}) is False
    assert resque.enqueue("LonerTtlJob", "ttl", {"a": 1, "b": 2}) is False
    fx_c = load_plugin_fixture("loner_03c_ttl_refused_after_run.json")
    assert plugin_state(dump(r)) == plugin_state(fx_c["keys"])
    assert r.lrange("test:ran", 0, -1) == ["LonerTtlJob"]


@pytest.mark.parametrize("bad", [0, -5, "300", True])
def test_bad_unique_ttl_says_what_to_give(resque, bad):
    from resque_compat.errors import RegistryError
    from resque_compat.loner import unique_for
    from resque_compat.registry import JobSpec
    from resque_compat.wire.keys import Keys

    spec = JobSpec("X", "q", None, lambda: None, "t", options={"unique": True, "unique_ttl": bad})
    with pytest.raises(RegistryError, match="unique_ttl=.*give whole seconds above 0"):
        unique_for(spec, Keys(), "q", [])


def test_remove_queue_forgets_its_loner_keys_even_without_the_jobs_loaded(r, resque):
    """The gem's cleanup_loners: a key left behind (no TTL) would refuse the job forever."""
    from tests.plugin_fixtures import load_plugin_state

    load_plugin_state(r, load_plugin_fixture("loner_01_enqueued_twice.json")["keys"])
    r.set("resque:loners:queue:loner2:job:d7cdd1c43e72fdfc99970abe9a322931", "1")  # another queue
    r.set("resque:loners:queue:l*:job:x", "1")  # a glob in a queue name matches only itself
    resque.remove_queue("loner")
    assert sorted(r.keys("resque:*")) == ["resque:loners:queue:l*:job:x",
                                          "resque:loners:queue:loner2:job:d7cdd1c43e72fdfc99970abe9a322931"]
    resque.remove_queue("l*")
    assert r.keys("resque:loners:*") == ["resque:loners:queue:loner2:job:d7cdd1c43e72fdfc99970abe9a322931"]


def test_with_oj_the_md5_is_over_ojs_float_bytes_but_lock_ids_keep_float_to_s():
    """resque-loner hashes MultiJson's output (Oj's floats with RUBY_JSON=oj); Array#join, used by
    lock-timeout and resque-retry, is Float#to_s whatever the JSON library."""
    from resque_compat.loner import lock_identifier
    from resque_compat.wire import codec

    try:
        codec.set_ruby_json("oj")
        assert loner_digest_input("LonerJob", [1e16, {"b": 1e16}]) == \
            '{"class":"LonerJob","args":[10000000000000000.0,[["b",10000000000000000.0]]]}'
        assert lock_identifier([1e16]) == "1.0e+16"
    finally:
        codec.set_ruby_json("json")
    assert loner_digest_input("LonerJob", [1e16]) == '{"class":"LonerJob","args":[1.0e+16]}'
