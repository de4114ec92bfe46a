"""settings: options > KEY=VALUE words > environment > defaults, Ruby's names and defaults
(WIRE §6.2, §3.3, §3.6), and errors that name the bad setting."""
from __future__ import annotations

import dataclasses

import pytest

from resque_compat.errors import ConfigurationError
from resque_compat.settings import (
    DEFAULT_REDIS_URL,
    SETTINGS,
    Settings,
    parse_words,
    rails_environment,
    setting_for,
)


def load(words=(), options=None, **env):
    return Settings.load(words, options, environ=env)


def test_defaults():
    s = load()
    assert s.redis_url == DEFAULT_REDIS_URL == "redis://127.0.0.1:6379/0"
    assert s.namespace == "resque"
    assert s.queues == ()
    assert s.fibers == 1
    assert s.interval == 5.0
    assert s.effective_min_interval == s.effective_max_interval == 5.0
    assert s.backoff_interval == 0.1
    assert s.heartbeat_interval == 60.0
    assert s.effective_prune_interval == 300.0
    assert s.term_timeout == 4.0
    assert not s.drain
    assert s.log_level == "quiet"


def test_prune_interval_is_five_heartbeats_unless_given():
    assert load(RESQUE_HEARTBEAT_INTERVAL="10").effective_prune_interval == 50.0
    assert load(RESQUE_HEARTBEAT_INTERVAL="10", RESQUE_PRUNE_INTERVAL="7").effective_prune_interval == 7.0


def test_min_and_max_interval_default_to_interval():
    s = load(INTERVAL="2")
    assert (s.effective_min_interval, s.effective_max_interval) == (2.0, 2.0)
    s = load(["MIN_INTERVAL=0.5", "MAX_INTERVAL=3"], INTERVAL="2")
    assert (s.effective_min_interval, s.effective_max_interval) == (0.5, 3.0)
    assert load(INTERVAL="0").drain


def test_precedence_options_over_words_over_env_over_defaults():
    env = {"FIBERS": "2", "INTERVAL": "7"}
    assert load(**env).fibers == 2
    assert load(["FIBERS=3"], **env).fibers == 3
    assert load(["FIBERS=3"], {"fibers": 4}, **env).fibers == 4
    s = load(["FIBERS=3"], {"fibers": 4}, **env)
    assert s.interval == 7.0                      # untouched by words/options: env still counts
    assert load(["FIBERS=3"], {"fibers": None}, **env).fibers == 3   # None = option not given


def test_redis_url_and_namespace_follow_the_same_precedence():
    env = {"REDIS_URL": "redis://10.0.0.1:6379/2", "RESQUE_NAMESPACE": "envns"}
    s = load(**env)
    assert (s.redis_url, s.namespace) == ("redis://10.0.0.1:6379/2", "envns")
    s = load(["REDIS_URL=redis://h:1/3", "RESQUE_NAMESPACE=wordns"], **env)
    assert (s.redis_url, s.namespace) == ("redis://h:1/3", "wordns")
    s = load(["RESQUE_NAMESPACE=wordns"], {"redis_url": "redis://o:2/4", "namespace": "optns"}, **env)
    assert (s.redis_url, s.namespace) == ("redis://o:2/4", "optns")


def test_queues_beats_queue_within_a_source():
    assert load(QUEUE="a", QUEUES="b,c").queues == ("b", "c")
    assert load(["QUEUE=a", "QUEUES=b"]).queues == ("b",)
    assert load(["QUEUES=b", "QUEUE=a"]).queues == ("b",)


def test_a_higher_source_beats_queues_from_a_lower_one():
    assert load(["QUEUE=word"], QUEUES="env").queues == ("word",)
    assert load(["QUEUES=word"], {"queues": ("opt",)}).queues == ("opt",)
    assert load(options={"queues": ["x", "y"]}).queues == ("x", "y")


def test_queue_lists_are_split_and_stripped():
    assert load(QUEUE=" critical , high_*,, !low ").queues == ("critical", "high_*", "!low")


def test_empty_environment_values_count_as_unset():
    s = load(FIBERS="", QUEUE="", INTERVAL="")
    assert (s.fibers, s.queues, s.interval) == (1, (), 5.0)


@pytest.mark.parametrize("name, value", [
    ("FIBERS", "abc"), ("FIBERS", "0"), ("FIBERS", "1.5"),
    ("INTERVAL", "soon"), ("INTERVAL", "-1"), ("INTERVAL", "nan"),
    ("MIN_INTERVAL", "x"), ("BACKOFF_INTERVAL", "-0.1"),
    ("RESQUE_HEARTBEAT_INTERVAL", "0"), ("RESQUE_PRUNE_INTERVAL", "x"),
    ("RESQUE_TERM_TIMEOUT", "-4"), ("REDIS_POOL", "1"), ("DB_POOL", "0"),
    ("LOG_FORMAT", "xml"), ("HTTP_TIMEOUT", "1,2,3"), ("HTTP_TIMEOUT", "0"),
])
@pytest.mark.parametrize("source", ["env", "word"])
def test_bad_values_name_the_setting(name, value, source):
    with pytest.raises(ConfigurationError) as info:
        if source == "env":
            load(**{name: value})
        else:
            load([f"{name}={value}"])
    assert name in str(info.value)
    assert value in str(info.value)


