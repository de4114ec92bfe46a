"""RUBY_JSON=json|oj: floats written as the Ruby apps' JSON library writes them.

``fixtures/ruby-json/floats.json`` was recorded with real Ruby 3.1.2, json 2.6.1 and Oj 3.14.2
through MultiJson 1.14.1 (``capture_floats.rb`` beside it): 1243 doubles around the
1e15..1e17 and 1e-4..1e-5 boundaries, whole and fractional, positive and negative.
"""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys

import pytest

from resque_compat.errors import ConfigurationError
from resque_compat.settings import Settings, connection_settings
from resque_compat.wire import codec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(*parts: str) -> dict:
    with open(os.path.join(ROOT, "fixtures", *parts), encoding="utf-8") as fh:
        return json.load(fh)


FLOATS = _load("ruby-json", "floats.json")


def _cases():
    for case in FLOATS["cases"]:
        yield struct.unpack(">d", bytes.fromhex(case["bits"]))[0], case


@pytest.fixture(autouse=True)
def _json_gem_after():
    yield
    codec.set_ruby_json("json")


def test_the_recording_covers_both_boundaries_and_both_libraries_disagree_on_it():
    values = [abs(v) for v, _ in _cases()]
    assert sum(1e15 <= v < 1e18 for v in values) > 500
    assert sum(1e-6 <= v < 1e-3 for v in values) > 100
    differ = [c for _, c in _cases() if c["oj"] != c["json_gem"]]
    assert len(differ) > 300  # the setting matters: Oj and the json gem disagree on these


def test_json_gem_bytes_for_every_recorded_float():
    codec.set_ruby_json("json")
    wrong = [(v, codec.encode([v]), c["json_gem"]) for v, c in _cases() if codec.encode([v]) != c["json_gem"]]
    assert wrong == []


def test_oj_bytes_for_every_recorded_float():
    codec.set_ruby_json("oj")
    wrong = [(v, codec.encode([v]), c["oj"]) for v, c in _cases() if codec.encode([v]) != c["oj"]]
    assert wrong == []


def test_ruby_float_is_float_to_s_for_every_recorded_float():
    """Also what Hash#inspect and Array#join (retry and lock keys) print, whatever RUBY_JSON is."""
    codec.set_ruby_json("oj")
    wrong = [(v, codec.ruby_float(v), c["to_s"]) for v, c in _cases() if codec.ruby_float(v) != c["to_s"]]
    assert wrong == []


def test_examples_from_the_issue():
    assert codec.encode([1e16, 1e15, -0.0]) == "[1.0e+16,1.0e+15,-0.0]"
    codec.set_ruby_json("oj")
    assert codec.encode([1e16, 1e15, -0.0]) == "[10000000000000000.0,1000000000000000.0,0.0]"
    assert codec.ruby_json() == "oj"


def test_oj_fixture_payload_reencodes_byte_for_byte():
    """fixtures/ruby-resque-3.0/11: what Ruby Resque wrote through Oj, read and written back."""
    codec.set_ruby_json("oj")
    items = _load("ruby-resque-3.0", "11_enqueue_oj_adapter.json")["keys"]["resque:queue:critical"]["value"]
    for raw in items:
        job = codec.decode(raw)
        assert codec.encode_job(job["class"], job["args"]) == raw


def test_setting_is_read_from_env_words_and_for_client_commands():
    assert Settings.load((), None, {}).ruby_json == "json"
    assert Settings.load(("RUBY_JSON=oj",), None, {}).ruby_json == "oj"
    assert connection_settings(None, {"RUBY_JSON": "OJ"}).ruby_json == "oj"
    with pytest.raises(ConfigurationError, match="RUBY_JSON must be one of json, oj"):
        Settings.load((), None, {"RUBY_JSON": "yajl"})


def _oj_item(value: float) -> str:
    """A queue item as Ruby Resque with Oj wrote it: the float's bytes are Oj's real output."""
    bits = struct.pack(">d", value).hex()
    case = next(c for c in FLOATS["cases"] if c["bits"] == bits)
    return '{"class":"Exports::Job","args":[' + case["oj"][1:-1] + ',"x"]}'


def test_dequeue_finds_an_item_a_ruby_app_with_oj_wrote_only_with_ruby_json_oj(r, resque):
    item = _oj_item(1e16)
    assert item == '{"class":"Exports::Job","args":[10000000000000000.0,"x"]}'
    r.rpush("resque:queue:exports", item)
    assert resque.dequeue("Exports::Job", 1e16, "x", queue="exports") == 0  # json gem bytes differ
    codec.set_ruby_json("oj")
    assert resque.dequeue("Exports::Job", 1e16, "x", queue="exports") == 1
    assert r.llen("resque:queue:exports") == 0


def test_resque_py_enqueue_writes_oj_bytes_with_ruby_json_oj(r):
    from tests.conftest import REDIS_URL
    from tests.conftest import ROOT as root

    env = {**os.environ, "RUBY_JSON": "oj"}
    out = subprocess.run([sys.executable, "-m", "resque_compat", "--redis", REDIS_URL, "enqueue", "exports",
                          "Exports::Job", "[1e16, 1e-05, -0.0]"], cwd=root, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert r.lrange("resque:queue:exports", 0, -1) == [
        '{"class":"Exports::Job","args":[10000000000000000.0,1.0e-05,0.0]}']
