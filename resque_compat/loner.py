"""Enqueue-time uniqueness, on the gems' keys: resque-loner's unique jobs
(fixtures/ruby-plugins/loner_*) and resque-lock-timeout's ``@loner`` mode (lock_05..07; its
run lock is in :mod:`resque_compat.lock`). Both are checked by :class:`~resque_compat.client.Resque`
itself when it enqueues, so they hold in any process that enqueues, worker or not.

resque-loner
------------

``@job("UniqueJob", queue="q", unique=True)`` is a Ruby class that ``include
Resque::Plugins::UniqueJob``. Options (Ruby's class variables):

* ``unique_ttl=N``: ``@loner_ttl``, the key expires N seconds after the enqueue (default never);
* ``unique_lock_after_execution_period=N``: ``@loner_lock_after_execution_period``, the key is
  kept N seconds after a worker reserved the job instead of being deleted.

Both sides behave as the gem:

* **enqueue** (:meth:`Resque.enqueue_to <resque_compat.client.Resque.enqueue_to>`): ``GET
  loners:queue:<q>:job:<md5>``; ``"1"`` means the same job is queued: nothing is pushed and the
  call returns False (Ruby's ``Resque.enqueue`` returns true here and only ``Job.create`` says
  ``"EXISTED"``; after_enqueue hooks run in both, as in Ruby). Otherwise one MULTI pushes the
  job and SETs the key to ``1`` (+ EXPIRE).
* **reserve** (the worker, right after taking the job, before any hook): ``DEL`` the key, or
  ``EXPIRE`` it with ``unique_lock_after_execution_period``, so the job can be enqueued again
  while it runs (loner_02b).
* **dequeue** (:meth:`Resque.dequeue <resque_compat.client.Resque.dequeue>`): the key of each
  removed item goes as at reserve (loner_01b); ``remove_queue`` deletes all of the queue's keys.

The md5 is over the payload as the gem reshapes it (top-level Hash arguments become sorted pairs,
:func:`resque_compat.wire.plugins.loner_digest_input`), so it matches Ruby's key for the same
arguments whichever side enqueued them.

resque-lock-timeout's loner mode
--------------------------------
``@job("SyncJob", lock_timeout=30, lock_loner=True)``: after the before_enqueue hooks, the
enqueue is refused (returns None, Ruby's nil, and no after_enqueue hook runs) while the job
runs (``lock:<Class>:<identifier>`` held) or is already queued; otherwise
``loner:lock:<Class>:<identifier>`` is taken with the run lock's value scheme (``GET`` the run
lock, ``SETNX`` the loner lock, then ``GET``/``SETNX`` or ``GETSET`` if expired, lock_05).
"""
from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import redis

from resque_compat.errors import JobNotRegistered, RegistryError
from resque_compat.registry import JobSpec, lookup
from resque_compat.store import plugins as plugin_store
from resque_compat.wire.keys import Keys
from resque_compat.wire.plugins import loner_digest
from resque_compat.wire.ruby import ruby_join

log = logging.getLogger("resque_compat.loner")

OPTIONS = ("unique", "unique_ttl", "unique_lock_after_execution_period")


@dataclass(frozen=True)
class Unique:
    """One unique job's loner key and its expiries."""

    key: str
    ttl: Optional[int]          # @loner_ttl
    keep_after_reserve: int     # @loner_lock_after_execution_period (0 = DEL at reserve)


def _seconds(spec: JobSpec, option: str) -> Optional[int]:
    value = spec.options.get(option)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise RegistryError(f"@job({spec.name!r}, {option}={value!r}): give whole seconds above 0, "
                            "e.g. 300, or leave it out")
    return value


def unique_for(spec: Optional[JobSpec], keys: Keys, queue: str, args: Sequence[Any]) -> Optional[Unique]:
    """The loner key of this job in ``queue``, None for a job that is not ``unique=True``."""
    if spec is None or not spec.options.get("unique"):
        return None
    name = spec.name[2:] if spec.name.startswith("::") else spec.name
    return Unique(keys.loner(queue, loner_digest(name, args)), _seconds(spec, "unique_ttl"),
                  _seconds(spec, "unique_lock_after_execution_period") or 0)


