"""Run your jobs inside your own test suite, exactly as ``resque-py work`` would.

:func:`drain` runs the worker itself (the same ``Runner`` as ``resque-py work QUEUE=...
INTERVAL=0``) in this process until the queues are empty: hooks, retries, ActiveJob payloads,
failure entries and stats are the worker's own, written to the real Redis. :func:`inline` makes
every ``enqueue`` run its job (and whatever that job enqueues) before it returns.

With pytest, add ``pytest_plugins = ["resque_compat.testing"]`` to your ``conftest.py`` and use
the ``resque_testing`` fixture; it needs ``RESQUE_TESTING_URL``, a Redis DB the tests may empty
(its namespace's keys are deleted before each test). README: "Testing your jobs".
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence

from resque_compat.errors import ConfigurationError
from resque_compat.settings import TESTING_URL as URL_VARIABLE

__all__ = ["DrainResult", "JobTester", "drain", "inline"]


@dataclass
class DrainResult:
    """What one :func:`drain` did: jobs taken, of which failed, and their failure entries."""

    processed: int
    failed: int
    exit_code: int
    failures: List[Dict[str, Any]] = field(default_factory=list)


_draining = False


def drain(resque: Any, queues: Sequence[str] = ("*",), **settings: Any) -> DrainResult:
    """Work ``queues`` (``*`` = all) of ``resque``'s Redis and namespace in this process until
    they are empty, as ``resque-py work QUEUE=... INTERVAL=0`` would; return the counts.

    ``settings`` are Settings fields (``fibers=10``, ``job_timeout=2.0``, ...). Jobs must be
    registered (import your job modules first). Jobs a job enqueues run in the same drain when
    their queue is among ``queues``; delayed jobs (``enqueue_in``) wait for their time as usual.
    """
    from setproctitle import getproctitle, setproctitle

    from resque_compat import client
    from resque_compat.runtime.runner import Runner
    from resque_compat.settings import Settings

    global _draining
    if not resque.url:
        raise ConfigurationError("testing.drain needs a Resque built with Resque.from_url(url), "
                                 "so the worker can open its own connections")
    config = Settings(redis_url=resque.url, namespace=resque.keys.namespace, queues=tuple(queues),
                      interval=0.0, hub_block_threshold=0.0).with_(**settings)
    failed_key = resque.keys.failed
    before = resque.redis.llen(failed_key)
    title, default = getproctitle(), client._default
    _draining = True
    runner = None
    try:
        runner = Runner(config)
        code = runner.run(signals=False)  # the host's signal handlers stay as they are
    finally:
        _draining = False
        setproctitle(title)
        client.set_default(default)
        if runner is not None:
            runner.store.redis.connection_pool.disconnect()
    from resque_compat.wire import codec

    workers = runner.workers + runner.retired
    entries = [codec.decode(raw) for raw in resque.redis.lrange(failed_key, before, -1)]
    return DrainResult(processed=sum(w.processed for w in workers), failed=sum(w.failed for w in workers),
                       exit_code=code, failures=entries)


@contextmanager
def inline(resque: Optional[Any] = None, **settings: Any) -> Iterator[List[DrainResult]]:
    """Inside the block, every ``Resque.enqueue``/``enqueue_to``/``enqueue_active_job`` pushes
    the job and then drains every queue of that client's Redis before it returns (a job that
    fails leaves its failure entry, as in production; nothing is raised). Yields the list of
    :class:`DrainResult`, one per enqueue. ``resque`` limits this to one client's calls."""
    from resque_compat.client import Resque

    original = Resque.enqueue_to
    results: List[DrainResult] = []

    def enqueue_to(self: Resque, queue: str, job: Any, *args: Any) -> Optional[bool]:
        pushed = original(self, queue, job, *args)
        if pushed and not _draining and (resque is None or self is resque):
            results.append(drain(self, ("*",), **settings))
        return pushed

    Resque.enqueue_to = enqueue_to  # type: ignore[method-assign]
    try:
        yield results
    finally:
        Resque.enqueue_to = original  # type: ignore[method-assign]


class JobTester:
    """What the ``resque_testing`` fixture gives: a client on RESQUE_TESTING_URL, plus
    :meth:`drain` and :meth:`inline` bound to it."""

    def __init__(self, resque: Any) -> None:
        self.resque = resque

    def drain(self, *queues: str, **settings: Any) -> DrainResult:
        return drain(self.resque, queues or ("*",), **settings)

    def inline(self, **settings: Any) -> Any:
        return inline(self.resque, **settings)

    def reset(self) -> None:
        """Delete every key of this client's namespace (queues, failures, stats, workers)."""
        pattern = f"{self.resque.keys.namespace}:*"
        batch = []
        for key in self.resque.redis.scan_iter(match=pattern, count=500):
            batch.append(key)
            if len(batch) == 500:
                self.resque.redis.delete(*batch)
                batch = []
        if batch:
            self.resque.redis.delete(*batch)


def _tester_from_environment() -> JobTester:
    from resque_compat.client import Resque
    from resque_compat.settings import connection_settings, testing_redis_url

    url = testing_redis_url()
    if not url:
        raise ConfigurationError(
            f"set {URL_VARIABLE} to a Redis DB your tests may empty, e.g. "
            f"{URL_VARIABLE}=redis://127.0.0.1:6379/15 (the fixture deletes its namespace's keys)")
    return JobTester(Resque.from_url(url, connection_settings().namespace))


try:
    import pytest
except ImportError:  # pragma: no cover - the module works without pytest; only the fixture needs it
    pytest = None  # type: ignore[assignment]

if pytest is not None:
    @pytest.fixture
    def resque_testing() -> Iterator[JobTester]:
        """A :class:`JobTester` on RESQUE_TESTING_URL, its namespace emptied before the test."""
        try:
            tester = _tester_from_environment()
        except ConfigurationError as exc:
            pytest.fail(str(exc), pytrace=False)
        tester.reset()
        yield tester
        tester.resque.redis.connection_pool.disconnect()
