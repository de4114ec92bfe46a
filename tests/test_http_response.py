"""Issue 15, "Why" item 7: ``resque_compat.http.Response`` is shaped like requests', and an
error page does not flood the log line and the failure entry.

Each attribute is compared with what ``requests`` gives for the same URL of a real server.
"""
from __future__ import annotations

from typing import Any, Dict, Iterator, List

import pytest
import requests
from gevent.pywsgi import WSGIServer

from resque_compat import http

PAGE_404 = "\n".join(["<!DOCTYPE html>", "<html>", "<head><title>404 Not Found</title></head>",
                      "<body>", "<h1>Not Found</h1>", "<p>" + "x" * 300 + "</p>", "<hr>",
                      "<address>nginx</address>", "</body>", "</html>"]).encode()


def app(environ: Dict[str, Any], start_response: Any) -> List[bytes]:
    if environ["PATH_INFO"] == "/missing":
        start_response("404 Not Found", [("Content-Type", "text/html; charset=utf-8")])
        return [PAGE_404]
    start_response("200 OK", [("Content-Type", "application/json"), ("X-Thing", "1")])
    return [b'{"id": 42, "name": "caf\\u00e9"}']


@pytest.fixture
def url() -> Iterator[str]:
    server = WSGIServer(("127.0.0.1", 0), app, log=None)
    server.start()
    yield f"http://127.0.0.1:{server.server_port}"
    http.close()
    server.stop(timeout=1)


@pytest.mark.parametrize("path", ["/ok", "/missing"])
def test_response_has_requests_names_and_meanings(url, path):
    ours, theirs = http.get(url + path), requests.get(url + path, timeout=5)
    assert ours.status_code == theirs.status_code
    assert ours.ok == theirs.ok
    assert ours.content == theirs.content
    assert ours.text == theirs.text
    assert ours.url == theirs.url
    assert ours.reason == theirs.reason
    assert ours.headers["content-type"] == theirs.headers["content-type"]  # case-insensitive
    if theirs.ok:
        assert ours.json() == theirs.json() == {"id": 42, "name": "caf\u00e9"}
        assert ours.raise_for_status() is ours
    else:
        with pytest.raises(requests.HTTPError):
            theirs.raise_for_status()
        with pytest.raises(http.HTTPError) as info:
            ours.raise_for_status()
        assert info.value.status_code == 404 and info.value.response is ours


def test_an_error_page_is_one_line_of_at_most_200_characters_in_the_message(url):
    with pytest.raises(http.HTTPError) as info:
        http.get(url + "/missing").raise_for_status()
    message = str(info.value)
    assert "\n" not in message
    assert "HTTP 404 Not Found: <!DOCTYPE html> <html> <head><title>404" in message
    body_part = message.split("Not Found: ", 1)[1].rsplit(" (", 1)[0]
    assert len(body_part) <= 200 and body_part.endswith("…")
