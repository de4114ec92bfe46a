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
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Sequence

import gevent

from . import codec, hooks, registry
from .activejob_args import (GlobalID, Range, Symbol, add_deserializer,  # noqa: F401  (re-exported)
                             deserialize_arguments, parse_time, serialize_arguments)
from .errors import JobTimeout, PayloadError

JOB_WRAPPER = "ActiveJob::QueueAdapters::ResqueAdapter::JobWrapper"

_defaults: Dict[str, Optional[str]] = {"locale": "en", "timezone": None}


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
    def from_job_data(cls, job_data: Mapping[str, Any], kwargs: Mapping[str, Any]) -> "ActiveJobData":
        return cls(
            job_class=job_data["job_class"],
            job_id=job_data.get("job_id"),
            provider_job_id=job_data.get("provider_job_id"),
            queue_name=job_data.get("queue_name"),
            priority=job_data.get("priority"),
            executions=int(job_data.get("executions") or 0) + 1,
            exception_executions=dict(job_data.get("exception_executions") or {}),
            locale=job_data.get("locale"),
            timezone=job_data.get("timezone"),
            enqueued_at=_time_or_none(job_data.get("enqueued_at")),
            scheduled_at=_time_or_none(job_data.get("scheduled_at")),
            kwargs=dict(kwargs),
            job_data=dict(job_data),
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
    job_data = args[0]
    job_class = job_data.get("job_class")
    if not isinstance(job_class, str) or not job_class:
        raise PayloadError(f"{JOB_WRAPPER} job_data has no job_class: {sorted(job_data)}")
    target = registry.lookup(job_class)
    positional, kwargs = deserialize_arguments(job_data.get("arguments", []))
    token = _current.set(ActiveJobData.from_job_data(job_data, kwargs))
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

def configure(*, locale: Optional[str] = "en", timezone: Optional[str] = None) -> None:
    """Set the ``locale`` and ``timezone`` (a Rails zone name such as ``"UTC"``) written into
    every job enqueued from this process, as Rails takes them from I18n and ``Time.zone``."""
    _defaults.update(locale=locale, timezone=timezone)


def job_data(job_class: str, args: Sequence[Any] = (), kwargs: Optional[Mapping[str, Any]] = None,
             *, queue: str = "default", job_id: Optional[str] = None,
             enqueued_at: Optional[str] = None, priority: Optional[int] = None,
             locale: Optional[str] = None, timezone: Optional[str] = None) -> Dict[str, Any]:
    """Rails 6.1's ``job.serialize``, field for field and in its order. ``job_id`` defaults to
    a new UUID, ``enqueued_at`` to now, ``locale``/``timezone`` to :func:`configure`'s."""
    if not isinstance(job_class, str) or not job_class:
        raise PayloadError("enqueue_active_job needs the Rails job class name, e.g. \"WelcomeMailerJob\"")
    return {
        "job_class": job_class,
        "job_id": job_id or str(uuid.uuid4()),
        "provider_job_id": None,
        "queue_name": queue,
        "priority": priority,
        "arguments": serialize_arguments(args, kwargs),
        "executions": 0,
        "exception_executions": {},
        "locale": locale if locale is not None else _defaults["locale"],
        "timezone": timezone if timezone is not None else _defaults["timezone"],
        "enqueued_at": enqueued_at or codec.iso8601_utc(time.time()),
    }


def enqueue_active_job(job_class: str, *args: Any, queue: str = "default", resque: Any = None,
                       **kwargs: Any) -> Optional[str]:
    """``JobClass.set(queue: queue).perform_later(*args, **kwargs)`` from Python.

    Returns the job_id, or None when a before_enqueue hook vetoed it. ``resque`` defaults to
    :func:`resque_compat.client.default`. ``queue`` and ``resque`` are taken here, so the job
    cannot receive keyword arguments of those two names.
    """
    if resque is None:
        from .client import default

        resque = default()
    data = job_data(job_class, args, kwargs, queue=queue)
    if resque.enqueue_to(queue, JOB_WRAPPER, data) is None:
        return None
    return data["job_id"]
