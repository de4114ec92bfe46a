"""Failure backends and the failure operations resque-web performs.

Backends (WIRE §4.4, fixture 10), chosen by ``RESQUE_PY_FAILURE_BACKEND``, else by Ruby's
``FAILURE_BACKEND`` (which only takes Ruby's two values, see settings.py):

* ``redis`` (default): every failure entry is RPUSHed to ``failed``.
* ``redis_multi_queue``: to ``<queue>_failed``, whose name is SADDed to ``failed_queues``;
  there is no ``failed`` list.
* ``multiple``: ``redis``, plus a Python callback (``FAILURE_CALLBACK=module:function``, e.g. to
  report to Sentry) called with each failure as a dict once it is recorded.
* ``multiple_with_retry_suppression``: resque-retry's ``MultipleWithRetrySuppression`` over
  ``redis`` (+ the callback if one is set): a failure whose job is being retried is counted but
  kept out of ``failed`` (see :mod:`resque_compat.retry_failures`).

A worker's own writes ride its reserve script (``Store.finish_and_reserve`` routes each entry
by backend), so for workers this module only adds the callback. The operations below are Ruby's
``Failure::Redis`` / ``Failure::RedisMultiQueue`` class methods (WIRE §4.5), byte for byte
(fixtures 05, 10b, 12b). Like Ruby's backends they send their own Redis commands: they are
operator actions on the failure lists, not part of a worker's per-job traffic.
"""
from __future__ import annotations

import importlib
import logging
import time
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Any, Callable, Iterator, List, Optional, Tuple

from resque_compat.errors import (
    ConfigurationError,
    NoClassError,
    NoQueueError,
    ResqueError,
)
from resque_compat.wire import codec
from resque_compat.wire.keys import Keys

if TYPE_CHECKING:  # redis and gevent load when used, so `resque-py --help` stays fast
    import redis

log = logging.getLogger("resque_compat.failures")

BACKENDS = ("redis", "redis_multi_queue", "multiple", "multiple_with_retry_suppression")
#: Entries read per LRANGE when scanning a failure list.
PAGE = 200


class FailureLookupError(ResqueError):
    """An index or queue that names no failure list or entry (a usage error)."""


class FailureNotFound(FailureLookupError):
    """No failure entry at that index (the list is shorter, or changed meanwhile)."""


class BadFailureEntry(ResqueError):
    """A failure entry that is not a JSON object, so it cannot be retried (Ruby: a 500)."""


@dataclass(frozen=True)
class Failure:
    """One failure entry and where it lives: ``index`` is its real position in the Redis list
    ``list_name`` (``failed`` or e.g. ``critical_failed``), the id resque-web's links use."""

    index: int
    list_name: str
    raw: str
    data: Optional[dict]
    key: str = field(default="", repr=False, compare=False)  # the list's full Redis key

    def get(self, name: str) -> Any:
        return self.data.get(name) if self.data is not None else None

    @property
    def queue(self) -> Any:
        return self.get("queue")

    @property
    def payload(self) -> Any:
        return self.get("payload")

    @property
    def class_name(self) -> Any:
        return self.payload.get("class") if isinstance(self.payload, dict) else None

    @property
    def args(self) -> Any:
        return self.payload.get("args") if isinstance(self.payload, dict) else None

    def as_json(self) -> dict:
        """The ``--json`` shape: position plus the decoded entry (or its raw text if invalid)."""
        return {"index": self.index, "list": self.list_name,
                "entry": self.data if self.data is not None else self.raw}


@dataclass
class RequeueReport:
    """What a bulk retry did: how many jobs went back to their queues, and which entries could
    not be retried and why."""

    requeued: int = 0
    problems: Tuple[str, ...] = ()


def decode_entry(raw: Any) -> Optional[dict]:
    """A failure entry's JSON object, or None for bytes that are not one (never raises)."""
    try:
        data = codec.decode(raw)
    except codec.DecodeError:
        return None
    return data if isinstance(data, dict) else None