def registered(class_name: str) -> Optional[JobSpec]:
    """The job registered here under ``class_name``; None means no plugin applies (as the gems,
    which cannot constantize a class the process does not have)."""
    try:
        return lookup(class_name)
    except JobNotRegistered:
        return None


def registered_unique(class_name: str, keys: Keys, queue: str, args: Sequence[Any]) -> Optional[Unique]:
    """:func:`unique_for` by class name."""
    return unique_for(registered(class_name), keys, queue, args)


def push(client: redis.Redis, keys: Keys, queue: str, item: str, unique: Unique) -> bool:
    """Enqueue side; False when the same job is already queued (see module docstring)."""
    pushed = plugin_store.push_unique(client, keys.queues, keys.queue(queue), queue, item,
                                      unique.key, unique.ttl)
    if not pushed:
        log.info("not enqueued: the same unique job is already queued (%s)", keys.strip(unique.key))
    return pushed


def unqueued(client: redis.Redis, unique: Unique) -> None:
    """Reserve/dequeue side: the job left its queue."""
    plugin_store.unqueue_loner(client, unique.key, unique.keep_after_reserve)


def forget_queue(client: redis.Redis, keys: Keys, queue: str) -> int:
    """``Resque.remove_queue`` side: no job of the queue is queued any more. Done whatever the
    jobs registered here, since a process that removes a queue (resque-py queues --remove) may
    not load the app's jobs; deleting keys of a queue that no longer exists is always right."""
    return plugin_store.forget_loners(client, keys.loner_pattern(queue))


# -- resque-lock-timeout ---------------------------------------------------------------------

def lock_timeout(spec: JobSpec) -> int:
    """``@lock_timeout`` (0 = a lock without expiry, the gem's default)."""
    value = spec.options.get("lock_timeout", 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RegistryError(f"@job({spec.name!r}, lock_timeout={value!r}): give whole seconds, e.g. 60 "
                            "(0 = a lock without expiry, the gem's default)")
    return value


def lock_identifier(args: Sequence[Any]) -> str:
    """The gem's ``identifier(*args)``: ``args.join('-')``, unhashed and unescaped."""
    return ruby_join(args, "-")


def lock_names(spec: JobSpec, keys: Keys, args: Sequence[Any]) -> "tuple[str, str]":
    """(run lock, loner lock) key names of this job."""
    name = spec.name[2:] if spec.name.startswith("::") else spec.name
    ident = lock_identifier(args)
    return keys.run_lock(name, ident), keys.loner_lock(name, ident)


def call_back(spec: JobSpec, name: str, args: Sequence[Any]) -> None:
    """The gem's overridable class methods (``lock_failed``, ``loner_enqueue_failed``,
    ``lock_expired_before_release``): an ``@job`` option of that name, else a static or class
    method of a registered class."""
    fn = spec.options.get(name)
    if fn is None and inspect.isclass(spec.target):
        fn = getattr(spec.target, name, None)
    if callable(fn):
        fn(*args)


def lock_loner_admits(client: redis.Redis, keys: Keys, spec: Optional[JobSpec], args: Sequence[Any],
                      now: float) -> bool:
    """``before_enqueue_lock``: False when a ``lock_loner`` job runs or is queued already."""
    if spec is None or not spec.options.get("lock_loner"):
        return True
    timeout = lock_timeout(spec)
    run_lock, loner_lock = lock_names(spec, keys, args)
    if not plugin_store.lock_held(client, run_lock, timeout, int(now)) and \
            plugin_store.acquire_lock(client, loner_lock, timeout, int(now)):
        return True
    log.info("not enqueued: %s(%s) is already running or queued (lock_loner)", spec.name,
             lock_identifier(args))
    call_back(spec, "loner_enqueue_failed", args)
    return False
