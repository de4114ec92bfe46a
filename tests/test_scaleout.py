"""Scale-out (issue 7 item 2): TLS, ACL users, Sentinel failover and --hostname, each against
real ``redis-server`` processes started on loopback by the test (tests/redis_servers.py).

Jobs record what they did on the shared test DB (``TEST_CONTROL_REDIS_URL``), which no test
here restarts, so a job's completion survives the death of the Redis it came from.
"""
from __future__ import annotations

import signal
import socket
import subprocess
import time

import gevent
import pytest
import redis

from resque_compat.client import Resque
from resque_compat.errors import RedisUnavailable
from resque_compat.store.connection import (
    RedisURLError,
    connect,
    parse_sentinel_url,
    pool_usage,
)
from tests.conftest import REDIS_URL
from tests.redis_servers import free_port, redis_servers  # noqa: F401  (fixture)
from tests.test_worker import wait_for


def control_env(url: str) -> dict:
    return {"REDIS_URL": url, "TEST_CONTROL_REDIS_URL": REDIS_URL}


# -- TLS ----------------------------------------------------------------------------------------

@pytest.fixture
def tls_files(tmp_path):
    """A self-signed certificate for 127.0.0.1 (made with the openssl CLI) and its key."""
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


def test_rediss_url_enqueues_and_works_over_tls_with_a_verified_certificate(r, redis_servers, tls_files,
                                                                             start_worker):
    cert, key = tls_files
    port = free_port()
    server = redis_servers("tls", ["--port", "0", "--tls-port", str(port), "--tls-cert-file", cert,
                                   "--tls-key-file", key, "--tls-ca-cert-file", cert,
                                   "--tls-auth-clients", "no"], port=port)
    server.wait_ready(lambda: server.client(ssl=True, ssl_ca_certs=cert))
    url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={cert}"

    resque = Resque.from_url(url)
    for n in range(3):
        resque.enqueue_to("critical", "OkJob", n, "tls")
    worker = start_worker("QUEUE=critical", "INTERVAL=0", env=control_env(url))
    assert worker.wait() == 0, worker.output

    assert sorted(r.lrange("test:ran", 0, -1)) == ["(0, 'tls')", "(1, 'tls')", "(2, 'tls')"]
    tls = server.client(ssl=True, ssl_ca_certs=cert)
    assert tls.get("resque:stat:processed") == "3"
    assert tls.llen("resque:queue:critical") == 0
    # The certificate really is checked: without the CA the handshake is refused ...
    with pytest.raises(RedisUnavailable, match="certificate verify failed"):
        Resque.from_url(f"rediss://127.0.0.1:{port}/0").ping()
    # ... and the port speaks only TLS.
    with pytest.raises(RedisUnavailable):
        Resque.from_url(f"redis://127.0.0.1:{port}/0").ping()


# -- ACL ----------------------------------------------------------------------------------------

def test_acl_user_in_the_url_runs_jobs_with_keys_limited_to_the_namespace(r, redis_servers, start_worker):
    # The least privilege a worker needs: its namespace's keys, no dangerous commands (no
    # KEYS, FLUSHALL, CONFIG, INFO...). The default user is off, so every client must log in.
    server = redis_servers("acl", ["--user", *"admin on >adminpw ~* &* +@all".split(),
                                   "--user", *("resque on >s3cr3t ~resque:* -@all +@read +@write "
                                               "+@scripting +@transaction +@connection +@fast +time").split(),
                                   "--user", "default", "off"])
    server.wait_ready(lambda: server.client(username="admin", password="adminpw"))
    url = f"redis://resque:s3cr3t@127.0.0.1:{server.port}/0"

    resque = Resque.from_url(url)
    resque.enqueue_to("critical", "OkJob", "acl")
    resque.enqueue_to("critical", "FailJob", "acl")
    worker = start_worker("QUEUE=critical", "INTERVAL=0", env=control_env(url))
    assert worker.wait() == 0, worker.output

    admin = server.client(username="admin", password="adminpw")
    assert r.lrange("test:ran", 0, -1) == ["('acl',)"]
    assert admin.get("resque:stat:processed") == "2"
    assert admin.get("resque:stat:failed") == "1"
    assert admin.llen("resque:failed") == 1
    assert admin.smembers("resque:workers") == set()  # unregistered on exit, under the ACL too
    assert all(k.startswith("resque:") for k in admin.keys("*"))

    # A wrong password stops the worker at start-up with exit 1, and the password is not echoed.
    bad = start_worker("QUEUE=critical", "INTERVAL=0",
                       env=control_env(f"redis://resque:wrong-pw@127.0.0.1:{server.port}/0"))
    assert bad.wait() == 1
    assert "cannot reach Redis at redis://resque:***@127.0.0.1" in bad.output
    assert "wrong-pw" not in bad.output


