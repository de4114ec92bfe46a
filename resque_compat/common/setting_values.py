"""The parsers behind the settings table (:mod:`resque_compat.settings`): text in, a typed value
or a :class:`ConfigurationError` that says what to write instead. Pure: no environment, no I/O."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence, Tuple

from resque_compat.common.urls import parse_host_port
from resque_compat.errors import ConfigurationError


def seconds(name: str, minimum: float = 0.0) -> Callable[[str], float]:
    """A number of seconds of at least ``minimum`` (NaN refused)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ConfigurationError(f"{name} must be a number of seconds, e.g. {name}=5.0 (got {text!r})") from None
        if value < minimum or value != value:
            raise ConfigurationError(f"{name} must be at least {minimum} (got {text!r})")
        return value
    return parse


def whole(name: str, minimum: int = 0, maximum: Optional[int] = None) -> Callable[[str], int]:
    """A whole number within ``minimum``..``maximum``."""
    def parse(text: str) -> int:
        try:
            value = int(str(text).strip())
        except ValueError:
            raise ConfigurationError(
                f"{name} must be a whole number, e.g. {name}={max(minimum, 1)} (got {text!r})") from None
        if value < minimum:
            raise ConfigurationError(f"{name} must be at least {minimum} (got {text!r})")
        if maximum is not None and value > maximum:
            raise ConfigurationError(f"{name} must be at most {maximum} (got {text!r})")
        return value
    return parse


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(name: str) -> Callable[[str], float]:
    """Seconds, or a number with s, m, h or d (``72h``)."""
    def parse(text: str) -> float:
        value = str(text).strip().lower()
        unit = _UNITS.get(value[-1:], 0)
        return seconds(name, 1.0)(value[:-1] if unit else value) * (unit or 1)
    return parse


def flag(text: str) -> bool:
    """Ruby checks these with ``ENV['VERBOSE']`` truthiness: any non-empty value but 0/false."""
    return str(text).strip().lower() not in ("", "0", "false", "no", "off")


def comma_list(text: str) -> Tuple[str, ...]:
    return tuple(part.strip() for part in str(text).split(",") if part.strip())


def choice(name: str, choices: Sequence[str]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = str(text).strip().lower()
        if value not in choices:
            raise ConfigurationError(f"{name} must be one of {', '.join(choices)} (got {text!r})")
        return value
    return parse


#: Ruby Resque 3.0's own FAILURE_BACKEND values: the only ones a shared environment may hold.
RUBY_FAILURE_BACKENDS = ("redis", "redis_multi_queue")
#: What Python workers accept in RESQUE_PY_FAILURE_BACKEND.
PY_FAILURE_BACKENDS = RUBY_FAILURE_BACKENDS + ("multiple", "multiple_with_retry_suppression")


def ruby_failure_backend(text: str) -> str:
    # Ruby Resque 3.0 reads the same variable: with any other value a Ruby worker's first failure
    # raises NameError inside Resque, which swallows it, so that worker's failures vanish.
    value = str(text).strip().lower()
    if value in RUBY_FAILURE_BACKENDS:
        return value
    hint = (f"use RESQUE_PY_FAILURE_BACKEND={value} instead" if value in PY_FAILURE_BACKENDS
            else f"use {' or '.join(RUBY_FAILURE_BACKENDS)}, or RESQUE_PY_FAILURE_BACKEND for "
                 f"{' or '.join(PY_FAILURE_BACKENDS[2:])}")
    raise ConfigurationError(
        f"FAILURE_BACKEND={text} is refused: Ruby Resque workers read FAILURE_BACKEND too and "
        f"silently lose every failure record with anything but {' or '.join(RUBY_FAILURE_BACKENDS)}; "
        f"{hint}")


def host_port(name: str) -> Callable[[str], str]:
    """``HOST:PORT`` for a metrics sink; the text is kept, the port checked now."""
    def parse(text: str) -> str:
        try:
            port = parse_host_port(str(text))[1]
        except ValueError:
            port = 0
        if not port:
            raise ConfigurationError(f"{name} must be HOST:PORT, e.g. {name}=127.0.0.1:8125 (got {text!r})")
        return str(text).strip()
    return parse


@dataclass(frozen=True)
class FiberRange:
    """``FIBERS=MIN..MAX`` before :meth:`Settings.load` splits it into ``fibers_min``/``fibers``."""

    low: int
    high: int


def fibers(text: str) -> Any:
    """``FIBERS=100`` (fixed) or ``FIBERS=10..200`` (autoscale between 10 and 200 greenlets)."""
    low, sep, high = str(text).strip().partition("..")
    if not sep:
        return whole("FIBERS", 1)(text)
    try:
        bounds = FiberRange(whole("FIBERS", 1)(low), whole("FIBERS", 1)(high))
    except ConfigurationError:
        raise ConfigurationError(f"FIBERS must be N or MIN..MAX with whole numbers of at least 1, "
                                 f"e.g. FIBERS=10..200 (got {text!r})") from None
    if bounds.low > bounds.high:
        raise ConfigurationError(f"FIBERS=MIN..MAX needs MIN <= MAX, e.g. FIBERS=10..200 (got {text!r})")
    return bounds if bounds.low < bounds.high else bounds.high


def http_timeouts(text: str) -> Tuple[float, float]:
    """``HTTP_TIMEOUT=5,30`` (connect, read) or one number for both."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    parse = seconds("HTTP_TIMEOUT", 0.001)
    if len(parts) == 1:
        return (parse(parts[0]), parse(parts[0]))
    if len(parts) == 2:
        return (parse(parts[0]), parse(parts[1]))
    raise ConfigurationError(f"HTTP_TIMEOUT must be CONNECT,READ seconds, e.g. HTTP_TIMEOUT=5,30 (got {text!r})")
