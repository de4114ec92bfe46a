"""Retries on resque-retry's keys and rules (WIRE §7.2), as a :mod:`hooks` plugin.

``@job("Name", queue="q", retry_limit=3, backoff=[0, 60, 600], retry_on=(TimeoutError,),
give_up_on=(ValueError,))`` makes a failed run come back, counted in the same Redis key a Ruby
job that ``extend Resque::Plugins::Retry`` uses, so a job retried by Ruby and by Python counts
its attempts in one place:

* before each run: ``SETNX resque-retry:<Class>:<sha1> -1`` then ``INCR`` (the attempt, from 0);
* after a successful run: ``DEL`` the key;
* on failure: if the exception is retried (``retry_on``, default any, and not ``give_up_on``)
  and the attempt is below ``retry_limit``, ``SETNX`` the key and enqueue the same job again:
  at once (``Resque.enqueue_to``) when the delay is 0, else through resque-scheduler's keys
  (``enqueue_in_with_queue``, an item with ``queue``). The delay is ``backoff[attempt]``, or
  its last element past the end. Otherwise give up: ``DEL`` the key.

The failure entry of every failed run, retried or not, is still written to ``failed`` by the
worker: that is what resque-retry does with Resque's default Redis failure backend (only its
``MultipleWithRetrySuppression`` backend hides retried failures).

Defaults follow resque-retry: ``retry_limit`` 1 (``len(backoff)`` when only ``backoff`` is
given, as ``ExponentialBackoff``), 0 never retries, a negative limit retries forever.
"""
from __future__ import annotations

import hashlib
import logging
import unicodedata
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence, Tuple

from resque_compat import activejob, client, hooks
from resque_compat.errors import RegistryError
from resque_compat.registry import JobSpec
from resque_compat.scheduler.leader import Delayed
from resque_compat.wire.codec import ruby_float
from resque_compat.wire.keys import Keys

log = logging.getLogger("resque_compat.retry")

#: The ``@job`` options this plugin reads; any of them turns retries on for the job.
OPTIONS = ("retry_limit", "backoff", "retry_on", "give_up_on", "retry_identifier")

#: ``Hash#inspect``'s separator: ``{"a"=>1}`` up to Ruby 3.3, ``{"a" => 1}`` from Ruby 3.4.
HASH_ARROW = "=>"


# -- Ruby's Array#join and #inspect, for the key's sha1 -----------------------------------------

_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\f": "\\f", "\v": "\\v", "\b": "\\b",
            "\a": "\\a", "\x1b": "\\e", '"': '\\"', "\\": "\\\\"}


def _printable(ch: str) -> bool:
    """Onigmo's [[:print:]] for UTF-8: not a control, surrogate or unassigned code point, and
    not a line/paragraph separator (the other white space is Zs or a control)."""
    return unicodedata.category(ch) not in ("Cc", "Cs", "Cn") and ch not in "\u2028\u2029"


def _inspect_string(text: str) -> str:
    out = ['"']
    for i, ch in enumerate(text):
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch == "#" and text[i + 1:i + 2] in ("{", "$", "@"):
            out.append("\\#")  # would start an interpolation in a Ruby literal
        elif _printable(ch):
            out.append(ch)
        else:
            code = ord(ch)
            out.append(f"\\u{code:04X}" if code < 0x10000 else f"\\u{{{code:X}}}")
    out.append('"')
    return "".join(out)


