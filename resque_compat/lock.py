"""resque-lock-timeout's run lock, on the gem's keys (fixtures/ruby-plugins/lock_*), as a
:mod:`hooks` plugin.

``@job("SyncJob", queue="q", lock_timeout=60)`` is a Ruby class that ``extend
Resque::Plugins::LockTimeout`` with ``@lock_timeout = 60``; ``lock_timeout=0`` is the gem's
default (a lock without expiry). ``lock_loner=True`` is its ``@loner = true``.

* **Around perform** (the plugin's around hook, inside the job's own): take
  ``lock:<Class>:<args.join('-')>`` with ``SETNX`` of the expiry epoch (``now + lock_timeout``),
  or of ``true`` without a timeout; an expired lock is taken over with ``GETSET``. The value is
  the expiry: the key never gets a Redis TTL. A job whose lock another worker (Ruby or Python)
  holds is **dropped**: not run, no failure, no retry, yet counted as processed (lock_02). The
  lock is DELeted when perform ends, whatever the outcome, unless it expired meanwhile (then
  another worker may hold it: it is left alone and ``lock_expired_before_release`` is called).
* **Loner** (``lock_loner=True``): enqueueing is refused (returns None, as Ruby's nil) while the
  job runs (its run lock is held) or is already queued (``loner:lock:<Class>:<identifier>``,
  taken at enqueue with the same value scheme; see :mod:`resque_compat.loner`). The worker
  DELs the loner lock right after taking the run lock (lock_05..07).
* **Callbacks**, as the gem's overridable class methods: a job class registered with ``@job``
  may define ``lock_failed(*args)``, ``loner_enqueue_failed(*args)`` and
  ``lock_expired_before_release(*args)`` (static or class methods); a function job can pass
  them as ``@job`` options of the same names.

The identifier is Ruby's ``args.join('-')`` (:func:`resque_compat.wire.ruby.ruby_join`: nested
arrays flattened, a Hash as its Ruby 3.1 ``inspect``), unhashed and unescaped, so spaces and
``=>`` appear in the key name as Ruby writes them.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Iterator, Sequence

from resque_compat import activejob, client, hooks
from resque_compat.loner import call_back, lock_identifier, lock_names, lock_timeout
from resque_compat.registry import JobSpec
from resque_compat.store import plugins as plugin_store

log = logging.getLogger("resque_compat.lock")

OPTIONS = ("lock_timeout", "lock_loner")


class LockPlugin:
    """The run lock of ``Resque::Plugins::LockTimeout`` for every ``@job`` with ``lock_timeout``."""

    def __init__(self, resque: Callable[[], "client.Resque"] = client.default,
                 clock: Callable[[], float] = time.time) -> None:
        self.resque = resque
        self.clock = clock

    def applies_to(self, spec: JobSpec) -> bool:
        # Through ActiveJob, Rails' own concurrency controls apply; a lock here would key on
        # the wrapper's job data.
        return "lock_timeout" in spec.options and activejob.current() is None

    def around_perform(self, spec: JobSpec, args: Sequence[Any]) -> Iterator[None]:
        """``around_perform_lock``: run only under the lock; drop the job if another holds it."""
        resque, timeout = self.resque(), lock_timeout(spec)
        run_lock, loner_lock = lock_names(spec, resque.keys, args)
        until = plugin_store.acquire_lock(resque.redis, run_lock, timeout, int(self.clock()))
        if spec.options.get("lock_loner"):  # it is no longer queued
            plugin_store.release(resque.redis, loner_lock)
        if not until:
            log.info("dropped %s(%s): another worker holds its lock", spec.name, lock_identifier(args))
            call_back(spec, "lock_failed", args)
            return
        try:
            yield
        finally:
            if until is not True and until < int(self.clock()):
                log.warning("%s(%s) outlived its %ss lock; left in place for whoever holds it now",
                            spec.name, lock_identifier(args), timeout)
                call_back(spec, "lock_expired_before_release", args)
            else:
                plugin_store.release(resque.redis, run_lock)


PLUGIN = hooks.add_plugin(LockPlugin())
