"""HTTP for jobs, shared by every greenlet of a worker process.

The default path (:func:`request`, :func:`get`, :func:`post`) goes straight to one
``urllib3.PoolManager``, the transport requests itself uses: a ``requests.Session`` call costs
1.0-1.5 ms of CPU for what urllib3 does in about 0.35 ms, and CPU is what limits how many jobs a
process runs. The pool keeps at most ``pool_size`` connections per host and makes a greenlet
wait for a free one instead of opening and discarding extras (``block=True``), so a worker with
100 greenlets never opens 100 sockets to one callback host unless told to.

Deliberate differences from requests, because these calls deliver callbacks:

* no retries: a POST that may have reached the server is never silently sent again;
* redirects are not followed: a 3xx comes back as the response and is not ``ok``;
* every call has a connect and a read timeout (HTTP_TIMEOUT, default 5 s and 30 s); the read
  timeout limits each wait for data, not the whole response.

Use :func:`session` when a job needs the full requests API (auth helpers, cookies, streaming).
"""
from __future__ import annotations

import json as _json
import logging
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Tuple, Union

from resque_compat.common.poolstats import PoolStats
from resque_compat.common.urls import redact
from resque_compat.errors import ConfigurationError, ResqueError
from resque_compat.version import __version__

if TYPE_CHECKING:  # pragma: no cover
    import requests
    import urllib3

# urllib3 is imported by the first request (_Client), not here: its import is 50-80 ms of a
# worker's start-up (issue 17 req 6), paid for nothing by workers whose jobs never call out.

log = logging.getLogger(__name__)

DEFAULT_POOL_SIZE = 10
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 30.0
DEFAULT_HOSTS = 100
USER_AGENT = f"resque_compat/{__version__}"

#: ``timeout=``: seconds for both phases, (connect, read) seconds, or a ``urllib3.Timeout``.
TimeoutValue = Union[float, Tuple[float, float], "urllib3.Timeout"]
#: ... or None, the client's own.
TimeoutArg = Optional[TimeoutValue]

_BASE_HEADERS = {"User-Agent": USER_AGENT}
_JSON_HEADERS = {"User-Agent": USER_AGENT, "Content-Type": "application/json"}


class HTTPError(ResqueError):
    """The server answered with a status that is not 2xx (see :meth:`Response.raise_for_status`)."""

    def __init__(self, response: "Response") -> None:
        self.response = response
        self.status = self.status_code = response.status
        self.url = response.url
        status = response.status
        if 300 <= status < 400:
            hint = (f"redirects are not followed; call the Location URL "
                    f"({response.headers.get('Location', 'none given')}) instead")
        elif status < 500:
            hint = "the server rejected the request; check the URL, payload and credentials"
        else:
            hint = "the server failed; the job can be retried once it recovers"
        # One line of at most 200 characters: a 404 page's HTML must not fill the log and the
        # failure entry (response.text has all of it).
        snippet = " ".join(response.data[:400].decode("utf-8", "replace").split())
        if len(snippet) > 200 or len(response.data) > 400:
            snippet = snippet[:199] + "…"
        super().__init__(
            f"{response.method} {redact(response.url)} answered HTTP {status} {response.reason}"
            + (f": {snippet}" if snippet else "") + f" ({hint})"
        )


class HTTPTimeout(ResqueError, TimeoutError):
    """No connection or no response within the time limit."""

    def __init__(self, method: str, url: str, phase: str, limit: Any) -> None:
        self.url = url
        self.phase = phase
        self.limit = limit
        what = "could not connect" if phase == "connect" else "got no response"
        super().__init__(
            f"{method} {redact(url)} timed out: {what} within the {limit:g} s {phase} timeout; "
            "check that the server is up, or raise HTTP_TIMEOUT (CONNECT,READ seconds) or pass "
            "timeout= for this call"
        )


class HTTPConnectionError(ResqueError, ConnectionError):
    """The request failed below HTTP: refused, reset, DNS, TLS."""

    def __init__(self, method: str, url: str, cause: BaseException) -> None:
        self.url = url
        super().__init__(f"{method} {redact(url)} failed: {cause}; check the URL and that the "
                         "server accepts connections (requests are not retried)")