@pytest.mark.parametrize("field, value, name", [
    ("fibers", 0, "FIBERS"), ("interval", -1.0, "INTERVAL"), ("heartbeat_interval", 0.0,
     "RESQUE_HEARTBEAT_INTERVAL"), ("term_timeout", float("nan"), "RESQUE_TERM_TIMEOUT"),
    ("redis_url", "localhost:6379", "REDIS_URL"),
])
def test_bad_typed_options_are_refused_too(field, value, name):
    with pytest.raises(ConfigurationError, match=name):
        load(options={field: value})
    with pytest.raises(ConfigurationError, match=name):
        Settings().with_(**{field: value})


def test_max_interval_below_min_interval_is_refused():
    with pytest.raises(ConfigurationError, match="MAX_INTERVAL"):
        load(["MIN_INTERVAL=3", "MAX_INTERVAL=1"])


def test_empty_namespace_is_refused():
    with pytest.raises(ConfigurationError, match="RESQUE_NAMESPACE"):
        load(options={"namespace": ""})


@pytest.mark.parametrize("word, text", [
    ("BOGUS=1", "unknown setting 'BOGUS'"),
    ("queue=critical", "unknown setting 'queue'"),
    ("critical", "KEY=VALUE"),
    ("=x", "KEY=VALUE"),
])
def test_unknown_or_malformed_words_are_clear_errors(word, text):
    with pytest.raises(ConfigurationError, match=text):
        parse_words([word])


def test_unknown_word_error_lists_every_known_name_but_internal_ones():
    with pytest.raises(ConfigurationError) as info:
        parse_words(["NOPE=1"])
    for s in SETTINGS:
        assert (s.env in str(info.value)) == (s.command != "internal"), s.env
    for name in ["QUEUES", "REDIS_URL", "RESQUE_NAMESPACE", "COUNT"]:
        assert name in str(info.value)


def test_unknown_option_field_is_refused():
    with pytest.raises(ConfigurationError, match="nonsense"):
        load(options={"nonsense": 1})


def test_flags_read_like_ruby_env_truthiness():
    assert load(VERBOSE="1").log_level == "verbose"
    assert load(LOGGING="yes").log_level == "verbose"
    assert load(VVERBOSE="true", VERBOSE="1").log_level == "vverbose"
    for off in ("0", "false", "no", "off"):
        assert load(VERBOSE=off).log_level == "quiet"


def test_typed_values():
    s = load(["HTTP_TIMEOUT=5,30", "LOG_FORMAT=JSON", "REQUIRE=a.jobs, b.py"], PIDFILE="/tmp/p")
    assert s.http_timeout == (5.0, 30.0)
    assert s.log_format == "json"
    assert s.require == ("a.jobs", "b.py")
    assert s.pidfile == "/tmp/p"
    assert load(HTTP_TIMEOUT="2").http_timeout == (2.0, 2.0)
    assert load(FIBERS=" 100 ").fibers == 100


def test_settings_are_frozen_and_with_revalidates():
    s = load()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.fibers = 3  # type: ignore[misc]
    assert s.with_(fibers=3).fibers == 3 and s.fibers == 1


def test_redis_pool_default_grows_with_fibers_up_to_a_cap():
    assert load(FIBERS="1").effective_redis_pool == 5
    assert load(FIBERS="100").effective_redis_pool == 20
    assert load(FIBERS="100", REDIS_POOL="7").effective_redis_pool == 7


def test_loading_reads_the_real_environment_by_default(monkeypatch):
    monkeypatch.setenv("FIBERS", "9")
    monkeypatch.setenv("QUEUES", "x,y")
    s = Settings.load()
    assert (s.fibers, s.queues) == (9, ("x", "y"))


def test_every_setting_row_is_consistent():
    names = [s.env for s in SETTINGS]
    assert len(names) == len(set(names))
    field_names = {f.name for f in dataclasses.fields(Settings)}
    for row in SETTINGS:
        assert row.field in field_names
        assert setting_for(row.field) is row
        assert row.help


def test_rails_environment_as_resque_info_reports_it():
    assert rails_environment({}) == "development"
    assert rails_environment({"RACK_ENV": "staging"}) == "staging"
    assert rails_environment({"RAILS_ENV": "production", "RACK_ENV": "staging"}) == "production"


def test_readme_lists_every_setting_a_user_can_give():
    """README.rst promises every setting; a new row in the table must reach it."""
    import os

    from resque_compat.settings import SETTINGS

    with open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.rst"),
              encoding="utf-8") as fh:
        readme = fh.read()
    missing = [s.env for s in SETTINGS if getattr(s, "command", "work") != "internal"
               and f"``{s.env}``" not in readme]
    assert not missing, f"README.rst does not list: {missing}"
