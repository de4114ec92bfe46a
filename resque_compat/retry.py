"""Retries on resque-retry's keys and rules (WIRE §7.2), as a :mod:`hooks` plugin.

``@job("Name", queue="q", retry_limit=3, backoff=[0, 60, 600], retry_exceptions={...},
fatal_exceptions=[...], ignore_exceptions=[...], expire_retry_key_after=3600)`` makes a failed
run come back, counted in the same Redis key a Ruby job that ``extend Resque::Plugins::Retry``
uses, so a job retried by Ruby and by Python counts its attempts in one place:

* before each run: ``SETNX resque-retry:<Class>:<sha1> -1`` then ``INCR`` (the attempt, from 0),
  and ``EXPIRE`` with ``expire_retry_key_after``;
* after a successful run: ``DEL`` the key;
* on failure: an ``ignore_exceptions`` error first ``DECR``s the key (it does not count); if the
  exception is retried (``retry_exceptions``/``retry_on``, default any; none of
  ``fatal_exceptions``; not ``give_up_on``) and the attempt is below ``retry_limit``, ``SETNX``
  the key and enqueue the same job again: at once (``Resque.enqueue_to``) when the delay is 0,
  else through resque-scheduler's keys (``enqueue_in_with_queue``). Otherwise give up: ``DEL``.

The decision is left on the exception (:func:`outcome_of`) for the
``multiple_with_retry_suppression`` failure backend (:mod:`resque_compat.retry_failures`);
with the other backends every failed run is written to ``failed``, as with Ruby's default.

Defaults follow resque-retry: ``retry_limit`` 1 (the longest delay list of a
``retry_exceptions`` mapping, or ``len(backoff)`` as ``ExponentialBackoff``), 0 never retries,
a negative limit retries forever. Fixtures: fixtures/ruby-plugins/retry_*.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence, Tuple, Union

from resque_compat import activejob, client, hooks
from resque_compat.errors import RegistryError
from resque_compat.registry import JobSpec
from resque_compat.scheduler.leader import Delayed
from resque_compat.wire.keys import Keys

# Ruby's Array#join and #inspect (the sha1 input) are shared with resque-lock-timeout's
# identifier; re-exported here, where they were first.
from resque_compat.wire.ruby import HASH_ARROW, ruby_inspect, ruby_join  # noqa: F401

log = logging.getLogger("resque_compat.retry")

#: The ``@job`` options this plugin reads; any of them turns retries on for the job.
OPTIONS = ("retry_limit", "backoff", "retry_on", "give_up_on", "retry_identifier", "retry_exceptions",
           "fatal_exceptions", "ignore_exceptions", "retry_delay", "expire_retry_key_after")


def retry_identifier(args: Sequence[Any]) -> Optional[str]:
    """resque-retry's default ``retry_identifier``: sha1 of ``args.join('-')``, None if empty."""
    joined = ruby_join(args, "-")
    return hashlib.sha1(joined.encode("utf-8")).hexdigest() if joined else None


def retry_key(keys: Keys, spec: JobSpec, args: Sequence[Any]) -> str:
    """``redis_retry_key``: ``resque-retry:<Class>[:<identifier>]``, whitespace removed."""
    name = spec.name[2:] if spec.name.startswith("::") else spec.name
    identify: Callable[..., Optional[str]] = spec.options.get("retry_identifier") or (lambda *a: retry_identifier(a))
    return keys.retry_counter(name, identify(*args))


# -- per-job policy ----------------------------------------------------------------------------

#: An exception given in an option: a Python class, or a Ruby name (``"Timeout::Error"``) that is
#: compared with a class's ``ruby_name`` (else its ``__name__``), as failure entries name it.
Matcher = Union[type, str]
Delay = Union[float, Tuple[float, ...]]


def _names(cls: type) -> Tuple[str, ...]:
    own = cls.__dict__.get("ruby_name")
    return (own, cls.__name__) if isinstance(own, str) and own else (cls.__name__,)


