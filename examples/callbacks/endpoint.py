"""A local callback receiver that answers 200 after a fixed delay, and reports how late it was.

Run it for the demo::

    python examples/callbacks/endpoint.py --port 0 --delay 0.1

The first line on stdout is the port it listens on. Any path except ``/stats`` is a callback:
the body is read, the server waits ``--delay`` seconds (or ``?delay=`` seconds) and answers
``{"ok":true}`` with status 200 (or ``?status=``). ``GET /stats`` answers
``{"requests": N, "max_late_ms": .., "p99_late_ms": ..}`` where lateness is how much longer than
the requested delay a request took inside the server: if it grows, the receiver and not the
worker is the bottleneck of a benchmark. ``POST /stats/reset`` zeroes the counters.

One gevent process with a large accept backlog: waiting costs nothing, so 1,000 concurrent
callbacks wait together; only parsing and answering use CPU.
"""
from __future__ import annotations

if __name__ == "__main__":  # patch before anything below imports socket or threading
    from gevent import monkey

    monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import deque  # noqa: E402
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple  # noqa: E402
from urllib.parse import parse_qs  # noqa: E402

import gevent  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402

log = logging.getLogger("callbacks.endpoint")

DEFAULT_DELAY = 0.1
DEFAULT_BACKLOG = 2048
_OK_BODY = b'{"ok":true}'
_REASONS = {200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 400: "Bad Request",
            404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error",
            502: "Bad Gateway", 503: "Service Unavailable"}


class Lateness:
    """Requests answered and how late they were, over the most recent ``keep`` requests."""

    def __init__(self, keep: int = 100_000) -> None:
        self.requests = 0
        self.max_late = 0.0
        self._samples: deque = deque(maxlen=keep)

    def record(self, late: float) -> None:
        self.requests += 1
        if late > self.max_late:
            self.max_late = late
        self._samples.append(late)

    def reset(self) -> None:
        self.requests = 0
        self.max_late = 0.0
        self._samples.clear()

    def snapshot(self) -> Dict[str, Any]:
        samples = sorted(self._samples)
        p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))] if samples else 0.0
        return {
            "requests": self.requests,
            "max_late_ms": round(self.max_late * 1000, 3),
            "p99_late_ms": round(p99 * 1000, 3),
        }


def make_app(delay: float = DEFAULT_DELAY, stats: Optional[Lateness] = None) -> Callable[..., Iterable[bytes]]:
    """The WSGI app; ``stats`` collects lateness (a new :class:`Lateness` if not given)."""
    lateness = stats if stats is not None else Lateness()

    def reply(start_response: Callable[..., Any], status: int, body: bytes) -> List[bytes]:
        start_response(f"{status} {_REASONS.get(status, 'Status')}",
                       [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    def app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = time.perf_counter()
        path = environ.get("PATH_INFO", "")
        if path == "/stats":
            return reply(start_response, 200, json.dumps(lateness.snapshot()).encode())
        if path == "/stats/reset":
            lateness.reset()
            return reply(start_response, 200, _OK_BODY)
        environ["wsgi.input"].read()  # drain the body so the connection can be reused
        wait, status = delay, 200
        query = environ.get("QUERY_STRING")
        if query:
            args = parse_qs(query)
            try:
                wait = float(args.get("delay", [wait])[0])
                status = int(args.get("status", [status])[0])
            except ValueError:
                return reply(start_response, 400, b'{"error":"delay and status must be numbers"}')
        if wait > 0:
            gevent.sleep(wait)
        lateness.record(time.perf_counter() - started - wait)
        return reply(start_response, status, _OK_BODY)

    app.lateness = lateness  # type: ignore[attr-defined]
    return app


class NoDelayWSGIServer(WSGIServer):
    """pywsgi sends the headers and the body in two writes; with Nagle's algorithm on, the body
    waits for the client's delayed ACK, adding 40 ms to every keep-alive response."""

    def handle(self, sock: socket.socket, address: Any) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().handle(sock, address)


def serve(host: str = "127.0.0.1", port: int = 0, delay: float = DEFAULT_DELAY,
          backlog: int = DEFAULT_BACKLOG) -> Tuple[WSGIServer, Lateness]:
    """Start the receiver in this process's hub; returns the started server and its stats."""
    lateness = Lateness()
    server = NoDelayWSGIServer((host, port), make_app(delay, lateness), backlog=backlog, log=None)
    server.start()
    return server, lateness


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Local callback receiver for the resque_compat demo.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = any free port (printed first)")
    parser.add_argument("--delay", type=float, default=DEFAULT_DELAY, help="seconds before answering")
    parser.add_argument("--backlog", type=int, default=DEFAULT_BACKLOG,
                        help="accept queue length (capped by net.core.somaxconn)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    server, _ = serve(args.host, args.port, args.delay, args.backlog)
    # The demo reads this line to find us; nothing else goes to stdout.
    sys.stdout.write(f"{server.server_port}\n")
    sys.stdout.flush()
    log.info("listening on %s:%d, answering after %.3f s", args.host, server.server_port, args.delay)
    for sig in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(sig, server.stop, 1.0)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
