"""``--serve HOST:PORT``: the live sound over HTTP to any number of listeners (gevent pywsgi).

* ``GET /`` — the page of :mod:`.page`: the player, a live spectrogram of what it plays, a
  per-queue activity strip and the last failures (``/stats`` twice a second);
* ``GET /stream.wav`` — an endless 16-bit 44.1 kHz stereo WAV (a streaming header with unknown
  sizes, then PCM as it is rendered, HTTP/1.1 chunked). Each listener joins at the next block;
  one that cannot keep up loses its oldest blocks rather than falling behind real time;
* ``GET /stats`` — JSON counters: events by kind, current depth and busy workers, per queue
  its totals, recent rate and stereo place, the last :data:`LAST_FAILURES` failures (time,
  queue, class, exception), and the bytes sent to every listener (connected and past), so a
  test can tell the browser received audio.
"""
from __future__ import annotations

import itertools
import json
import logging
import math
import time
from typing import Any, Callable, Dict, Iterable, List, Tuple

from gevent import pywsgi
from gevent.queue import Full, Queue

from resque_compat.common.urls import parse_host_port
from resque_compat.listen.events import BUSY, DEPTH, FAILURE, JOB, Event
from resque_compat.listen.page import PAGE
from resque_compat.listen.wav import streaming_header

logger = logging.getLogger("resque_compat.listen")

#: Blocks (0.1 s each) a slow listener may have waiting before its oldest are dropped.
LISTENER_BACKLOG = 20
#: Failures the page lists, newest last.
LAST_FAILURES = 12
#: Seconds over which a queue's rate on the page decays: a strip that follows what you hear.
RATE_SECONDS = 2.0



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
        self.queues: Dict[str, Dict[str, float]] = {}
        self.last_failures: List[Dict[str, Any]] = []

    def _queue(self, name: str, now: float) -> Dict[str, float]:
        q = self.queues.get(name)
        if q is None:
            q = self.queues[name] = {"jobs": 0, "failures": 0, "level": 0.0, "at": now}
        q["level"] *= math.exp(-max(0.0, now - q["at"]) / RATE_SECONDS)
        q["at"] = now
        return q

    def count(self, event: Event) -> None:
        self.counts["events"] += 1
        if event.kind in (JOB, FAILURE):
            q = self._queue(event.queue, time.time())
            q["level"] += event.n
        if event.kind == JOB:
            self.counts["jobs"] += event.n
            q["jobs"] += event.n
        elif event.kind == FAILURE:
            self.counts["failures"] += event.n
            q["failures"] += event.n
            self.last_failures.append({"t": round(event.t, 3), "queue": event.queue, "class": event.job_class,
                                       "exception": event.exception, "n": event.n})
            del self.last_failures[:-LAST_FAILURES]
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
        from resque_compat.listen.synth import queue_voice

        every = [*self.closed, *self.listeners.values()]
        now = time.time()
        queues = {}
        for name in list(self.queues):
            q = self._queue(name, now)
            queues[name] = {"jobs": int(q["jobs"]), "failures": int(q["failures"]),
                            "rate": round(q["level"] / RATE_SECONDS, 2), "hz": queue_voice(name)[0],
                            "pan": queue_voice(name)[1]}
        return {
            **self.counts,
            "queues": queues,
            "last_failures": list(self.last_failures),
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