def _matches(matcher: Matcher, cls: type) -> bool:
    """``matcher`` names ``cls`` itself (not a subclass)."""
    return matcher is cls if isinstance(matcher, type) else matcher in _names(cls)


def _is_a(exc: BaseException, matchers: Sequence[Matcher]) -> bool:
    """Ruby's ``ex === exception``: ``exc`` is an instance of one of them, subclasses included."""
    return any(_matches(m, cls) for cls in type(exc).__mro__ for m in matchers)


def _pick(delay: Delay, attempt: int) -> float:
    """``delay[attempt] || delay.last`` for a list (Ruby's negative index included), else itself."""
    if not isinstance(delay, tuple):
        return delay
    return delay[attempt] if -len(delay) <= attempt < len(delay) else delay[-1]


@dataclass(frozen=True)
class RetryPolicy:
    """A job's retry options, checked: a bad one raises RegistryError naming the fix.

    Ruby's ``@retry_exceptions`` is ``retry_exceptions`` (``retry_on`` is the older spelling of
    its list form); a mapping gives per-exception delays. ``fatal_exceptions`` is Ruby's, and
    ``give_up_on`` (ours) is subtracted from whatever would be retried."""

    limit: int
    backoff: Tuple[float, ...]
    retry_on: Tuple[Matcher, ...]
    give_up_on: Tuple[Matcher, ...]
    delays: Tuple[Tuple[Matcher, Delay], ...] = ()
    fatal: Tuple[Matcher, ...] = ()
    ignore: Tuple[Matcher, ...] = ()
    default_delay: float = 0
    expire_after: Optional[int] = None

    @classmethod
    def of(cls, spec: JobSpec) -> "RetryPolicy":
        opts = spec.options
        backoff = opts.get("backoff", ())
        backoff = tuple(backoff) if isinstance(backoff, (list, tuple)) else (backoff,)
        if any(not _seconds(d) for d in backoff):
            raise RegistryError(f"@job({spec.name!r}, backoff={opts.get('backoff')!r}): give seconds "
                                "as a number or a list of numbers, e.g. backoff=[0, 60, 600]")
        if "retry_on" in opts and "retry_exceptions" in opts:
            raise RegistryError(f"@job({spec.name!r}): give retry_exceptions or retry_on, not both "
                                "(retry_on is the older name of the list form)")
        retry_exceptions = opts.get("retry_exceptions", opts.get("retry_on", ()))
        delays: Tuple[Tuple[Matcher, Delay], ...] = ()
        if isinstance(retry_exceptions, Mapping):
            delays = tuple((_matcher(spec, "retry_exceptions", k), _delay(spec, k, v))
                           for k, v in retry_exceptions.items())
            retry_on = tuple(m for m, _ in delays)
        else:
            retry_on = _exception_matchers(spec, "retry_exceptions" if "retry_exceptions" in opts
                                           else "retry_on")
        fatal = _exception_matchers(spec, "fatal_exceptions")
        if fatal and retry_on:  # Ruby: AmbiguousRetryStrategyException
            raise RegistryError(f"@job({spec.name!r}): you can't give both fatal_exceptions and "
                                "retry_exceptions; keep the one that lists fewer exceptions")
        default_delay = opts.get("retry_delay", 0)
        if not _seconds(default_delay):
            raise RegistryError(f"@job({spec.name!r}, retry_delay={default_delay!r}): give seconds, e.g. 60")
        # resque-retry's default limit is 1, or the longest delay list of a retry_exceptions
        # mapping; ExponentialBackoff's is the length of its backoff.
        longest = max([len(d) for _, d in delays if isinstance(d, tuple)] + [1])
        limit = opts.get("retry_limit", len(backoff) if backoff else longest)
        if not isinstance(limit, int) or isinstance(limit, bool):
            raise RegistryError(f"@job({spec.name!r}, retry_limit={limit!r}): give a whole number "
                                "(0 = never retry, -1 = retry forever)")
        expire_after = opts.get("expire_retry_key_after")
        if expire_after is not None and (isinstance(expire_after, bool) or not isinstance(expire_after, int)
                                         or expire_after <= 0):
            raise RegistryError(f"@job({spec.name!r}, expire_retry_key_after={expire_after!r}): give "
                                "whole seconds above 0, e.g. 3600")
        return cls(limit, backoff, retry_on, _exception_matchers(spec, "give_up_on"), delays, fatal,
                   _exception_matchers(spec, "ignore_exceptions"), default_delay, expire_after)

    def retries(self, exc: BaseException) -> bool:
        """resque-retry's ``retry_exception?``: retry_exceptions (default any) or none of
        fatal_exceptions, minus give_up_on."""
        if self.give_up_on and _is_a(exc, self.give_up_on):
            return False
        if self.fatal:
            return not _is_a(exc, self.fatal)
        return not self.retry_on or _is_a(exc, self.retry_on)

    def ignored(self, exc: BaseException) -> bool:
        """``ignore_exceptions.include?(exception.class)``: the exact class, not a subclass."""
        return any(_matches(m, type(exc)) for m in self.ignore)

    def limit_reached(self, attempt: int) -> bool:
        if self.limit == 0:
            return True
        return 0 < self.limit <= attempt

    def delay(self, attempt: int, exc: Optional[BaseException] = None) -> float:
        """``retry_delay(exception.class)`` at ``attempt``: the backoff list; else, for an
        exception, the delay of the most specific retry_exceptions key it is an instance of
        (0 if none); else ``retry_delay``."""
        if self.backoff:
            return _pick(self.backoff, attempt)
        if exc is not None and self.delays:
            for cls in type(exc).__mro__:
                for matcher, delay in self.delays:
                    if _matches(matcher, cls):
                        return _pick(delay, attempt)
            return 0
        return self.default_delay