class Response:
    """A finished response, body fully read (the connection is already back in the pool).

    Shaped like ``requests.Response``: ``status_code``, ``ok``, ``content``, ``text``,
    ``json()``, ``headers`` (case-insensitive), ``url``, ``reason`` and ``raise_for_status()``.
    One difference: redirects are not followed, so a 3xx is not ``ok`` and raise_for_status()
    raises for it, naming the Location (with requests you would have the final page).
    ``status`` and ``data`` are urllib3's names for ``status_code`` and ``content``.
    """

    __slots__ = ("status", "reason", "headers", "data", "url", "method")

    def __init__(self, status: int, reason: str, headers: Any, data: bytes, url: str, method: str) -> None:
        self.status = status
        self.reason = reason
        #: case-insensitive mapping (``urllib3.HTTPHeaderDict``)
        self.headers = headers
        self.data = data
        self.url = url
        self.method = method

    @property
    def status_code(self) -> int:
        """The HTTP status, as requests names it."""
        return self.status

    @property
    def content(self) -> bytes:
        """The body as bytes, as requests names it."""
        return self.data

    @property
    def ok(self) -> bool:
        """2xx; unlike requests, a 3xx is not ok because redirects are not followed."""
        return 200 <= self.status < 300

    @property
    def text(self) -> str:
        """The body decoded with the charset the server declared, else UTF-8."""
        charset = "utf-8"
        ctype = self.headers.get("Content-Type", "")
        if "charset=" in ctype:
            charset = ctype.split("charset=", 1)[1].split(";", 1)[0].strip().strip('"') or charset
        try:
            return self.data.decode(charset, "replace")
        except LookupError:
            return self.data.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body parsed as JSON (``ValueError`` if it is not JSON)."""
        return _json.loads(self.data)

    def raise_for_status(self) -> "Response":
        """Raise :class:`HTTPError` unless the status is 2xx; return the response otherwise."""
        if not 200 <= self.status < 300:
            raise HTTPError(self)
        return self

    def __repr__(self) -> str:
        return f"<Response [{self.status}] {self.method} {redact(self.url)}>"


class _Client:
    """The live pools for one configuration."""

    def __init__(self, pool_size: int, connect_timeout: float, read_timeout: float, hosts: int) -> None:
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.hosts = hosts
        import urllib3
        import urllib3.exceptions

        self.urllib3 = urllib3
        self.errors = urllib3.exceptions
        self.timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
        self.stats = PoolStats(pool_size)
        self.manager = urllib3.PoolManager(
            num_pools=hosts, maxsize=pool_size, block=True, timeout=self.timeout, retries=False,
            **_ca_kwargs(),
        )
        self._adapter: Any = None

    def adapter(self) -> Any:
        if self._adapter is None:
            self._adapter = _shared_adapter_class()(
                (self.connect_timeout, self.read_timeout),
                pool_connections=self.hosts, pool_maxsize=self.pool_size, pool_block=True,
                max_retries=0,
            )
        return self._adapter

    def close(self) -> None:
        self.manager.clear()
        if self._adapter is not None:
            self._adapter.close_pools()


def _ca_kwargs() -> Dict[str, Any]:
    # requests verifies against certifi's bundle; do the same so a URL that works with
    # requests works here, whatever the container's system store holds.
    try:
        import certifi
    except ImportError:  # pragma: no cover - certifi comes with requests
        return {}
    return {"ca_certs": certifi.where()}


_adapter_class: Any = None


def _shared_adapter_class() -> Any:
    """An HTTPAdapter shared by every session() that applies default timeouts.

    Built on first use so importing this module does not import requests (≈100 ms).
    """
    global _adapter_class
    if _adapter_class is None:
        from requests.adapters import HTTPAdapter

        class SharedTimeoutAdapter(HTTPAdapter):
            """Default timeout for calls without one; close() is a no-op because many sessions
            share this adapter, and closing one session must not drop the others' connections."""

            def __init__(self, default_timeout: Tuple[float, float], **kwargs: Any) -> None:
                self.default_timeout = default_timeout
                super().__init__(**kwargs)

            def send(self, request: Any, stream: bool = False, timeout: Any = None, verify: Any = True,
                     cert: Any = None, proxies: Any = None) -> Any:
                if timeout is None:
                    timeout = self.default_timeout
                return super().send(request, stream=stream, timeout=timeout, verify=verify,
                                    cert=cert, proxies=proxies)

            def close(self) -> None:
                pass

            def close_pools(self) -> None:
                super().close()

        _adapter_class = SharedTimeoutAdapter
    return _adapter_class


_settings: Tuple[int, float, float, int] = (DEFAULT_POOL_SIZE, DEFAULT_CONNECT_TIMEOUT,
                                            DEFAULT_READ_TIMEOUT, DEFAULT_HOSTS)
_client: Optional[_Client] = None


def configure(pool_size: int, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
              read_timeout: float = DEFAULT_READ_TIMEOUT, hosts: int = DEFAULT_HOSTS) -> None:
    """Size the shared pools and set the default timeouts; closes the previous pools.

    ``pool_size`` is the most connections kept to one host (the runner passes FIBERS, so no
    greenlet waits for another); ``hosts`` is how many hosts' pools are kept before the least
    recently used is closed. Without a call, the defaults are pool_size 10, 5 s and 30 s.
    """
    if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
        raise ConfigurationError(
            f"HTTP pool size must be a whole number of at least 1, e.g. FIBERS=10 (got {pool_size!r})")
    for name, value in (("connect", connect_timeout), ("read", read_timeout)):
        if not value > 0:
            raise ConfigurationError(
                f"HTTP_TIMEOUT {name} seconds must be more than 0, e.g. HTTP_TIMEOUT=5,30 (got {value!r})")
    global _settings
    close()
    _settings = (pool_size, float(connect_timeout), float(read_timeout), int(hosts))


