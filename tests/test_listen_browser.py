"""``resque-py listen --serve`` in a real browser: headless Chromium loads the page, plays the
WAV stream and shows the live counter (issue 8).

The page is read through the DevTools protocol (``--remote-debugging-port``) with a minimal
WebSocket client below, because ``--dump-dom`` waits ~20 s for a page whose audio never ends.
Chromium must be installed (CI: ``.ci/services``); without it the test fails and says so.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request

import pytest

from bench.run import free_port
from resque_compat.listen.events import BUSY, DEPTH, JOB, Event, write_jsonl
from tests.conftest import REDIS_URL, ROOT

#: Bytes of one second of 16-bit stereo 44.1 kHz audio.
ONE_SECOND = 44100 * 4


class DevTools:
    """Just enough of a WebSocket client (RFC 6455, text frames) to call DevTools methods."""

    def __init__(self, ws_url: str) -> None:
        host_port, path = ws_url[len("ws://"):].split("/", 1)
        host, port = host_port.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /{path} HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101"), head
        self.next_id = 0

    def _read(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            assert chunk, "DevTools closed the connection"
            data += chunk
        return data

    def _send(self, text: str) -> None:
        payload = text.encode()
        mask = os.urandom(4)
        n = len(payload)
        header = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else
                                  bytes([0x80 | 126]) + struct.pack(">H", n) if n < 65536 else
                                  bytes([0x80 | 127]) + struct.pack(">Q", n))
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def _receive(self) -> dict:
        message = b""
        while True:
            first, second = self._read(2)
            n = second & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            message += self._read(n)
            if first & 0x80:
                return json.loads(message)

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self._send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            reply = self._receive()
            if reply.get("id") == self.next_id:
                assert "error" not in reply, reply
                return reply["result"]

    def evaluate(self, expression: str):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"]["value"]


def start_chromium(profile: str) -> subprocess.Popen:
    if shutil.which("chromium") is None:
        pytest.fail("chromium is not installed; install it with `apt-get install -y chromium` "
                    "(.ci/services does this in CI)", pytrace=False)
    return subprocess.Popen(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--mute-audio",
         "--autoplay-policy=no-user-gesture-required", f"--user-data-dir={profile}",
         "--remote-debugging-port=0", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def devtools_page(profile: str, deadline: float) -> DevTools:
    port_file = os.path.join(profile, "DevToolsActivePort")
    while not os.path.exists(port_file) or not open(port_file).read().strip():
        assert time.time() < deadline, "chromium did not open its DevTools port"
        time.sleep(0.05)
    port = int(open(port_file).read().split()[0])
    targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5).read())
    page = next(t for t in targets if t["type"] == "page")
    return DevTools(page["webSocketDebuggerUrl"])


PAGE_STATE = """JSON.stringify({
  events: Number(document.getElementById("events").textContent),
  jobs: Number(document.getElementById("jobs").textContent),
  played: document.getElementById("audio").currentTime,
  error: document.getElementById("audio").error && document.getElementById("audio").error.code
})"""


def test_a_browser_plays_the_stream_and_counts_live_events(tmp_path):
    now = time.time()
    events = [Event(now, DEPTH, queues={"critical": 500}), Event(now, BUSY, n=4)]
    events += [Event(now + 0.25 * (i + 1), JOB, queue="critical", n=20, span=0.25) for i in range(32)]
    jsonl = tmp_path / "events.jsonl"
    with open(jsonl, "w") as fh:
        write_jsonl(events, fh)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "resque_compat", "--redis", REDIS_URL, "listen", "--replay", str(jsonl),
         "--serve", f"127.0.0.1:{port}", "--seconds", "40"],
        cwd=ROOT, stderr=subprocess.PIPE, text=True)
    browser = None
    try:
        assert "open http://127.0.0.1" in server.stderr.readline()
        deadline = time.time() + 25
        browser = start_chromium(str(tmp_path / "profile"))
        page = devtools_page(str(tmp_path / "profile"), deadline)
        page.call("Page.navigate", url=f"http://127.0.0.1:{port}/")
        states = []
        while time.time() < deadline:
            state = json.loads(page.evaluate(PAGE_STATE) or "{}") if states or _loaded(page) else {}
            if state:
                states.append(state)
                counts = [s["events"] for s in states if s["events"]]
                if counts and counts[-1] > counts[0] and state["played"] > 1.0:
                    break
            time.sleep(0.2)
        assert states, "the page never loaded"
        assert states[-1]["error"] is None, f"the <audio> element failed: {states[-1]}"
        counts = [s["events"] for s in states if s["events"]]
        assert counts and counts[-1] > counts[0], f"the live counter did not move: {states}"
        assert states[-1]["played"] > 1.0, f"the browser did not play the stream: {states[-1]}"
        stats = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5).read())
        chrome = [s for s in stats["streams"] if "Chrome" in s["agent"]]
        assert chrome and max(s["bytes"] for s in chrome) > ONE_SECOND, stats
    finally:
        if browser is not None:
            os.killpg(browser.pid, signal.SIGKILL)
            browser.wait()
        server.terminate()
        server.wait(10)


def _loaded(page: DevTools) -> bool:
    return page.evaluate("document.readyState !== 'loading' && !!document.getElementById('events')")
