"""A small TCP proxy on 127.0.0.1 that a test can stall or cut, to put a real network fault
between a worker and Redis or MySQL.

* :meth:`Proxy.pause` stops forwarding: connections stay open and bytes already sent wait in
  the proxy (as on a congested or partitioned link) until :meth:`Proxy.resume`, then arrive in
  order, late.
* :meth:`Proxy.cut` closes every connection and stops listening, so new connections are
  refused (the service looks down); :meth:`Proxy.restore` listens on the same port again.

Threads, so it works with or without gevent's monkey patching (under it they are greenlets).
"""
from __future__ import annotations

import logging
import socket
import threading
from typing import Optional, Set

log = logging.getLogger("tests.faults.proxy")

CHUNK = 65536


class Proxy:
    """Forward 127.0.0.1:``port`` (0 = pick one) to ``target_host``:``target_port``."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1", port: int = 0) -> None:
        self.target = (target_host, target_port)
        self.port = port
        self._flowing = threading.Event()
        self._flowing.set()
        self._lock = threading.Lock()
        self._sockets: Set[socket.socket] = set()
        self._listener: Optional[socket.socket] = None
        self.accepted = 0
        self._listen()

    # -- control -------------------------------------------------------------------------------
    def pause(self) -> None:
        """Stop moving bytes in both directions; connections stay up."""
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def cut(self) -> None:
        """Drop every connection and refuse new ones until :meth:`restore`."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            _close(sock)

    def restore(self) -> None:
        if self._listener is None:
            self._listen()

    def close(self) -> None:
        self.resume()
        self.cut()

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._sockets) // 2

    # -- forwarding ----------------------------------------------------------------------------
    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut() or close() closed the listener
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError as exc:
                log.warning("proxy cannot reach %s:%d (%s)", *self.target, exc)
                _close(client)
                continue
            with self._lock:
                if self._listener is not listener:  # cut while we were connecting
                    _close(client)
                    _close(upstream)
                    return
                self._sockets.update((client, upstream))
                self.accepted += 1
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(CHUNK)
                if not data:
                    break
                self._flowing.wait()  # bytes read during a pause are held until resume()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._sockets.discard(src)
                self._sockets.discard(dst)
            _close(src)
            _close(dst)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
