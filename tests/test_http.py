"""resque_compat.http against a real gevent HTTP server in this process, and the demo endpoint."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from typing import Any, Dict, Iterator, List

import gevent
import gevent.event
import pytest
import requests
from gevent.pywsgi import WSGIServer

from resque_compat import http
from resque_compat.errors import ConfigurationError, ResqueError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Server:
    """Routes: /echo (method, body, content type as JSON), /status/N, /slow (answers when
    ``release`` is set), /work (20 ms of simulated server time). Counts TCP connections."""

    def __init__(self) -> None:
        self.release = gevent.event.Event()
        self.open = 0
        self.max_open = 0
        self.accepted = 0
        self.requests: List[str] = []
        self.url = ""

    def app(self, environ: Dict[str, Any], start_response: Any) -> List[bytes]:
        path = environ["PATH_INFO"]
        body = environ["wsgi.input"].read()
        self.requests.append(path)
        status, payload = "200 OK", b""
        headers = [("Content-Type", "application/json")]
        if path == "/echo":
            payload = json.dumps({
                "method": environ["REQUEST_METHOD"],
                "body": body.decode("utf-8"),
                "content_type": environ.get("CONTENT_TYPE", ""),
                "user_agent": environ.get("HTTP_USER_AGENT", ""),
            }).encode()
        elif path.startswith("/status/"):
            code = int(path.rsplit("/", 1)[1])
            status = f"{code} Something"
            payload = b"nope"
            if 300 <= code < 400:
                headers.append(("Location", self.url + "/echo"))
        elif path == "/slow":
            self.release.wait(10)
        elif path == "/work":
            gevent.sleep(0.02)  # the server's own latency, so requests overlap
        elif path == "/latin1":
            headers = [("Content-Type", "text/plain; charset=iso-8859-1")]
            payload = "caf\u00e9".encode("iso-8859-1")
        start_response(status, headers + [("Content-Length", str(len(payload)))])
        return [payload]


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server()

    class CountingServer(WSGIServer):
        def handle(self, sock, address):
            state.accepted += 1
            state.open += 1
            state.max_open = max(state.max_open, state.open)
            try:
                super().handle(sock, address)
            finally:
                state.open -= 1

    srv = CountingServer(("127.0.0.1", 0), state.app, log=None)
    srv.start()
    state.url = f"http://127.0.0.1:{srv.server_port}"
    yield state
    state.release.set()
    http.close()
    http.configure(http.DEFAULT_POOL_SIZE)
    srv.stop(timeout=1)


def test_post_json_is_compact_and_round_trips(server):
    http.configure(4)
    response = http.post(server.url + "/echo", json={"a": 1, "b": [1, 2], "s": "caf\u00e9"})
    assert response.status == 200 and response.ok
    echoed = response.json()
    assert echoed["method"] == "POST"
    assert echoed["body"] == '{"a":1,"b":[1,2],"s":"caf\u00e9"}'
    assert echoed["content_type"] == "application/json"
    assert echoed["user_agent"].startswith("resque_compat/")

    response = http.get(server.url + "/echo", headers={"user-agent": "mine"})
    assert response.json()["method"] == "GET" and response.json()["user_agent"] == "mine"
    assert response.headers["content-type"] == "application/json"

    response = http.post(server.url + "/echo", body="raw", headers={"Content-Type": "text/plain"})
    assert response.json()["body"] == "raw" and response.json()["content_type"] == "text/plain"
    assert http.get(server.url + "/latin1").text == "caf\u00e9"
    with pytest.raises(TypeError):
        http.post(server.url + "/echo", body=b"x", json={})


def test_raise_for_status_names_status_and_url_and_redirects_are_not_followed(server):
    response = http.get(server.url + "/status/503")
    assert response.status == 503 and not response.ok
    with pytest.raises(http.HTTPError) as info:
        response.raise_for_status()
    assert info.value.status == 503 and info.value.url == server.url + "/status/503"
    assert "503" in str(info.value) and "/status/503" in str(info.value)
    assert isinstance(info.value, ResqueError)

    redirect = http.get(server.url + "/status/302")
    assert redirect.status == 302 and not redirect.ok
    assert server.requests.count("/echo") == 0
    with pytest.raises(http.HTTPError, match="Location"):
        redirect.raise_for_status()
    assert http.get(server.url + "/echo").raise_for_status().status == 200


def test_read_timeout_raises_http_timeout_with_url_and_limit(server):
    http.configure(2, connect_timeout=1.0, read_timeout=0.2)
    started = time.perf_counter()
    with pytest.raises(http.HTTPTimeout) as info:
        http.get(server.url + "/slow")
    elapsed = time.perf_counter() - started
    assert 0.2 <= elapsed < 1.5
    message = str(info.value)
    assert server.url + "/slow" in message and "0.2 s read timeout" in message
    assert info.value.limit == 0.2 and isinstance(info.value, TimeoutError)

    with pytest.raises(http.HTTPTimeout, match="0.1 s read"):
        http.get(server.url + "/slow", timeout=0.1)
    stats = http.stats()
    assert stats["timeouts"] == 2 and stats["errors"] == 2 and stats["in_flight"] == 0


def test_refused_connection_is_a_connection_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(http.HTTPConnectionError) as info:
        http.get(f"http://127.0.0.1:{port}/x")
    assert f"127.0.0.1:{port}/x" in str(info.value)
    assert not isinstance(info.value, http.HTTPTimeout)


def test_50_greenlets_share_5_connections_by_waiting_not_discarding(server):
    http.configure(5)
    greenlets = [gevent.spawn(http.get, server.url + "/work") for _ in range(50)]
    gevent.joinall(greenlets, raise_error=True)
    assert [g.value.status for g in greenlets] == [200] * 50
    assert server.max_open == 5
    assert server.accepted == 5  # a discarded connection would have forced a new one
    stats = http.stats()
    assert stats["total"] == 50 and stats["max_in_flight"] == 50 and stats["in_flight"] == 0
    assert stats["pool_size"] == 5 and stats["errors"] == 0


def test_session_applies_the_default_timeout_and_shares_the_bounded_pool(server):
    http.configure(3, connect_timeout=1.0, read_timeout=0.2)

    def one() -> int:
        with http.session() as s:  # closing a session must not close the shared pool
            assert isinstance(s, requests.Session)
            return s.get(server.url + "/work").status_code

    greenlets = [gevent.spawn(one) for _ in range(20)]
    gevent.joinall(greenlets, raise_error=True)
    assert [g.value for g in greenlets] == [200] * 20
    assert server.max_open == 3 and server.accepted == 3

    with http.session() as s:
        started = time.perf_counter()
        with pytest.raises(requests.exceptions.ReadTimeout):
            s.get(server.url + "/slow")
        assert time.perf_counter() - started < 1.5
        assert s.get(server.url + "/echo", timeout=5).status_code == 200


def test_configure_rejects_nonsense():
    with pytest.raises(ConfigurationError):
        http.configure(0)
    with pytest.raises(ConfigurationError, match="HTTP_TIMEOUT"):
        http.configure(5, read_timeout=0)


def test_works_before_configure_with_defaults(server):
    code = ("from gevent import monkey; monkey.patch_all()\n"
            "import json, sys\n"
            "from resque_compat import http\n"
            "r = http.get(sys.argv[1])\n"
            "print(json.dumps({'status': r.status, **http.stats()}))\n")
    # gevent's subprocess: the server in this process keeps answering while we wait
    out = subprocess.run([sys.executable, "-c", code, server.url + "/echo"], cwd=ROOT,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["status"] == 200 and result["pool_size"] == 10 and result["total"] == 1


# --- examples/callbacks/endpoint.py ----------------------------------------------------------

def test_endpoint_answers_after_its_delay_and_reports_lateness():
    from examples.callbacks import endpoint

    srv, lateness = endpoint.serve(port=0, delay=0.05)
    try:
        url = f"http://127.0.0.1:{srv.server_port}"
        started = time.perf_counter()
        greenlets = [gevent.spawn(http.post, url + "/cb", json={"i": i}) for i in range(20)]
        gevent.joinall(greenlets, raise_error=True)
        assert [g.value.status for g in greenlets] == [200] * 20
        assert 0.05 <= time.perf_counter() - started < 1.0  # concurrently, not 20 x 50 ms
        assert http.post(url + "/cb?status=500&delay=0").status == 500
        stats = http.get(url + "/stats").json()
        assert set(stats) == {"requests", "max_late_ms", "p99_late_ms"}
        assert stats["requests"] == 21 and stats["max_late_ms"] >= stats["p99_late_ms"] >= 0
        assert lateness.requests == 21
        http.post(url + "/stats/reset")
        assert http.get(url + "/stats").json()["requests"] == 0
    finally:
        srv.stop(timeout=1)
        http.close()


def test_endpoint_script_prints_its_port_first():
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "examples", "callbacks", "endpoint.py"),
                             "--port", "0", "--delay", "0.01"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        assert http.get(f"http://127.0.0.1:{port}/x").status == 200
        assert http.get(f"http://127.0.0.1:{port}/stats").json()["requests"] == 1
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
        proc.stdout.close()
        proc.stderr.close()
        http.close()
