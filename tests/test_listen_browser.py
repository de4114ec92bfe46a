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
from resque_compat.listen.events import BUSY, DEPTH, FAILURE, JOB, Event, write_jsonl
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


#: Where the spectrogram test leaves its screenshot (issue 18 item 4), for a human to look at.
ARTIFACTS = os.path.join(ROOT, "test-artifacts")

CANVAS_STATE = """JSON.stringify({
  columns: window.listen.columns,
  analyser: window.listen.analyser,
  played: document.getElementById("audio").currentTime,
  picture: document.getElementById("spectrogram").toDataURL(),
  queues: [...document.querySelectorAll("#queues .queue")].map(row => row.textContent),
  failures: [...document.querySelectorAll("#failures li")].map(item => item.textContent)
})"""


def test_the_page_draws_what_you_hear_and_stands_still_when_idle(tmp_path):
    """Idle, then a 4 s burst on two queues with failures, then idle again: the spectrogram
    (an AnalyserNode on the page's own audio) moves only while there is sound; the queue strip
    and the last failures (with their class) show the burst."""
    deadline = time.time() + 40
    browser = start_chromium(str(tmp_path / "profile"))  # first: it takes seconds to start
    server = None
    try:
        page = devtools_page(str(tmp_path / "profile"), deadline)
        now = time.time()
        burst = now + 8  # 8 s of silence first: the browser plays, the picture must not move
        events = [Event(now, BUSY, n=0)]  # the replay's clock starts here; BUSY 0 is silent
        events += [Event(burst + 0.1 * (i + 1), JOB, queue=q, n=n, span=0.1)
                   for i in range(40) for q, n in (("critical", 30), ("mailers", 5))]
        events += [Event(burst + 1 + i, FAILURE, queue="critical", exception="RuntimeError",
                         job_class="Callbacks::Deliver") for i in range(3)]
        jsonl = tmp_path / "events.jsonl"
        with open(jsonl, "w") as fh:
            write_jsonl(sorted(events, key=lambda e: e.t), fh)
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "resque_compat", "--redis", REDIS_URL, "listen", "--replay", str(jsonl),
             "--serve", f"127.0.0.1:{port}", "--seconds", "40"],
            cwd=ROOT, stderr=subprocess.PIPE, text=True)
        assert "open http://127.0.0.1" in server.stderr.readline()
        page.call("Emulation.setDeviceMetricsOverride", width=900, height=760, deviceScaleFactor=1, mobile=False)
        page.call("Page.navigate", url=f"http://127.0.0.1:{port}/")
        _watch_spectrogram(page, burst, deadline)
    finally:
        os.killpg(browser.pid, signal.SIGKILL)
        browser.wait()
        if server is not None:
            server.terminate()
            server.wait(10)


def _watch_spectrogram(page: DevTools, burst: float, deadline: float) -> None:
    def state():
        return json.loads(page.evaluate(CANVAS_STATE))

    def wait_for(check, what):
        current = None
        while time.time() < deadline:
            current = state() if _loaded(page) and page.evaluate("!!window.listen") else None
            if current and check(current):
                return current
            time.sleep(0.1)
        shown = current and {k: v for k, v in current.items() if k != "picture"}
        raise AssertionError(f"{what}; page: {shown}")

    quiet = wait_for(lambda s: s["analyser"] == "running" and s["played"] > 0.5,
                     "the page's Web Audio never ran while the stream played")
    assert time.time() < burst - 0.5, "the page took too long to start playing to see the idle start"
    assert quiet["columns"] == 0, "the spectrogram moved while nothing was heard"
    before = wait_for(lambda s: s["columns"] > 0, "the spectrogram never moved during the burst")
    during = wait_for(lambda s: s["columns"] > before["columns"] + 40, "the spectrogram stopped mid-burst")
    assert during["picture"] != before["picture"]
    os.makedirs(ARTIFACTS, exist_ok=True)
    shot = page.call("Page.captureScreenshot", format="png")["data"]
    with open(os.path.join(ARTIFACTS, "listen-spectrogram.png"), "wb") as fh:
        fh.write(base64.b64decode(shot))
    # idle again once the burst (4 s), its release and the browser's buffer are over: the
    # columns stop, and then a whole second passes without a change to the picture
    last = wait_for(lambda s: time.time() > burst + 5 and len(s["failures"]) == 3, "failures not listed")
    while True:
        time.sleep(1.0)
        current = state()
        assert time.time() < deadline, "the spectrogram kept moving after the burst"
        if current["columns"] == last["columns"]:
            break
        last = current
    time.sleep(1.0)  # a second of idle: nothing may be drawn in it
    assert state()["picture"] == current["picture"], "the spectrogram moved while idle"
    assert any(q.startswith("critical") and "1200 jobs" in q for q in current["queues"]), current["queues"]
    assert any(q.startswith("mailers") and "200 jobs" in q for q in current["queues"]), current["queues"]
    assert all("Callbacks::Deliver" in f and "RuntimeError" in f for f in current["failures"]), current["failures"]
