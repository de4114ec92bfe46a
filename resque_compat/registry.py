"""``@job("Ruby::Class", queue=...)``: Python code registered under the class name Rails enqueues.

A registered function is called with the payload's args as positional arguments, exactly as Ruby
calls ``klass.perform(*args)``; a registered class must have a ``perform`` static or class
method. The name is the Ruby constant path, verbatim (``Callbacks::Deliver``).
"""
from __future__ import annotations

import inspect
import linecache
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, TypeVar

from resque_compat.errors import JobNotRegistered, RegistryError

#: A Ruby constant path: ``Foo``, ``Foo::Bar``, optionally with a leading ``::`` (WIRE §2.1).
_RUBY_CONSTANT = re.compile(r"^(::)?[A-Z][A-Za-z0-9_]*(::[A-Z][A-Za-z0-9_]*)*$")

T = TypeVar("T")


@dataclass(frozen=True)
class JobSpec:
    """One registered job: its Ruby name, default queue and the callable that performs it."""

    name: str
    queue: Optional[str]
    target: Any
    perform: Callable[..., Any]
    origin: str
    #: Seconds the job may run (None = the worker's JOB_TIMEOUT).
    timeout: Optional[float] = None
    #: Further per-job options (e.g. retry settings), kept for the features that read them.
    options: Mapping[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.name} ({self.origin})"


_registry: Dict[str, JobSpec] = {}


def _origin(obj: Any) -> str:
    """``FILE:LINE`` of the definition (its first decorator), for messages about it."""
    try:
        path = inspect.getsourcefile(obj)
    except TypeError:  # a builtin or a C extension's class
        path = None
    if path is None:  # no source file (a REPL, exec): name it instead
        return f"{getattr(obj, '__module__', None) or '?'}.{getattr(obj, '__qualname__', '?')}"
    code = None if inspect.isclass(obj) else getattr(inspect.unwrap(obj), "__code__", None)
    if code is not None:
        return f"{path}:{code.co_firstlineno}"
    # A class. inspect.getsourcelines would parse the whole module for it (20 ms of every
    # worker's start-up for ActiveJob's wrapper, issue 17); find its line by name, then step
    # back over its decorators.
    lines = linecache.getlines(path)
    header = re.compile(rf"\s*class\s+{re.escape(obj.__name__)}\b")
    for index, text in enumerate(lines):
        if header.match(text):
            while index > 0 and lines[index - 1].lstrip().startswith("@"):
                index -= 1
            return f"{path}:{index + 1}"
    return path


def job(name: str, queue: Optional[str] = None, *, timeout: Optional[float] = None,
        **options: Any) -> Callable[[T], T]:
    """Register a function or a class with ``perform`` under the Ruby class ``name``.

    ``queue`` is where :meth:`Resque.enqueue` puts it (Ruby's ``@queue``). Registering a name
    twice is an error naming both places, because a worker could not know which one to run.
    Other keyword options are kept in ``JobSpec.options`` for the Ruby plugins' equivalents,
    checked when first used: resque-retry's (:mod:`resque_compat.retry`), resque-loner's
    ``unique*`` (:mod:`resque_compat.loner`), resque-lock-timeout's ``lock_*``
    (:mod:`resque_compat.lock`).
    """
    if not isinstance(name, str) or not _RUBY_CONSTANT.match(name):
        raise RegistryError(
            f"@job name {name!r} is not a Ruby class name; use the constant Rails enqueues, "
            "e.g. @job(\"Callbacks::Deliver\")"
        )

    def register(target: T) -> T:
        if inspect.isclass(target):
            perform = getattr(target, "perform", None)
            # A plain method would receive the first job argument as ``self``.
            if not callable(perform) or inspect.isfunction(inspect.getattr_static(target, "perform", None)):
                raise RegistryError(
                    f"class {target.__qualname__} registered as {name!r} needs a perform "
                    "staticmethod or classmethod, as a Ruby job class has self.perform"
                )
        elif callable(target):
            perform = target
        else:
            raise RegistryError(f"@job({name!r}) must decorate a function or a class, not {target!r}")
        if options.get("status"):
            perform = _options_only(perform)
        spec = JobSpec(name=name, queue=queue, target=target, perform=perform, origin=_origin(target),
                       timeout=timeout, options=dict(options))
        existing = _registry.get(name) or _registry.get(_other_spelling(name))
        if existing is not None and existing.target is not target and existing.origin == spec.origin:
            module = getattr(target, "__module__", "?")
            raise RegistryError(
                f"job {name!r} at {spec.origin} was loaded twice, as modules "
                f"{getattr(existing.target, '__module__', '?')!r} and {module!r}: the same file was "
                "imported under two names (e.g. -r app/jobs.py and -r app.jobs); load it one way"
            )
        if existing is not None and existing.target is not target:
            raise RegistryError(
                f"job {name!r} is registered twice: at {existing.origin} and at {spec.origin}; "
                "remove or rename one of them"
            )
        _registry[name] = spec
        return target

    return register


def _options_only(perform: Callable[..., Any]) -> Callable[..., Any]:
    """``status=True`` (resque-status, see :mod:`resque_compat.status`): the queue item's args
    are ``[uuid, options]``, and the job is called with the options hash only, as a Ruby status
    job's ``perform`` reads ``options``. Hooks still receive both args, as Ruby's do."""
    def perform_with_options(uuid: Any = None, options: Any = None) -> Any:
        return perform({} if options is None else options)
    return perform_with_options


def _other_spelling(name: str) -> str:
    """``::Foo`` and ``Foo`` name the same Ruby constant."""
    return name[2:] if name.startswith("::") else "::" + name


def lookup(name: str) -> JobSpec:
    """The job registered under ``name`` (with or without a leading ``::``)."""
    key = name[2:] if name.startswith("::") else name
    spec = _registry.get(name) or _registry.get(_other_spelling(name))
    if spec is None:
        raise JobNotRegistered(
            f"no Python job is registered as {name!r}: add @job({key!r}) to a function or class "
            "in a module the worker loads with -r/REQUIRE, or stop this worker listening to that queue"
        )
    return spec


def spec_for(target: Any) -> JobSpec:
    """The registration of a decorated function/class, or of a registered name."""
    if isinstance(target, str):
        return lookup(target)
    for spec in _registry.values():
        if spec.target is target:
            return spec
    raise JobNotRegistered(f"{target!r} is not registered; decorate it with @job(\"Ruby::ClassName\")")


def registered() -> List[JobSpec]:
    """Every registered job, sorted by name."""
    return [_registry[name] for name in sorted(_registry)]


def unregister(name: str) -> None:
    """Forget a registration (for tests and reloading)."""
    _registry.pop(name, None)