def job_of(data: dict) -> Tuple[str, str, list]:
    """``Job.create(item['queue'], item['payload']['class'], *item['payload']['args'])``'s
    validation: (queue, class, args), or Ruby's NoQueueError / NoClassError."""
    raw_payload = data.get("payload")
    payload = raw_payload if isinstance(raw_payload, dict) else {}
    class_name = payload.get("class")
    queue = data.get("queue")
    if queue is None or queue is False:
        raise NoQueueError(
            f"Jobs must be placed onto a queue. No queue could be inferred for class {class_name} "
            "(this failure has no \"queue\"; retried_at was written as Ruby does; enqueue it by "
            "hand with resque-py enqueue QUEUE CLASS ARGS_JSON, or remove the failure)")
    if not isinstance(class_name, str) or not class_name:
        raise NoClassError("Jobs must be given a class. (this failure's payload names none; "
                           "remove it, or enqueue the job by hand)")
    args = payload.get("args")
    if args is None:
        args = []
    elif not isinstance(args, list):
        args = [args]  # Ruby's splat of a non-array value
    return str(queue), class_name, args


class Failures:
    """resque-web's failure operations over one backend's layout (WIRE §4.5).

    ``queue`` arguments name a *job* queue (``critical``). With ``redis_multi_queue`` it picks
    that queue's list; with ``redis`` it filters :meth:`list`/:meth:`count` and selects entries
    for :meth:`requeue_queue`/:meth:`clear`, while indexes always count in the one list.
    """

    def __init__(self, client: redis.Redis, keys: Keys, backend: str = "redis",
                 clock: Callable[[], float] = time.time) -> None:
        if backend not in BACKENDS:
            raise ConfigurationError(f"FAILURE_BACKEND must be one of {', '.join(BACKENDS)} (got {backend!r})")
        self.redis = client
        self.keys = keys
        self.backend = backend
        self.multi = backend == "redis_multi_queue"
        self.clock = clock

    # -- where entries live -------------------------------------------------------------------
    def list_keys(self, queue: Optional[str] = None) -> List[str]:
        """The failure lists to read, in a stable order."""
        if not self.multi:
            return [self.keys.failed]
        if queue is not None:
            return [self.keys.failure_list(queue, self.backend)]
        members = sorted(codec.text(m) for m in self.redis.smembers(self.keys.failed_queues))
        return [self.keys.failed_queue_list(m) for m in members]

    def list_for_index(self, queue: Optional[str]) -> str:
        """The list an index refers to."""
        if not self.multi:
            if queue is not None:
                raise FailureLookupError("the redis failure backend keeps every failure in one list, so an "
                                  "index is a position in it: leave out --queue")
            return self.keys.failed
        if queue is not None:
            return self.keys.failure_list(queue, self.backend)
        candidates = self.list_keys()
        if len(candidates) == 1:
            return candidates[0]
        names = ", ".join(self.keys.strip(k) for k in candidates) or "none yet"
        raise FailureLookupError("with FAILURE_BACKEND=redis_multi_queue every queue has its own failure "
                          f"list, so give the job queue (--queue); failure lists: {names}")

    # -- reading ------------------------------------------------------------------------------
    def count(self, queue: Optional[str] = None) -> int:
        if self.multi or queue is None:
            pipe = self.redis.pipeline(transaction=False)
            for key in self.list_keys(queue):
                pipe.llen(key)
            return sum(int(n) for n in pipe.execute())
        return sum(1 for _ in self.entries(queue))

    def entries(self, queue: Optional[str] = None, start: int = 0) -> Iterator[Failure]:
        """Every failure (of ``queue``), list by list, in list order."""
        filtered = queue is not None and not self.multi
        for key in self.list_keys(queue):
            index = 0 if filtered else start
            while True:
                page = self.redis.lrange(key, index, index + PAGE - 1)
                for offset, raw in enumerate(page):
                    failure = self._failure(key, index + offset, raw)
                    if not filtered or failure.queue == queue:
                        yield failure
                if len(page) < PAGE:
                    break
                index += PAGE
            start = 0 if filtered else max(0, start - self.redis.llen(key))

    def list(self, start: int = 0, count: int = 20, queue: Optional[str] = None) -> List[Failure]:
        """``Failure.all(start, count)``: ``count`` failures from the ``start``-th (count < 0:
        all of them). With a ``queue`` filter on the redis backend, ``start`` counts matches."""
        stop = None if count < 0 else start + count
        if queue is not None and not self.multi:
            return list(islice(self.entries(queue), start, stop))
        return list(islice(self.entries(queue, start), 0, None if stop is None else count))

    def show(self, index: int, queue: Optional[str] = None) -> Failure:
        key = self.list_for_index(queue)
        raw = self.redis.lindex(key, index)
        if raw is None:
            raise self.not_found(key, index)
        return self._failure(key, index, raw)

    def _failure(self, key: str, index: int, raw: Any) -> Failure:
        return Failure(index, self.keys.strip(key), codec.text(raw), decode_entry(raw), key)

    def not_found(self, key: str, index: int) -> FailureNotFound:
        """The error for an index past the end of ``key``, saying how to list the indexes."""
        return FailureNotFound(
            f"no failure at index {index} in {self.keys.strip(key)} ({self.redis.llen(key)} "
            "entries); `resque-py failed list` shows the indexes")

    # -- retrying -----------------------------------------------------------------------------
    def requeue(self, index: int, queue: Optional[str] = None) -> str:
        """resque-web's Retry: add ``retried_at`` and LSET the entry in place, then push
        ``{class,args}`` back to its queue. Returns the ``retried_at`` text.

        Raises NoQueueError / NoClassError as Ruby's ``Job.create`` does, after ``retried_at``
        was written (as Ruby); BadFailureEntry for an entry that is not a JSON object."""
        return self._requeue_at(self.list_for_index(queue), index)

    def _requeue_at(self, key: str, index: int) -> str:
        # Redis backend: "%Y/%m/%d %H:%M:%S %Z"; RedisMultiQueue leaves the zone out (fixture 10b).
        retried_at = codec.failed_at(self.clock(), with_zone=not self.multi)
        problem: List[ResqueError] = []

        def update(pipe: redis.client.Pipeline) -> None:
            problem.clear()
            raw = pipe.lindex(key, index)  # WATCHed: a list that shifts meanwhile is re-read
            if raw is None:
                raise self.not_found(key, index)
            data = decode_entry(raw)
            if data is None:
                raise BadFailureEntry(f"failure {index} in {self.keys.strip(key)} is not a JSON "
                                      "object, so it cannot be retried; remove it with "
                                      f"`resque-py failed remove {index}`")
            data["retried_at"] = retried_at  # an existing retried_at keeps its place, as in Ruby
            pipe.multi()
            pipe.lset(key, index, codec.encode(data))
            try:
                job_queue, class_name, args = job_of(data)
            except (NoQueueError, NoClassError) as exc:
                problem.append(exc)
                return
            # Job.create -> Resque.push: SADD queues + RPUSH, with the bytes Ruby writes.
            pipe.sadd(self.keys.queues, job_queue)
            pipe.rpush(self.keys.queue(job_queue), codec.encode_job(class_name, args))

        self.redis.transaction(update, key)
        if problem:
            raise problem[0]
        return retried_at

    def requeue_all(self) -> RequeueReport:
        """resque-web's "Retry all": every entry of every failure list, in list order. Unlike
        Ruby, an entry that cannot be retried is reported and the rest are still retried."""
        return self._requeue_where(lambda failure: True)

    def requeue_queue(self, queue: str) -> RequeueReport:
        """``Failure.requeue_queue(q)``: every failure whose job came from ``queue``."""
        if self.multi:  # RedisMultiQueue: the whole <queue>_failed list
            return self._requeue_where(lambda failure: True, queue)
        return self._requeue_where(lambda failure: failure.queue == queue)

    def _requeue_where(self, wanted: Callable[[Failure], bool],
                       queue: Optional[str] = None) -> RequeueReport:
        report = RequeueReport()
        problems = []
        for failure in list(self.entries(queue)):
            if not wanted(failure):
                continue
            try:
                self._requeue_at(failure.key, failure.index)
                report.requeued += 1
            except ResqueError as exc:
                problems.append(f"{failure.list_name}[{failure.index}]: {exc}")
        report.problems = tuple(problems)
        return report

    # -- removing -----------------------------------------------------------------------------
    def remove(self, index: int, queue: Optional[str] = None) -> None:
        """``Failure.remove(i)``: LSET the entry to "" then LREM one "" (by index, as Ruby)."""
        self._remove_at(self.list_for_index(queue), index)

    def _remove_at(self, key: str, index: int) -> None:
        import redis

        try:
            self.redis.lset(key, index, "")
        except redis.ResponseError:  # "index out of range" (or no such list)
            raise self.not_found(key, index) from None
        self.redis.lrem(key, 1, "")

    def clear(self, queue: Optional[str] = None) -> int:
        """Delete failures; returns how many. No queue: every failure list (Ruby's ``clear``,
        DEL). With a queue: multi-queue DELs ``<queue>_failed`` (``remove_queue``); redis
        removes that queue's entries from ``failed`` by index, as ``Failure::Redis.remove_queue``."""
        if queue is not None and not self.multi:
            return self._remove_where(lambda failure: failure.queue == queue)
        keys = self.list_keys(queue)
        if not keys:
            return 0
        pipe = self.redis.pipeline(transaction=True)
        for key in keys:
            pipe.llen(key)
        pipe.delete(*keys)
        return sum(int(n) for n in pipe.execute()[:-1])

    def clear_retried(self) -> int:
        """``Failure.clear_retried``: remove every entry that has ``retried_at``."""
        return self._remove_where(lambda failure: failure.get("retried_at") is not None)

    def _remove_where(self, wanted: Callable[[Failure], bool]) -> int:
        removed = 0
        for failure in reversed(list(self.entries())):  # from the end: earlier indexes stay put
            if wanted(failure):
                self._remove_at(failure.key, failure.index)
                removed += 1
        return removed


