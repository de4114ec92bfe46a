"""The one URL redactor and the one ``HOST:PORT`` parser. Pure: strings in, strings out.

Every URL we print (Redis, MySQL, a job's HTTP request) goes through :func:`redact`, so a
password never lands in a log line, an error message or a failure entry that resque-web shows.
"""
from __future__ import annotations

import re
from typing import Optional, Tuple

#: Where a URL's authority (``user:pass@host:port``) ends.
_AUTHORITY_END = re.compile(r"[/?#]")


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***`` (``redis://:***@host``). Never raises, even
    for a URL that does not parse, since it is what error messages about bad URLs print."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority = _AUTHORITY_END.split(rest, 1)[0]
    userinfo, at, host = authority.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}{sep}{userinfo.split(':', 1)[0]}:***@{rest[len(userinfo) + 1:]}"


def parse_host_port(text: str, default_host: Optional[str] = None,
                    default_port: Optional[int] = None) -> Tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8125`` for IPv6) -> (host without brackets, port).

    Without a port, ``default_port`` is used if given; without a host, ``default_host``.
    Raises ValueError saying which part is wrong; callers add the option name and an example.
    """
    text = text.strip()
    host, sep, port = text.rpartition(":") if ":" in text else (text, "", "")
    host = host.strip("[]") or (default_host or "")
    if not host:
        raise ValueError(f"{text!r} has no host")
    if not sep:
        if default_port is None:
            raise ValueError(f"{text!r} has no port")
        return host, default_port
    if not port.isdigit() or int(port) > 65535:
        raise ValueError(f"port {port!r} is not a number from 0 to 65535")
    return host, int(port)