def ruby_inspect(value: Any, hash_arrow: Optional[str] = None) -> str:
    """``value.inspect`` for what JSON decodes to (strings, numbers, nil, booleans, arrays,
    string-keyed hashes), with a UTF-8 ``Encoding.default_external``."""
    hash_arrow = HASH_ARROW if hash_arrow is None else hash_arrow
    if isinstance(value, str):
        return _inspect_string(value)
    if value is None:
        return "nil"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return ruby_float(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(ruby_inspect(v, hash_arrow) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(ruby_inspect(k, hash_arrow) + hash_arrow + ruby_inspect(v, hash_arrow)
                               for k, v in value.items()) + "}"
    raise TypeError(f"no Ruby equivalent for {type(value).__name__} {value!r}; job arguments are JSON values")


def ruby_join(values: Sequence[Any], separator: str, hash_arrow: Optional[str] = None) -> str:
    """``Array#join``: strings as they are, nested arrays joined (flattened) with the same
    separator, nil as "", anything else by ``to_s`` (a Hash's is its ``inspect``)."""
    parts = []
    for value in values:
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, (list, tuple)):
            parts.append(ruby_join(value, separator, hash_arrow))
        elif value is None:
            parts.append("")
        else:
            parts.append(ruby_inspect(value, hash_arrow))  # to_s == inspect for the rest
    return separator.join(parts)


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

@dataclass(frozen=True)
class RetryPolicy:
    """A job's retry options, checked: a bad one raises RegistryError naming the fix."""

    limit: int
    backoff: Tuple[float, ...]
    retry_on: Tuple[type, ...]
    give_up_on: Tuple[type, ...]

    @classmethod
    def of(cls, spec: JobSpec) -> "RetryPolicy":
        opts = spec.options
        backoff = opts.get("backoff", ())
        backoff = tuple(backoff) if isinstance(backoff, (list, tuple)) else (backoff,)
        limit = opts.get("retry_limit", len(backoff) if backoff else 1)
        if not isinstance(limit, int) or isinstance(limit, bool):
            raise RegistryError(f"@job({spec.name!r}, retry_limit={limit!r}): give a whole number "
                                "(0 = never retry, -1 = retry forever)")
        if any(isinstance(d, bool) or not isinstance(d, (int, float)) or d < 0 for d in backoff):
            raise RegistryError(f"@job({spec.name!r}, backoff={opts.get('backoff')!r}): give seconds "
                                "as a number or a list of numbers, e.g. backoff=[0, 60, 600]")
        return cls(limit, backoff, _exception_classes(spec, "retry_on"), _exception_classes(spec, "give_up_on"))

    def retries(self, exc: BaseException) -> bool:
        """resque-retry's ``retry_exception?``: retry_on (default any), minus give_up_on."""
        if self.give_up_on and isinstance(exc, self.give_up_on):
            return False
        return not self.retry_on or isinstance(exc, self.retry_on)

    def limit_reached(self, attempt: int) -> bool:
        if self.limit == 0:
            return True
        return 0 < self.limit <= attempt

    def delay(self, attempt: int) -> float:
        if not self.backoff:
            return 0
        return self.backoff[attempt] if 0 <= attempt < len(self.backoff) else self.backoff[-1]


def _exception_classes(spec: JobSpec, option: str) -> Tuple[type, ...]:
    value = spec.options.get(option, ())
    classes = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    for cls in classes:
        if not (isinstance(cls, type) and issubclass(cls, BaseException)):
            raise RegistryError(f"@job({spec.name!r}, {option}=...): {cls!r} is not an exception "
                                "class; give a class or a tuple of them, e.g. (TimeoutError,)")
    return classes


# -- the plugin --------------------------------------------------------------------------------

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

        Bad retry options fail the run here, with a message saying what to write instead."""
        RetryPolicy.of(spec)
        resque = self.resque()
        self._count_attempt(resque, retry_key(resque.keys, spec, args))

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
        attempt = int(raw) if raw is not None else self._count_attempt(resque, key)
        if policy.limit_reached(attempt) or not policy.retries(exc):
            log.info("giving up on %s after attempt %d: %s", spec.name, attempt, type(exc).__name__)
            resque.redis.delete(key)
            return
        if spec.queue is None:
            log.error("cannot retry %s: it has no queue; give @job(%r, queue=...)", spec.name, spec.name)
            resque.redis.delete(key)
            return
        delay = policy.delay(attempt)
        resque.redis.setnx(key, -1)  # the key marks the job as being retried, as try_again does
        if delay <= 0:
            resque.enqueue_to(spec.queue, spec.name, *args)
        else:
            Delayed(resque).enqueue_in_with_queue(spec.queue, delay, spec.name, *args)
        log.info("retrying %s (attempt %d failed: %s) in %gs", spec.name, attempt, type(exc).__name__, delay)

    @staticmethod
    def _count_attempt(resque: "client.Resque", key: str) -> int:
        pipe = resque.redis.pipeline(transaction=False)
        pipe.setnx(key, -1)
        pipe.incr(key)
        return int(pipe.execute()[1])


PLUGIN = hooks.add_plugin(RetryPlugin())
