"""The resque-retry fixture app (fixtures/ruby-plugins/retry_*, ``app_retry.rb``) in Python, for
``resque-py work -r tests/retry_plugin_jobs.py``. Not imported by the test process: its
``BackoffJob`` is another job than tests/delayed_jobs.py's."""
from __future__ import annotations

from resque_compat import job


class NetworkError(Exception):
    pass


class FlakyNetworkError(NetworkError):
    pass


class RubyTimeoutError(Exception):
    ruby_name = "Timeout::Error"


class FatalError(Exception):
    pass


class IgnoredError(Exception):
    pass


@job("BackoffJob", queue="retry", backoff=[0, 3])  # extend ExponentialBackoff, @backoff_strategy
def backoff_job(name, number):
    raise NetworkError("backoff failure \u2717")


# A mapping mixes a Python class and a Ruby name, as an app with both sides would write it.
@job("HashDelayJob", queue="retry", retry_exceptions={NetworkError: 30, "Timeout::Error": [5, 10]},
     expire_retry_key_after=3600)
def hash_delay_job(order, kind):
    if kind == "flaky":
        raise FlakyNetworkError("flaky network")
    raise RubyTimeoutError("timed out")


@job("FatalJob", queue="retry", fatal_exceptions=[FatalError], retry_limit=3, retry_delay=5)
def fatal_job(kind):
    if kind == "fatal":
        raise FatalError("fatal, do not retry")
    raise NetworkError("retry me")


@job("IgnoreJob", queue="retry", retry_limit=1, retry_delay=60, ignore_exceptions=[IgnoredError])
def ignore_job(kind):
    if kind == "ignored":
        raise IgnoredError("ignored")
    raise NetworkError("counted")
