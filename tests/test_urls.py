"""common.urls: the one URL redactor and the one HOST:PORT parser. Pure: no I/O."""
from __future__ import annotations

import pytest

from resque_compat import db
from resque_compat.common.urls import parse_host_port, redact


@pytest.mark.parametrize("url, shown", [
    ("mysql://u:secret@h/db", "mysql://u:***@h/db"),
    ("redis://:secret@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
    ("rediss://user:p%40ss@h:6380", "rediss://user:***@h:6380"),
    ("redis+sentinel://u:pw@s1:26379,s2/mymaster", "redis+sentinel://u:***@s1:26379,s2/mymaster"),
    ("https://api.example.com/path?next=a:b@c", "https://api.example.com/path?next=a:b@c"),
    ("https://user@example.com/", "https://user@example.com/"),
    ("http://[::1/broken:x@y", "http://[::1/broken:x@y"),
    ("not a url at all", "not a url at all"),
])
def test_redact_hides_only_the_password(url, shown):
    assert redact(url) == shown


def test_db_redact_is_the_shared_redactor():
    assert db.redact is redact


@pytest.mark.parametrize("text, kwargs, expected", [
    ("127.0.0.1:8125", {}, ("127.0.0.1", 8125)),
    (" statsd.local:8125 ", {}, ("statsd.local", 8125)),
    ("[::1]:2003", {}, ("::1", 2003)),
    (":8765", {"default_host": "127.0.0.1"}, ("127.0.0.1", 8765)),
    ("127.0.0.1:0", {}, ("127.0.0.1", 0)),
    ("sentinel-a", {"default_port": 26379}, ("sentinel-a", 26379)),
])
def test_parse_host_port(text, kwargs, expected):
    assert parse_host_port(text, **kwargs) == expected


@pytest.mark.parametrize("text, why", [
    ("127.0.0.1", "has no port"),
    (":8125", "has no host"),
    ("h:port", "is not a number"),
    ("h:65536", "is not a number"),
    ("h:", "is not a number"),
])
def test_parse_host_port_says_what_is_wrong(text, why):
    with pytest.raises(ValueError, match=why):
        parse_host_port(text)
