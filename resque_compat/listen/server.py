"""``--serve HOST:PORT``: the live sound over HTTP to any number of listeners (gevent pywsgi).

* ``GET /`` — a tiny page: an ``<audio>`` element on the stream and a live event counter that
  polls ``/stats`` twice a second;
* ``GET /stream.wav`` — an endless 16-bit 44.1 kHz stereo WAV (a streaming header with unknown
  sizes, then PCM as it is rendered, HTTP/1.1 chunked). Each listener joins at the next block;
  one that cannot keep up loses its oldest blocks rather than falling behind real time;
* ``GET /stats`` — JSON counters: events by kind, current depth and busy workers, and the
  bytes sent to every listener (connected and past), so a test can tell the browser received
  audio.
"""
from __future__ import annotations

import itertools
import json
import logging
import time
from typing import Any, Callable, Dict, Iterable, List, Tuple

from gevent import pywsgi
from gevent.queue import Full, Queue

from resque_compat.common.urls import parse_host_port
from resque_compat.listen.events import BUSY, DEPTH, FAILURE, JOB, Event
from resque_compat.listen.wav import streaming_header

logger = logging.getLogger("resque_compat.listen")

#: Blocks (0.1 s each) a slow listener may have waiting before its oldest are dropped.
LISTENER_BACKLOG = 20

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>resque-py listen</title>
<style>body{font:16px/1.5 system-ui,sans-serif;margin:2em;max-width:40em}
#counts span{font-variant-numeric:tabular-nums;font-weight:bold}</style></head>
<body><h1>Hear your queues</h1>
<p><audio id="audio" src="/stream.wav" controls autoplay preload="auto"></audio>
<button id="play" type="button">Play</button></p>
<p id="counts">events <span id="events">0</span> &middot; jobs <span id="jobs">0</span>
&middot; failures <span id="failures">0</span> &middot; waiting <span id="depth">0</span>
&middot; busy <span id="busy">0</span> &middot; listeners <span id="listeners">0</span></p>
<p>played <span id="played">0</span> s</p>
<script>
const audio = document.getElementById("audio");
document.getElementById("play").onclick = () => audio.play();
function show(stats) {
  for (const name of ["events", "jobs", "failures", "depth", "busy", "listeners"]) {
    document.getElementById(name).textContent = stats[name];
  }
  document.getElementById("played").textContent = audio.currentTime.toFixed(1);
}
async function poll() {
  try { show(await (await fetch("/stats", {cache: "no-store"})).json()); } catch (e) {}
  setTimeout(poll, 500);
}
poll();
</script></body></html>
"""


class Listener:
    __slots__ = ("id", "queue", "bytes_sent", "since", "agent", "open")

    def __init__(self, listener_id: int, agent: str) -> None:
        self.id = listener_id
        self.queue: Queue = Queue(maxsize=LISTENER_BACKLOG)
        self.bytes_sent = 0
        self.since = time.time()
        self.agent = agent
        self.open = True


class Broadcast:
    """Fans rendered PCM out to listeners and keeps the counters ``/stats`` shows."""

    def __init__(self) -> None:
        self.listeners: Dict[int, Listener] = {}
        self.closed: List[Listener] = []
        self._ids = itertools.count(1)
        self.counts = {"events": 0, "jobs": 0, "failures": 0, "depth": 0, "busy": 0}

    def count(self, event: Event) -> None:
        self.counts["events"] += 1
        if event.kind == JOB:
            self.counts["jobs"] += event.n
        elif event.kind == FAILURE:
            self.counts["failures"] += event.n
        elif event.kind == DEPTH:
            self.counts["depth"] = event.depth
        elif event.kind == BUSY:
            self.counts["busy"] = event.n

    def publish(self, pcm: bytes) -> None:
        for listener in list(self.listeners.values()):
            try:
                listener.queue.put_nowait(pcm)
            except Full:  # drop the oldest block: stay live rather than fall behind
                listener.queue.get_nowait()
                listener.queue.put_nowait(pcm)

    def join(self, agent: str) -> Listener:
        listener = Listener(next(self._ids), agent)
        self.listeners[listener.id] = listener
        logger.info("listener %d joined (%s)", listener.id, agent or "unknown agent")
        return listener

    def leave(self, listener: Listener) -> None:
        if self.listeners.pop(listener.id, None) is not None:
            listener.open = False
            self.closed.append(listener)
            logger.info("listener %d left after %d bytes", listener.id, listener.bytes_sent)

    def stats(self) -> Dict[str, Any]:
        every = [*self.closed, *self.listeners.values()]
        return {
            **self.counts,
            "listeners": len(self.listeners),
            "bytes_sent": sum(l.bytes_sent for l in every),
            "streams": [{"id": l.id, "bytes": l.bytes_sent, "open": l.open, "agent": l.agent,
                         "since": round(l.since, 3)} for l in every],
        }

    def stream(self, listener: Listener) -> Iterable[bytes]:
        try:
            header = streaming_header()
            yield header
            listener.bytes_sent += len(header)
            while True:
                chunk = listener.queue.get()
                yield chunk
                listener.bytes_sent += len(chunk)  # counted once the server asked for more
        finally:
            self.leave(listener)


def make_app(broadcast: Broadcast) -> Callable[..., Iterable[bytes]]:
    def app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Allow", "GET")])
            return [b"GET only\n"]
        if path == "/":
            body = PAGE.encode("utf-8")
            start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                                      ("Content-Length", str(len(body)))])
            return [body]
        if path == "/stats":
            body = json.dumps(broadcast.stats()).encode("utf-8")
            start_response("200 OK", [("Content-Type", "application/json"), ("Cache-Control", "no-store"),
                                      ("Content-Length", str(len(body)))])
            return [body]
        if path == "/stream.wav":
            listener = broadcast.join(environ.get("HTTP_USER_AGENT", ""))
            start_response("200 OK", [("Content-Type", "audio/wav"), ("Cache-Control", "no-store"),
                                      ("Accept-Ranges", "none")])
            return broadcast.stream(listener)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: try / (the player), /stream.wav or /stats\n"]

    return app


def parse_address(text: str) -> Tuple[str, int]:
    """``127.0.0.1:8765`` -> ("127.0.0.1", 8765); raises ValueError with an example."""
    try:
        return parse_host_port(text, default_host="127.0.0.1")
    except ValueError:
        raise ValueError(f"--serve takes HOST:PORT, e.g. --serve 127.0.0.1:8765 (got {text!r})") from None


def serve(address: str, broadcast: Broadcast) -> pywsgi.WSGIServer:
    """Start serving in the background and return the server (``stop()`` it when done)."""
    server = pywsgi.WSGIServer(parse_address(address), make_app(broadcast), log=None,
                               error_log=logger)
    try:
        server.start()
    except OSError as exc:
        raise OSError(f"cannot serve on {address} ({exc.strerror or exc}); choose another "
                      "--serve HOST:PORT") from None
    host, port = server.address[:2]
    logger.info("listen: open http://%s:%d/ to hear your queues", host, port)
    return server