def _seconds(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0


def _delay(spec: JobSpec, key: Any, value: Any) -> Delay:
    if isinstance(value, (list, tuple)) and value and all(_seconds(d) for d in value):
        return tuple(value)
    if _seconds(value):
        return value
    raise RegistryError(f"@job({spec.name!r}, retry_exceptions={{{key!r}: {value!r}}}): give seconds "
                        "or a list of seconds per attempt, e.g. {TimeoutError: [5, 10]}")


def _matcher(spec: JobSpec, option: str, value: Any) -> Matcher:
    if isinstance(value, str) and value:
        return value[2:] if value.startswith("::") else value
    if isinstance(value, type) and issubclass(value, BaseException):
        return value
    raise RegistryError(f"@job({spec.name!r}, {option}=...): {value!r} is not an exception class "
                        "or a Ruby exception name; give e.g. (TimeoutError, \"Net::ReadTimeout\")")


def _exception_matchers(spec: JobSpec, option: str) -> Tuple[Matcher, ...]:
    value = spec.options.get(option, ())
    if isinstance(value, str):  # one Ruby name, not the characters of it
        value = (value,)
    values = tuple(value) if isinstance(value, (list, tuple, set, frozenset)) else (value,)
    return tuple(_matcher(spec, option, v) for v in values)


# -- the plugin --------------------------------------------------------------------------------

@dataclass(frozen=True)
class RetryOutcome:
    """What ``on_failure`` decided, left on the exception for the failure backend (Ruby's
    ``MultipleWithRetrySuppression`` asks Redis whether the retry key exists; we were there)."""

    key: str            # the attempt counter, resque-retry:<Class>[:<sha1>]
    retrying: bool      # True: the job was enqueued again and its key marks it as retried
    delay: float        # retry_delay(exception.class) at this attempt


#: The attribute of a failed job's exception that holds its :class:`RetryOutcome`.
OUTCOME_ATTR = "_resque_retry_outcome"


def outcome_of(exc: BaseException) -> Optional[RetryOutcome]:
    """The retry decision made for this failure, None if the job has no retry options."""
    return getattr(exc, OUTCOME_ATTR, None)


class RetryPlugin:
    """The hooks of ``Resque::Plugins::Retry`` for every ``@job`` with retry options."""

    def __init__(self, resque: Callable[[], "client.Resque"] = client.default) -> None:
        self.resque = resque

    def applies_to(self, spec: JobSpec) -> bool:
        # A Rails job retries with ActiveJob's retry_on; re-enqueueing it here as a plain job
        # would drop its JobWrapper payload.
        return any(name in spec.options for name in OPTIONS) and activejob.current() is None

    def before_perform(self, spec: JobSpec, args: Sequence[Any]) -> None:
        """``before_perform_retry``: SETNX -1, INCR; the result is this run's attempt number.
        With ``expire_retry_key_after``: EXPIRE the key that many seconds past the delay.

        Bad retry options fail the run here, with a message saying what to write instead."""
        policy = RetryPolicy.of(spec)
        resque = self.resque()
        self._count_attempt(resque, retry_key(resque.keys, spec, args), policy)

    def after_perform(self, spec: JobSpec, args: Sequence[Any]) -> None:
        """``after_perform_retry``: a success forgets the attempts."""
        resque = self.resque()
        resque.redis.delete(retry_key(resque.keys, spec, args))

    def on_failure(self, spec: JobSpec, exc: BaseException, args: Sequence[Any]) -> None:
        """``on_failure_retry``: enqueue again, or give up and forget the attempts."""
        resque = self.resque()
        key = retry_key(resque.keys, spec, args)
        try:
            policy = RetryPolicy.of(spec)
        except RegistryError:  # before_perform raised it: the failure entry says what to fix
            resque.redis.delete(key)
            return
        raw = resque.redis.get(key)
        # No counter means a hook that runs before ours failed: count this run now, or a job
        # whose hook always fails would be retried forever at attempt 0.
        attempt = int(raw) if raw is not None else self._count_attempt(resque, key, policy)
        if policy.ignored(exc):  # the attempt does not count
            attempt = int(resque.redis.decr(key))
        delay = policy.delay(attempt, exc)
        if policy.limit_reached(attempt) or not policy.retries(exc):
            log.info("giving up on %s after attempt %d: %s", spec.name, attempt, type(exc).__name__)
            resque.redis.delete(key)
            _mark(exc, RetryOutcome(key, False, delay))
            return
        if spec.queue is None:
            log.error("cannot retry %s: it has no queue; give @job(%r, queue=...)", spec.name, spec.name)
            resque.redis.delete(key)
            _mark(exc, RetryOutcome(key, False, delay))
            return
        resque.redis.setnx(key, -1)  # the key marks the job as being retried, as try_again does
        if delay <= 0:
            resque.enqueue_to(spec.queue, spec.name, *args)
        else:
            Delayed(resque).enqueue_in_with_queue(spec.queue, delay, spec.name, *args)
        _mark(exc, RetryOutcome(key, True, delay))
        log.info("retrying %s (attempt %d failed: %s) in %gs", spec.name, attempt, type(exc).__name__, delay)

    @staticmethod
    def _count_attempt(resque: "client.Resque", key: str, policy: RetryPolicy) -> int:
        pipe = resque.redis.pipeline(transaction=False)
        pipe.setnx(key, -1)
        pipe.incr(key)
        attempt = int(pipe.execute()[1])
        if policy.expire_after:
            # Ruby adds retry_delay(Object.const_get(args[0]) rescue nil): the delay without an
            # exception class, unless args[0] names one (a quirk we do not reproduce).
            resque.redis.expire(key, int(policy.delay(attempt) + policy.expire_after))
        return attempt


def _mark(exc: BaseException, outcome: RetryOutcome) -> None:
    try:
        setattr(exc, OUTCOME_ATTR, outcome)
    except AttributeError:  # an exception type without __dict__: treated as not retryable
        log.debug("cannot record the retry outcome on %r", exc)


PLUGIN = hooks.add_plugin(RetryPlugin())