def _current() -> _Client:
    global _client
    client = _client
    if client is None:
        client = _client = _Client(*_settings)
    return client


def _timeout(client: _Client, value: TimeoutValue) -> "urllib3.Timeout":
    """A call's own ``timeout=`` as urllib3's (None, the default, is ``client.timeout``)."""
    timeout = client.urllib3.Timeout
    if isinstance(value, timeout):
        return value
    if isinstance(value, tuple):
        return timeout(connect=value[0], read=value[1])
    return timeout(connect=value, read=value)


def request(method: str, url: str, *, body: Union[bytes, str, None] = None, json: Any = None,
            headers: Optional[Mapping[str, str]] = None, timeout: TimeoutArg = None) -> Response:
    """Send one request through the shared pool and read the whole response.

    ``json=`` sends the value as compact JSON with ``Content-Type: application/json``; ``body=``
    sends bytes (a str is encoded as UTF-8) as they are. Raises :class:`HTTPTimeout` or
    :class:`HTTPConnectionError` when no response arrives; a response with any status is
    returned (call :meth:`Response.raise_for_status`).
    """
    client = _client if _client is not None else _current()
    if json is not None:
        if body is not None:
            raise TypeError("pass body= or json=, not both")
        body = _json.dumps(json, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        if headers is None:
            send_headers: Mapping[str, str] = _JSON_HEADERS
        else:
            merged = client.urllib3.HTTPHeaderDict(_BASE_HEADERS)  # case-insensitive
            merged.update(headers)
            merged.setdefault("Content-Type", "application/json")
            send_headers = merged
    else:
        if isinstance(body, str):
            body = body.encode("utf-8")
        if headers is None:
            send_headers = _BASE_HEADERS
        else:
            merged = client.urllib3.HTTPHeaderDict(_BASE_HEADERS)
            merged.update(headers)
            send_headers = merged
    limits = client.timeout if timeout is None else _timeout(client, timeout)
    stats = client.stats
    errors = client.errors
    stats.acquired()
    try:
        raw = client.manager.urlopen(method, url, body=body, headers=send_headers, timeout=limits,
                                     retries=False, redirect=False)
    except errors.ReadTimeoutError as exc:
        stats.errors += 1
        stats.timeouts += 1
        raise HTTPTimeout(method, url, "read", limits.read_timeout) from exc
    except errors.NewConnectionError as exc:  # a subclass of ConnectTimeoutError, but not a timeout
        stats.errors += 1
        raise HTTPConnectionError(method, url, exc) from exc
    except errors.ConnectTimeoutError as exc:
        stats.errors += 1
        stats.timeouts += 1
        raise HTTPTimeout(method, url, "connect", limits.connect_timeout) from exc
    except errors.LocationValueError as exc:
        stats.errors += 1
        raise ValueError(f"cannot send {method} to {redact(url)!r}: {exc}; pass an absolute "
                         "http:// or https:// URL") from exc
    except errors.HTTPError as exc:
        stats.errors += 1
        raise HTTPConnectionError(method, url, exc) from exc
    finally:
        stats.released()
    return Response(raw.status, raw.reason or "", raw.headers, raw.data, url, method)


def get(url: str, **kwargs: Any) -> Response:
    """``request("GET", url, ...)``."""
    return request("GET", url, **kwargs)


def post(url: str, **kwargs: Any) -> Response:
    """``request("POST", url, ...)``."""
    return request("POST", url, **kwargs)


def session() -> "requests.Session":
    """A new ``requests.Session`` on the shared, bounded connection pool with default timeouts.

    For jobs that need what only requests offers (auth helpers, cookies, streaming, redirects).
    A Session keeps cookies and other per-conversation state and requests does not promise it
    is safe to share between threads, so do not share one between greenlets: create one per job
    (``with http.session() as s: ...``); that is cheap because every session from this function
    mounts the same adapter and so shares one connection pool per host (``pool_size``
    connections, waiting when all are busy). A call without ``timeout=`` gets HTTP_TIMEOUT;
    pass ``timeout=(None, None)`` to really wait forever. Retries are off, as for
    :func:`request`; redirects are followed as requests always does.
    """
    import requests

    adapter = _current().adapter()
    s = requests.Session()
    s.mount("http://", adapter)
    s.mount("https://", adapter)
    return s


def stats() -> Dict[str, Any]:
    """Requests through :func:`request` (not :func:`session`): in flight now and at most, total,
    transport errors (timeouts included) and timeouts."""
    client = _current()
    s = client.stats
    return {
        "pool_size": client.pool_size,
        "in_flight": s.in_use,
        "max_in_flight": s.max_in_use,
        "total": s.checkouts,
        "errors": s.errors,
        "timeouts": s.timeouts,
    }


def close() -> None:
    """Close every pooled connection; the next request opens new pools with the current settings."""
    global _client
    client, _client = _client, None
    if client is not None:
        client.close()