# -- Sentinel -----------------------------------------------------------------------------------

SERVICE = "resq"


def sentinel_config(port: int, master_port: int) -> str:
    # Small timings so a failover completes within seconds on loopback.
    return (f"port {port}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {master_port} 2\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 4000\n"
            f"sentinel parallel-syncs {SERVICE} 1\n")


def start_sentinel_group(redis_servers):
    """One master, one replica in sync, three Sentinels that know each other and the replica."""
    master = redis_servers("master")
    master.wait_ready(master.client)
    replica = redis_servers("replica", ["--replicaof", "127.0.0.1", str(master.port)])
    replica.wait_ready(replica.client)
    wait_for(lambda: replica.client().info("replication").get("master_link_status") == "up",
             what="the replica to sync")
    sentinels = []
    for n in range(3):
        port = free_port()
        sentinels.append(redis_servers(f"sentinel{n}", config=sentinel_config(port, master.port),
                                       port=port, sentinel=True))
    for s in sentinels:
        s.wait_ready(s.client)

    def settled():
        for s in sentinels:
            # The raw command: redis-py 6.4's sentinel_master() breaks on a plain client
            # (its reply parser rejects return_responses); the reply is field, value, ...
            flat = s.client().execute_command("SENTINEL", "MASTER", SERVICE)
            state = {_text(k): _text(v) for k, v in zip(flat[0::2], flat[1::2])}
            if int(state["num-other-sentinels"]) < 2 or int(state["num-slaves"]) < 1:
                return False
        return True
    wait_for(settled, timeout=20, what="the Sentinels to discover each other and the replica")
    return master, replica, sentinels


def _text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def test_sentinel_failover_mid_stream_loses_no_job(r, redis_servers, start_worker):
    master, replica, sentinels = start_sentinel_group(redis_servers)
    hosts = ",".join(f"127.0.0.1:{s.port}" for s in sentinels)
    url = f"redis+sentinel://{hosts}/{SERVICE}/0"
    worker = start_worker("QUEUE=faults", "FIBERS=4", "INTERVAL=0.05", "RESQUE_HEARTBEAT_INTERVAL=1",
                          env=control_env(url))
    producer = Resque.from_url(url)
    wait_for(lambda: master.client().scard("resque:workers") == 4, what="the worker to register")

    accepted = []  # ids Redis acknowledged (and, before the kill, a replica confirmed)
    killed_at = back_at = 0.0
    total, kill_at = 240, 80
    for n in range(total):
        job_id = f"j{n}"
        deadline = time.time() + 30
        while True:
            try:
                producer.enqueue_to("faults", "FaultJob", job_id, 0.05)
                break
            except redis.ConnectionError:  # the master is gone and no replica is promoted yet
                assert time.time() < deadline, "no master within 30 s of the kill"
                time.sleep(0.05)
        if master.proc.poll() is None:
            # Redis replication is asynchronous: a push the old master acknowledged but never
            # sent on is lost by Redis itself. WAIT makes each push reach the replica first.
            assert producer.redis.execute_command("WAIT", 1, 5000) == 1
        accepted.append(job_id)
        if killed_at and not back_at:
            back_at = time.time()
        if n == kill_at:
            wait_for(lambda: r.scard("test:faults:done") >= 20, what="jobs to be done before the kill")
            slots = [f"resque:worker:{i}" for i in master.client().smembers("resque:workers")]
            wait_for(lambda: any(master.client().mget(slots)), what="a job in flight")
            master.kill()  # with jobs in flight and more queued
            killed_at = time.time()
        time.sleep(0.004)

    new_master = replica.client()
    wait_for(lambda: r.scard("test:faults:done") >= len(set(accepted)) or None, timeout=30,
             what=f"every accepted job to be done (done {r.scard('test:faults:done')} of {len(accepted)})")
    done = r.smembers("test:faults:done")
    failed = new_master.lrange("resque:failed", 0, -1)
    assert set(accepted) - done == set(), f"lost jobs; failures: {failed[:3]}"
    assert failed == []
    assert new_master.llen("resque:queue:faults") == 0
    ids = new_master.smembers("resque:workers")
    assert len(ids) == 4 and all(new_master.get(f"resque:worker:{i}") is None for i in ids)
    # A failover really happened: every Sentinel names the former replica.
    assert {int(s.client().execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)[1]) for s in sentinels} == {replica.port}
    reruns = {k: int(v) for k, v in r.hgetall("test:faults:runs").items() if int(v) > 1}
    worker.signal(signal.SIGQUIT)
    assert worker.wait() == 0
    assert "Redis unreachable" in worker.output and "reachable again" in worker.output, worker.output
    print(f"failover: enqueues failed for {back_at - killed_at:.1f}s; {len(accepted)} jobs, "
          f"{len(reruns)} run twice (reserved on the old master, not replicated)")
    assert new_master.smembers("resque:workers") == set()