# -- RESQUE_PY_FAILURE_BACKEND=multiple----------------------------------------------------------------

def load_callback(spec: str) -> Callable[[dict], Any]:
    """``module:function`` -> the function. Raises ConfigurationError saying what to fix."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigurationError(
            f"FAILURE_CALLBACK must be module:function, e.g. FAILURE_CALLBACK=myapp.errors:report (got {spec!r})")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigurationError(f"FAILURE_CALLBACK={spec}: cannot import {module_name} "
                                 f"({type(exc).__name__}: {exc}); check the name and that it imports") from None
    func = getattr(module, attr, None)
    if not callable(func):
        raise ConfigurationError(f"FAILURE_CALLBACK={spec}: {module_name} has no function {attr!r}")
    return func


class FailureNotifier:
    """Calls the callback with each recorded failure, each call in its own greenlet so a slow
    reporter never delays taking jobs. A callback that raises is logged, never propagated."""

    def __init__(self, callback: Callable[[dict], Any], name: str = "") -> None:
        from gevent.pool import Group

        self.callback = callback
        self.name = name or getattr(callback, "__qualname__", repr(callback))
        self._calls = Group()

    def __call__(self, entry: str) -> None:
        """Called right after the trip that recorded ``entry`` (a failure entry's JSON)."""
        self._calls.spawn(self._notify, entry)

    def _notify(self, entry: str) -> None:
        try:
            self.callback(codec.decode(entry))
        except Exception:
            log.exception("FAILURE_CALLBACK %s raised; the failure itself is recorded in Redis", self.name)

    def join(self, timeout: Optional[float] = None) -> bool:
        """Wait for calls still running (at shutdown). True if none is left."""
        return self._calls.join(timeout=timeout)


def notifier_for(backend: str, callback: Optional[str]) -> Optional[FailureNotifier]:
    """The FAILURE_CALLBACK notifier of the ``multiple`` backends, None for the others."""
    if backend not in ("multiple", "multiple_with_retry_suppression"):
        if callback:
            raise ConfigurationError("FAILURE_CALLBACK is only called with RESQUE_PY_FAILURE_BACKEND=multiple; "
                                     "set RESQUE_PY_FAILURE_BACKEND=multiple too, or unset FAILURE_CALLBACK")
        return None
    if not callback:
        if backend == "multiple_with_retry_suppression":
            return None  # Ruby's usual configuration: MultipleWithRetrySuppression over Redis alone
        raise ConfigurationError("RESQUE_PY_FAILURE_BACKEND=multiple needs FAILURE_CALLBACK=module:function, "
                                 "e.g. FAILURE_CALLBACK=myapp.errors:report")
    return FailureNotifier(load_callback(callback), callback)
