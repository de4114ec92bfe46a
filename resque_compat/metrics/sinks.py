"""Where :mod:`metrics` sends its periodic batches: StatsD over UDP, Carbon plaintext over TCP.

Both are called only from the metrics flush greenlet, never from a job's greenlet, and neither
can stop the worker: a StatsD packet is fire-and-forget, and Carbon lines wait in a bounded
buffer while the connection is down and go out on the next flush that reconnects.
"""
from __future__ import annotations

import logging
import socket
import time
from collections import deque
from typing import Deque, Iterable, List, Optional, Tuple

from resque_compat.common.urls import parse_host_port

log = logging.getLogger("resque_compat.metrics")

#: Largest StatsD datagram: under a 1500-byte Ethernet MTU minus IP/UDP headers, so a packet is
#: never fragmented (a lost fragment loses the whole packet).
STATSD_PACKET = 1432
#: Carbon lines kept while Graphite is unreachable (oldest dropped first): about an hour of one
#: busy process at the default 5 s interval.
CARBON_BUFFER = 100_000
#: Longest pause between attempts to reconnect to Carbon.
CARBON_MAX_BACKOFF = 60.0
CONNECT_TIMEOUT = 2.0


def split_address(text: str) -> Tuple[str, int]:
    """``HOST:PORT`` (settings already checked it) -> (host, port)."""
    return parse_host_port(text)


def packets(lines: Iterable[str], limit: int = STATSD_PACKET) -> List[bytes]:
    """Join StatsD lines with newlines into datagrams of at most ``limit`` bytes each."""
    out: List[bytes] = []
    current = b""
    for line in lines:
        data = line.encode("utf-8")
        if current and len(current) + 1 + len(data) > limit:
            out.append(current)
            current = b""
        current = current + b"\n" + data if current else data
    if current:
        out.append(current)
    return out


class StatsdSink:
    """StatsD over UDP: one ``sendto`` per datagram, errors logged once and otherwise ignored."""

    def __init__(self, address: str) -> None:
        self.host, self.port = split_address(address)
        self.sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET,
                                  socket.SOCK_DGRAM)
        self._target: Optional[Tuple[str, int]] = None
        self._warned = False

    def send(self, lines: List[str]) -> None:
        if not lines:
            return
        try:
            target = self._target
            if target is None:  # resolve once (cooperatively); retried after a failure
                address = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)[0][4]
                target = self._target = (str(address[0]), int(address[1]))
            for datagram in packets(lines):
                self.sock.sendto(datagram, target)
            self._warned = False
        except OSError as exc:
            self._target = None
            if not self._warned:
                log.warning("cannot send metrics to StatsD at %s:%s (%s); will keep trying every "
                            "flush. Check --statsd", self.host, self.port, exc)
                self._warned = True

    def close(self) -> None:
        self.sock.close()


class CarbonSink:
    """Carbon plaintext (``path value timestamp``) over one TCP connection, reconnecting with
    back-off; unsent lines wait in a bounded buffer."""

    def __init__(self, address: str, buffer_size: int = CARBON_BUFFER) -> None:
        self.host, self.port = split_address(address)
        self.buffer: Deque[str] = deque(maxlen=buffer_size)
        self.sock: Optional[socket.socket] = None
        self._retry_at = 0.0
        self._backoff = 1.0

    def send(self, lines: List[str]) -> None:
        self.buffer.extend(lines)
        if not self.buffer:
            return
        if self.sock is None and not self._connect():
            return
        sock = self.sock
        if sock is None:  # _connect() failed without saying so
            return
        data = "".join(line + "\n" for line in self.buffer).encode("utf-8")
        try:
            sock.sendall(data)
        except OSError as exc:
            log.warning("lost the Graphite connection to %s:%s (%s); %d line(s) kept for the "
                        "next flush", self.host, self.port, exc, len(self.buffer))
            self._drop()
            return
        self.buffer.clear()

    def _connect(self) -> bool:
        now = time.monotonic()
        if now < self._retry_at:
            return False
        try:
            self.sock = socket.create_connection((self.host, self.port), timeout=CONNECT_TIMEOUT)
            self.sock.settimeout(CONNECT_TIMEOUT * 5)
        except OSError as exc:
            self._retry_at = now + self._backoff
            log.warning("cannot connect to Graphite at %s:%s (%s); retrying in %.0fs with %d "
                        "line(s) kept. Check --graphite", self.host, self.port, exc, self._backoff,
                        len(self.buffer))
            self._backoff = min(self._backoff * 2, CARBON_MAX_BACKOFF)
            self.sock = None
            return False
        self._backoff = 1.0
        return True

    def _drop(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None

    def close(self) -> None:
        self._drop()