def test_sentinel_pool_is_bounded_and_blocking_like_the_plain_one(redis_servers):
    master = redis_servers("master")
    master.wait_ready(master.client)
    port = free_port()
    sentinel = redis_servers("sentinel", config=sentinel_config(port, master.port), port=port,
                             sentinel=True)
    sentinel.wait_ready(sentinel.client)
    client = connect(f"redis+sentinel://127.0.0.1:{port}/{SERVICE}/0", max_connections=2, timeout=0.3)
    assert client.set("k", "v") and master.client().get("k") == "v"
    assert Resque(client).info()["servers"] == [f"redis://127.0.0.1:{master.port}/0"]
    pool = client.connection_pool
    held = [pool.get_connection(), pool.get_connection()]
    assert {(c.host, c.port) for c in held} == {("127.0.0.1", master.port)}
    assert pool_usage(client) == {"size": 2, "in_use": 2, "waiting": 0}
    waiter = gevent.spawn(lambda: pytest.raises(redis.ConnectionError, pool.get_connection))
    wait_for(lambda: pool_usage(client)["waiting"] == 1, what="a third caller to wait")
    started = time.monotonic()
    assert "No connection available" in str(waiter.get().value)  # no third connection, ever
    assert time.monotonic() - started < 1.0 and pool_usage(client)["waiting"] == 0
    for conn in held:
        pool.release(conn)
    assert pool_usage(client)["in_use"] == 0
    # A master move disconnects idle connections (redis-py's Sentinel proxy asks for exactly that).
    pool.disconnect(inuse_connections=False)
    assert all(c._sock is None for c in held)
    assert client.get("k") == b"v"


def test_sentinel_url_syntax():
    sentinels, service, db, user, password, query = parse_sentinel_url(
        "redis+sentinel://app:p%40ss@10.0.0.1:26380,10.0.0.2,[::1]:26381/mymaster/3"
        "?socket_timeout=2.5&sentinel_password=sp")
    assert sentinels == [("10.0.0.1", 26380), ("10.0.0.2", 26379), ("::1", 26381)]
    assert (service, db, user, password) == ("mymaster", 3, "app", "p@ss")
    assert query == {"socket_timeout": 2.5, "sentinel_password": "sp"}
    assert parse_sentinel_url("redis+sentinel://h/svc")[1:3] == ("svc", 0)
    for bad, why in [("redis+sentinel://h:1/", "service name"),
                     ("redis+sentinel://h:x/svc", "port 'x'"),
                     ("redis+sentinel://h/svc/zero", "db 'zero'"),
                     ("redis+sentinel://u:secret@h/svc/1/2", "service name")]:
        with pytest.raises(RedisURLError, match=why) as info:
            connect(bad)
        assert "secret" not in str(info.value)


# -- --hostname ---------------------------------------------------------------------------------

def test_hostname_override_names_the_ids_and_decides_which_dead_workers_we_prune(r, start_worker):
    real = socket.gethostname()
    # Dead pids, same queue set: Ruby's ps rule prunes such ids only on their own host.
    r.sadd("resque:workers", "pod-7f9c:999999:critical:0", f"{real}:999998:critical:0")
    worker = start_worker("QUEUE=critical", "FIBERS=2", extra_args=["--hostname", "pod-7f9c"])
    ids = wait_for(lambda: sorted(w for w in r.smembers("resque:workers") if f":{worker.pid}:" in w),
                   what="registration")
    assert ids == [f"pod-7f9c:{worker.pid}:critical:0", f"pod-7f9c:{worker.pid}:critical:1"]
    assert set(r.hkeys("resque:workers:heartbeat")) == set(ids)
    members = r.smembers("resque:workers")
    assert "pod-7f9c:999999:critical:0" not in members  # "our" host, pid not running: pruned
    assert f"{real}:999998:critical:0" in members       # the real host name is another host now
    assert r.get("resque:pruning_dead_workers_in_progress") == ids[0]
    worker.signal(signal.SIGQUIT)
    assert worker.wait() == 0


def test_the_workers_redis_connections_parse_replies_with_hiredis(r):
    """hiredis is a dependency (issue 17 req 4): redis-py's C reply parser, -14 % CPU per job
    on W1. redis-py falls back to its Python parser silently, so check the pool really uses it."""
    from redis.utils import HIREDIS_AVAILABLE

    from resque_compat.store.connection import connect
    from tests.conftest import REDIS_URL

    client = connect(REDIS_URL, max_connections=2)
    try:
        client.ping()
        (connection,) = client.connection_pool._connections  # the one PING used
        assert HIREDIS_AVAILABLE, "pip install -e . (hiredis is in install_requires)"
        assert "Hiredis" in type(connection._parser).__name__
    finally:
        client.connection_pool.disconnect()
