"""ActiveJob across the language line (WIRE §2.6; fixtures 08 and 08b).

**In.** Rails' Resque adapter enqueues
``{"class":"ActiveJob::QueueAdapters::ResqueAdapter::JobWrapper","args":[job_data]}``. Importing
this module (the worker does) registers that class name; its perform runs the Python job
registered under ``job_data["job_class"]``::

    @job("WelcomeMailerJob")
    def welcome(user, greeting="hi", *, locale=None):   # arguments decoded as in activejob_args
        meta = activejob.current()                        # job_id, executions, locale, ...

The target job is called with the decoded ``arguments`` (keyword arguments as ``**kwargs``),
through :func:`hooks.perform`, so its own hooks run, and within its ``@job(timeout=...)``.
:func:`current` returns the running job's :class:`ActiveJobData`, per greenlet. A failure is
recorded by the worker exactly as for any job: the payload is the JobWrapper payload as received,
which is what a Ruby worker's failure entry holds.

**Out.** :func:`enqueue_active_job` (and ``Resque.enqueue_active_job``) writes what Rails 6.1's
adapter writes: ``enqueue_to(queue, JobWrapper, job_data)`` with the 6.1 fields in the 6.1
order, which Rails 6.1 to 8 all execute. ``locale`` and ``timezone`` come from
:func:`configure` (Rails' ``I18n.locale`` and ``Time.zone``); Rails callbacks of the job class
are Ruby's business, so only the JobWrapper's Resque enqueue hooks run here, as in Ruby.
"""
from __future__ import annotations

import contextvars
import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import gevent

from resque_compat import hooks, registry
from resque_compat.client import default
from resque_compat.errors import JobTimeout, PayloadError
from resque_compat.wire.activejob_args import (  # noqa: F401  (re-exported: the public API)
    JOB_WRAPPER,
    GlobalID,
    Range,
    Symbol,
    add_deserializer,
    configure,
    deserialize_arguments,
    job_data,
    parse_time,
)


@dataclass(frozen=True)
class ActiveJobData:
    """What a Rails job sees about itself while it runs (``job_data`` as deserialised).

    ``executions`` is Rails' value inside ``perform``: the payload's count plus this run, so 1
    on the first run. Times are aware datetimes (``None`` when the payload has none;
    ``scheduled_at`` exists from Rails 7.1).
    """

    job_class: str
    job_id: Optional[str]
    provider_job_id: Optional[str]
    queue_name: Optional[str]
    priority: Optional[int]
    executions: int
    exception_executions: Mapping[str, Any]
    locale: Optional[str]
    timezone: Optional[str]
    enqueued_at: Optional[dt.datetime]
    scheduled_at: Optional[dt.datetime]
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    #: Every field as received, including ones Rails versions add (e.g. ``continuation``).
    job_data: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_job_data(cls, data: Mapping[str, Any], kwargs: Mapping[str, Any]) -> "ActiveJobData":
        return cls(
            job_class=data["job_class"],
            job_id=data.get("job_id"),
            provider_job_id=data.get("provider_job_id"),
            queue_name=data.get("queue_name"),
            priority=data.get("priority"),
            executions=int(data.get("executions") or 0) + 1,
            exception_executions=dict(data.get("exception_executions") or {}),
            locale=data.get("locale"),
            timezone=data.get("timezone"),
            enqueued_at=_time_or_none(data.get("enqueued_at")),
            scheduled_at=_time_or_none(data.get("scheduled_at")),
            kwargs=dict(kwargs),
            job_data=dict(data),
        )


def _time_or_none(value: Any) -> Optional[dt.datetime]:
    return parse_time(value) if value else None


_current: contextvars.ContextVar[Optional[ActiveJobData]] = contextvars.ContextVar(
    "resque_compat_active_job", default=None)


def current() -> Optional[ActiveJobData]:
    """The ActiveJob being performed by this greenlet, or None outside one."""
    return _current.get()


# -- in ----------------------------------------------------------------------------------------

@registry.job(JOB_WRAPPER)
def perform_job_wrapper(*args: Any) -> Any:
    """``JobWrapper.perform(job_data)``: run the Python job registered as ``job_class``."""
    if len(args) != 1 or not isinstance(args[0], dict):
        raise PayloadError(
            f"{JOB_WRAPPER} takes one job_data hash (the output of job.serialize), got "
            f"{len(args)} argument(s); this payload was not written by Rails' Resque adapter"
        )
    data = args[0]
    job_class = data.get("job_class")
    if not isinstance(job_class, str) or not job_class:
        raise PayloadError(f"{JOB_WRAPPER} job_data has no job_class: {sorted(data)}")
    target = registry.lookup(job_class)
    positional, kwargs = deserialize_arguments(data.get("arguments", []))
    token = _current.set(ActiveJobData.from_job_data(data, kwargs))
    try:
        if not target.timeout:
            return hooks.perform(target, positional, kwargs)
        with gevent.Timeout(target.timeout, JobTimeout(
                f"{target.name} ran longer than its {target.timeout:g}s time limit and was "
                "stopped (raise @job(timeout=...) if it needs longer)")):
            return hooks.perform(target, positional, kwargs)
    finally:
        _current.reset(token)


# -- out ---------------------------------------------------------------------------------------


def enqueue_active_job(job_class: str, *args: Any, queue: str = "default", resque: Any = None,
                       **kwargs: Any) -> Optional[str]:
    """``JobClass.set(queue: queue).perform_later(*args, **kwargs)`` from Python.

    Returns the job_id, or None when a before_enqueue hook vetoed it. ``resque`` defaults to
    :func:`resque_compat.client.default`. ``queue`` and ``resque`` are taken here, so the job
    cannot receive keyword arguments of those two names.
    """
    if resque is None:
        resque = default()
    return resque.enqueue_active_job(job_class, *args, queue=queue, **kwargs)
