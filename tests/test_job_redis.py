"""resque_compat.redis (issue 17 req 5): the auto-pipelined client for job bodies, on the real
Redis: redis-py's return values, one round trip for the commands of many greenlets with each
greenlet's own reply or error, a connection lost in the middle of a batch, refused and
blocking commands, and JOB_REDIS_URL inside a worker."""
from __future__ import annotations

import gevent
import pytest
import redis as redis_py
from gevent.event import Event

from resque_compat import redis as job_redis
from resque_compat import testing
from resque_compat.registry import job, unregister
from tests.conftest import REDIS_URL


@pytest.fixture
def jr(r):
    """The shared client configured on the test DB, closed afterwards."""
    job_redis.configure(REDIS_URL, max_connections=4)
    yield job_redis.client()
    job_redis.close()


def test_commands_return_what_redis_py_returns(jr, r):
    assert jr.set("k", "v") is True
    assert jr.get("k") == b"v"
    assert jr.incr("n") == 1 and jr.incrby("n", 4) == 5
    assert jr.hset("h", mapping={"a": 1, "b": 2}) == 2
    assert jr.hgetall("h") == {b"a": b"1", b"b": b"2"}
    assert jr.lpush("l", 1, 2, 3) == 3 and jr.lrange("l", 0, -1) == [b"3", b"2", b"1"]
    assert jr.expire("k", 100) is True and 0 < jr.ttl("k") <= 100
    assert jr.mget(["k", "missing"]) == [b"v", None]
    assert jr.exists("k", "missing") == 1
    assert jr.delete("k", "n") == 2
    assert jr.get("k") is None
    plain = redis_py.Redis.from_url(REDIS_URL)
    assert plain.hgetall("h") == jr.hgetall("h")
    plain.close()


def test_a_thousand_greenlets_get_their_own_replies_and_errors_in_few_round_trips(jr, r):
    """Mixed commands from 1,000 greenlets, a third of them with an error injected (INCR on a
    text value, a list command on a hash): each sees exactly its own results."""
    before = job_redis.stats()
    outcomes = {}

    def body(i: int) -> None:
        got = [jr.set(f"k{i}", f"v{i}" if i % 3 == 0 else i), jr.incr("counter")]
        try:
            got.append(jr.incr(f"k{i}"))
        except redis_py.ResponseError as exc:
            got.append(f"error: {exc}")
        got += [jr.get(f"k{i}"), jr.hset("h", f"f{i}", i), jr.lpush(f"l{i}", i, i + 1)]
        try:
            got.append(jr.lpush("h", 1))
        except redis_py.ResponseError as exc:
            got.append(type(exc).__name__ + ("" if "WRONGTYPE" in str(exc) else ": unexpected"))
        got.append(jr.hget("h", f"f{i}"))
        outcomes[i] = got

    gevent.joinall([gevent.spawn(body, i) for i in range(1000)], raise_error=True)

    for i, got in outcomes.items():
        if i % 3 == 0:
            assert got[2].startswith("error: value is not an integer"), got
            assert got[3] == f"v{i}".encode()
        else:
            assert got[2] == i + 1 and got[3] == str(i + 1).encode(), got
        assert got[0] is True and 1 <= got[1] <= 1000
        assert got[4:] == [1, 2, "ResponseError", str(i).encode()], got
    assert sorted(got[1] for got in outcomes.values()) == list(range(1, 1001))  # each INCR once
    assert int(r.get("counter")) == 1000 and r.hlen("h") == 1000
    sent = job_redis.stats()
    commands = sent["commands"] - before["commands"]
    trips = sent["round_trips"] - before["round_trips"]
    assert commands == 8000
    assert trips <= commands / 50, f"{commands} commands took {trips} round trips"


def test_a_connection_lost_mid_batch_fails_exactly_the_commands_without_a_reply(r):
    """CLIENT KILL of the batch's own connection: Redis answers the commands before it (and the
    kill), then closes; the commands after it in the batch fail, and nothing is sent twice."""
    job_redis.configure(REDIS_URL, max_connections=1)
    jr = job_redis.client()
    try:
        own_id = jr.client_id()  # the pool's only connection carries every batch
        results = {}

        def run(name, fn):
            try:
                results[name] = fn()
            except redis_py.ConnectionError as exc:
                results[name] = exc

        greenlets = [
            gevent.spawn(run, "before", lambda: jr.incr("before")),
            gevent.spawn(run, "kill", lambda: jr.execute_command("CLIENT", "KILL", "ID", own_id, "SKIPME", "no")),
            gevent.spawn(run, "after", lambda: jr.incr("after")),
            gevent.spawn(run, "after_set", lambda: jr.set("after_set", 1)),
        ]
        gevent.joinall(greenlets, raise_error=True)
        assert results["before"] == 1 and results["kill"] == 1
        assert isinstance(results["after"], redis_py.ConnectionError)
        assert isinstance(results["after_set"], redis_py.ConnectionError)
        assert r.get("before") == "1" and r.get("after") is None and r.get("after_set") is None
        # The next batch gets a new connection and works.
        assert jr.incr("before") == 2
    finally:
        job_redis.close()


def test_transactions_and_pubsub_are_refused_and_pipeline_has_its_own_connection(jr, r):
    for args in (("MULTI",), ("WATCH", "k"), ("SELECT", 1), ("SUBSCRIBE", "c"), ("CLIENT", "REPLY", "OFF")):
        with pytest.raises(job_redis.SharedConnectionError, match="pipeline"):
            jr.execute_command(*args)
    with jr.pipeline() as pipe:  # MULTI/EXEC on a pooled connection of its own
        pipe.incr("t").incr("t")
        assert pipe.execute() == [1, 2]
    assert jr.get("t") == b"2"


def test_a_blocking_command_waits_on_its_own_connection_while_batches_go_on(jr, r):
    popped = Event()
    result = {}

    def waiter():
        result["blpop"] = jr.blpop(["q"], timeout=5)
        popped.set()

    g = gevent.spawn(waiter)
    gevent.sleep(0)  # let it send BLPOP
    assert jr.incr("meanwhile") == 1 and not popped.is_set()  # not stuck behind BLPOP
    assert jr.rpush("q", "x") == 1
    assert popped.wait(5)
    g.join()
    assert result["blpop"] == (b"q", b"x")


def test_a_worker_job_uses_job_redis_url(r, resque):
    """Inside resque-py work the client is on JOB_REDIS_URL (here the same Redis with a client
    name, so the job can see which connection it got)."""
    seen = []

    @job("JobRedis::Incr", queue="jr")
    def incr(n):
        client = job_redis.client()
        seen.append(client.client_getname())
        client.incr("jobs")

    try:
        for n in range(20):
            resque.enqueue_to("jr", "JobRedis::Incr", n)
        result = testing.drain(resque, ["jr"], fibers=10, job_redis_url=REDIS_URL + "?client_name=jobs-x")
        assert result.processed == 20 and result.failed == 0
        assert r.get("jobs") == "20"
        assert set(seen) == {"jobs-x"}
    finally:
        unregister("JobRedis::Incr")
        job_redis.close()


def test_redis_unreachable_fails_every_command_of_the_batch_and_nothing_hangs():
    job_redis.configure("redis://127.0.0.1:6408/0", max_connections=2)  # nothing listens there
    try:
        def incr():
            with pytest.raises(redis_py.ConnectionError):
                job_redis.client().incr("n")

        greenlets = [gevent.spawn(incr) for _ in range(10)]
        gevent.joinall(greenlets, timeout=10, raise_error=True)
        assert all(g.dead for g in greenlets)
    finally:
        job_redis.close()
