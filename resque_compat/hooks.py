"""Resque's hooks with Resque's meaning and order (WIRE §6.5), attached the Python way.

Job hooks
=========
Kinds: ``before_perform``, ``around_perform``, ``after_perform``, ``on_failure``,
``before_enqueue``, ``after_enqueue``, ``before_dequeue``, ``after_dequeue``.

A job's hooks of one kind run in this order:

1. **Class methods** of a class registered with ``@job`` whose name *starts with* the kind,
   in alphabetical order (Ruby's rule, so ``before_perform`` runs before
   ``before_perform_audit``). Inherited ones count, so a mixin class is a Ruby plugin module.
   They must be static or class methods, as Ruby's are ``self.`` methods.
2. **Decorated functions**, in the order they were attached; this is how function jobs get
   hooks (``@job`` returns the function itself, so it cannot grow attributes)::

       @hooks.before_perform("Callbacks::Deliver")      # a Ruby name, or the @job function
       def check_callback(callback_id): ...

3. **Plugins** (below), in the order they were added: a plugin's hook runs after the job's own
   hook of the same kind, as Ruby's suffixed plugin hooks sort after the bare name.

A job's hooks are resolved once, the first time it runs or is enqueued, and kept: a class's
hook methods are read when it is first used, and attaching a hook or adding or removing a
plugin makes every job resolve again. A plugin's ``applies_to(spec)`` is asked once per job
(and once more for the same job run inside an ActiveJob payload), so it must depend only on the
spec and on ``activejob.current()`` being set, not on the arguments or the time.

Job hooks receive the job's arguments as the job does: ``hook(*args, **kwargs)`` (keyword
arguments only exist for ActiveJob payloads); ``on_failure`` hooks receive
``hook(exception, *args, **kwargs)``.

``perform`` (called by the worker) does what Ruby's ``Resque::Job#perform`` does:

* ``before_perform`` hooks; raising :class:`~resque_compat.errors.DontPerform` skips the job
  quietly (no failure, no ``on_failure``, still counted as processed).
* ``around_perform`` hooks, nested: the first is outermost, the innermost runs the job. A hook
  is either a generator function that yields once (the job runs at the ``yield``, which evaluates
  to the job's result; the job's exception is raised at the ``yield``, so ``try``/``finally``
  works) or a function returning a context manager. A generator hook that returns without
  yielding means the job is not performed (and that is not a failure).
* ``after_perform`` hooks, when nothing raised (even if an around hook skipped the job, as Ruby).
* On any exception: every ``on_failure`` hook, once, then the exception propagates so the worker
  records the failure. If an ``on_failure`` hook raises, the remaining ones are skipped and a
  :class:`FailureHookError` (``RuntimeError`` in the failure entry, as Ruby's) naming both errors
  is raised instead, so the original failure is still recorded.
* A ``DontPerform`` raised by the job itself or an around/after hook is a failure, as in Ruby
  (only ``before_perform`` may skip a job): it is recorded as ``Resque::Job::DontPerform``.

``Resque.enqueue``/``enqueue_to`` and ``dequeue`` run the enqueue/dequeue hooks of jobs
registered in this process (a class name nobody registered here has none). Every ``before_*``
hook runs; if any returned exactly ``False`` (not ``None``, not ``0``), nothing is pushed or
removed and the call returns ``None``. ``after_enqueue``/``after_dequeue`` run after the write.

Plugin API (resque-retry support and other cross-cutting features build on this)
===============================================================================
``hooks.add_plugin(plugin)`` / ``hooks.remove_plugin(plugin)``. ``plugin`` is any object; each
method below is optional, and ``spec`` is the job's :class:`~resque_compat.registry.JobSpec`,
``args`` the job's positional arguments as a tuple:

=========================================  ====================================================
``applies_to(spec) -> bool``               whether the plugin's hooks run for this job
                                           (absent: every job)
``before_perform(spec, args)``             may raise ``DontPerform``
``around_perform(spec, args)``             generator or context manager, as job hooks above
``after_perform(spec, args)``
``on_failure(spec, exc, args)``            after the job's own on_failure hooks
``before_enqueue(spec, args) -> bool|None``  ``False`` vetoes the enqueue
``after_enqueue(spec, args)``
``before_dequeue(spec, args) -> bool|None``  ``False`` vetoes the dequeue
``after_dequeue(spec, args)``
=========================================  ====================================================

For an ActiveJob payload, hooks run twice: once for the ``JobWrapper`` spec with
``args == (job_data,)`` as Ruby sees it, then for the target job's spec with the deserialised
arguments (its keyword arguments are in ``activejob.current()``). A plugin that must act on
exactly one of the two checks ``spec.name`` in ``applies_to``.

Worker hooks
============
``@hooks.worker_hook(name)`` registers ``fn(runner)`` (``runner.ids``, ``.hostname``, ``.pid``,
``.settings``) for the process:

================  ============================================  ===============================
name              when                                          Ruby
================  ============================================  ===============================
``on_start``      once, after pruning, before registering       ``before_first_fork``
``on_shutdown``   QUIT/TERM/INT or MAX_JOBS/MAX_MEMORY, once    ``shutdown``
``queue_empty``   a poll finds the queues empty after jobs      ``queue_empty``
``before_pause``  USR2, before pausing                          ``before_pause``
``after_pause``   CONT, after resuming                          ``after_pause``
================  ============================================  ===============================

An exception in ``on_start`` stops the worker before it registers (as in Ruby); in the others
it is logged and the worker carries on. Worker hooks run in the worker's greenlets, so keep
them short.
"""
from __future__ import annotations

import inspect
import logging
import sys
from collections import defaultdict
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, TypeVar

from resque_compat.errors import (
    DontPerform,
    JobNotRegistered,
    LateDontPerform,
    RegistryError,
)
from resque_compat.registry import JobSpec, lookup, spec_for

log = logging.getLogger("resque_compat.hooks")

JOB_HOOKS = ("before_perform", "around_perform", "after_perform", "on_failure",
             "before_enqueue", "after_enqueue", "before_dequeue", "after_dequeue")
WORKER_HOOKS = ("on_start", "on_shutdown", "queue_empty", "before_pause", "after_pause")

F = TypeVar("F", bound=Callable[..., Any])

_attached: Dict[str, Dict[str, List[Callable[..., Any]]]] = defaultdict(lambda: defaultdict(list))
_worker_hooks: Dict[str, List[Callable[..., Any]]] = defaultdict(list)
_plugins: List[Any] = []
#: Resolved hooks per (job name, inside an ActiveJob payload?): the spec they were resolved for
#: (a re-registered name is resolved again) and its hooks by kind. Cleared when hooks change.
#: W1 with a class job spent a quarter of its time on ``sorted(dir(cls))`` per hook kind per
#: job before this (issue 17).
_resolved: Dict[Tuple[str, bool], Tuple[JobSpec, Dict[str, List[Callable[..., Any]]]]] = {}


class FailureHookError(RuntimeError):
    """An ``on_failure`` hook raised; the message names it and the job's original error."""

    ruby_name = "RuntimeError"


# -- registration ------------------------------------------------------------------------------

def _job_name(job: Any) -> str:
    name = job if isinstance(job, str) else spec_for(job).name
    return name[2:] if name.startswith("::") else name


def attach(kind: str, job: Any, fn: F) -> F:
    """Attach ``fn`` as a ``kind`` hook of ``job`` (a Ruby class name or an ``@job`` target)."""
    if kind not in JOB_HOOKS:
        raise RegistryError(f"unknown job hook {kind!r}; use one of {', '.join(JOB_HOOKS)}")
    _attached[_job_name(job)][kind].append(fn)
    _resolved.clear()
    return fn


def _decorator(kind: str) -> Callable[[Any], Callable[[F], F]]:
    def for_job(job: Any) -> Callable[[F], F]:
        return lambda fn: attach(kind, job, fn)

    for_job.__name__ = kind
    for_job.__doc__ = f"``@hooks.{kind}(\"Ruby::Name\")``: attach the function as a {kind} hook."
    return for_job


before_perform = _decorator("before_perform")
around_perform = _decorator("around_perform")
after_perform = _decorator("after_perform")
on_failure = _decorator("on_failure")
before_enqueue = _decorator("before_enqueue")
after_enqueue = _decorator("after_enqueue")
before_dequeue = _decorator("before_dequeue")
after_dequeue = _decorator("after_dequeue")


def worker_hook(name: str) -> Callable[[F], F]:
    """``@hooks.worker_hook("queue_empty")``: run ``fn(runner)`` at that point of the process."""
    if name not in WORKER_HOOKS:
        raise RegistryError(f"unknown worker hook {name!r}; use one of {', '.join(WORKER_HOOKS)}")

    def register(fn: F) -> F:
        _worker_hooks[name].append(fn)
        return fn

    return register


def add_plugin(plugin: Any) -> Any:
    """Run ``plugin``'s hooks (see the module docstring) for every job it applies to."""
    if plugin not in _plugins:
        _plugins.append(plugin)
        _resolved.clear()
    return plugin


def remove_plugin(plugin: Any) -> None:
    if plugin in _plugins:
        _plugins.remove(plugin)
        _resolved.clear()


def detach_all(job: Any) -> None:
    """Forget the decorated hooks of ``job`` (for tests and reloading)."""
    _attached.pop(_job_name(job), None)
    _resolved.clear()


def remove_worker_hook(name: str, fn: Callable[..., Any]) -> None:
    if fn in _worker_hooks.get(name, ()):
        _worker_hooks[name].remove(fn)


# -- which hooks a job has ---------------------------------------------------------------------

def hooks_for(spec: JobSpec, kind: str) -> List[Callable[..., Any]]:
    """The ``kind`` hooks of ``spec``, in run order, each callable like a job hook."""
    return _hooks_of(spec)[kind]


def _hooks_of(spec: JobSpec) -> Dict[str, List[Callable[..., Any]]]:
    """Every kind's hooks of ``spec``, resolved once (module docstring) and then looked up."""
    key = (spec.name, _in_active_job())
    cached = _resolved.get(key)
    if cached is not None and cached[0] is spec:
        return cached[1]
    found = _resolve(spec)
    _resolved[key] = (spec, found)
    return found


def _in_active_job() -> bool:
    # Looked up, not imported: activejob imports this module. lock and retry step aside inside
    # an ActiveJob payload, so a job's plugin hooks differ there.
    activejob = sys.modules.get("resque_compat.activejob")
    return activejob is not None and activejob.current() is not None


def _resolve(spec: JobSpec) -> Dict[str, List[Callable[..., Any]]]:
    found: Dict[str, List[Callable[..., Any]]] = {kind: [] for kind in JOB_HOOKS}
    if inspect.isclass(spec.target):
        for name in sorted(dir(spec.target)):
            method = getattr(spec.target, name, None)
            if not callable(method):
                continue
            for kind in JOB_HOOKS:
                if name.startswith(kind):
                    found[kind].append(method)
    attached = _attached.get(_job_name(spec.name), {})
    for kind in JOB_HOOKS:
        found[kind] += attached.get(kind, [])
    for plugin in _plugins:
        if not _applies(plugin, spec):
            continue
        for kind in JOB_HOOKS:
            method = getattr(plugin, kind, None)
            if method is not None:
                found[kind].append(_plugin_hook(method, spec, kind))
    return found


def _applies(plugin: Any, spec: JobSpec) -> bool:
    applies_to = getattr(plugin, "applies_to", None)
    return applies_to is None or bool(applies_to(spec))


def _plugin_hook(method: Callable[..., Any], spec: JobSpec, kind: str) -> Callable[..., Any]:
    if kind == "on_failure":
        return lambda exc, *args, **kwargs: method(spec, exc, args)
    return lambda *args, **kwargs: method(spec, args)


# -- perform -----------------------------------------------------------------------------------

def perform(spec: JobSpec, args: Sequence[Any], kwargs: Optional[Mapping[str, Any]] = None) -> Any:
    """Run one job with its hooks in Resque's order (module docstring). Returns the job's result,
    or None when an around hook did not let it run."""
    kwargs = dict(kwargs or {})
    args = tuple(args)
    found = _hooks_of(spec)
    befores = found["before_perform"]
    arounds = found["around_perform"]
    afters = found["after_perform"]
    failures = found["on_failure"]
    if not (befores or arounds or afters or failures):
        try:
            return spec.perform(*args, **kwargs)
        except DontPerform as exc:
            raise LateDontPerform(str(exc) or "DontPerform raised outside before_perform") from exc
    try:
        for hook in befores:
            hook(*args, **kwargs)
    except DontPerform:
        raise
    except Exception as exc:
        _run_failure_hooks(spec, failures, exc, args, kwargs)
        raise
    try:
        call: Callable[[], Any] = lambda: spec.perform(*args, **kwargs)  # noqa: E731
        for hook in reversed(arounds):
            call = _nest(hook, call, args, kwargs)
        result = call()
        for hook in afters:
            hook(*args, **kwargs)
        return result
    except Exception as exc:
        if isinstance(exc, DontPerform):  # too late to skip: a failure, as Ruby records it
            late = LateDontPerform(str(exc) or "DontPerform raised outside before_perform")
            _run_failure_hooks(spec, failures, late, args, kwargs)
            raise late from exc
        _run_failure_hooks(spec, failures, exc, args, kwargs)
        raise


def _nest(hook: Callable[..., Any], inner: Callable[[], Any], args: tuple,
          kwargs: Dict[str, Any]) -> Callable[[], Any]:
    return lambda: _run_around(hook, inner, args, kwargs)


def _run_around(hook: Callable[..., Any], inner: Callable[[], Any], args: tuple,
                kwargs: Dict[str, Any]) -> Any:
    made = hook(*args, **kwargs)
    if inspect.isgenerator(made):
        return _drive(made, inner, hook)
    if hasattr(made, "__enter__") and hasattr(made, "__exit__"):
        with made:
            return inner()
        return None  # the context manager swallowed the job's exception
    return None  # a plain function that returned: it never yielded, so the job is not performed


def _drive(gen: Any, inner: Callable[[], Any], hook: Callable[..., Any]) -> Any:
    try:
        next(gen)
    except StopIteration:
        return None  # returned without yielding: Ruby's around hook that never yields
    try:
        result = inner()
    except BaseException as exc:  # GreenletExit/TermException too: let the hook's finally run
        try:
            gen.throw(exc)
        except StopIteration:
            return None  # the hook caught the job's exception and ended
        raise _yielded_twice(hook) from exc
    try:
        gen.send(result)
    except StopIteration:
        return result
    raise _yielded_twice(hook)


def _yielded_twice(hook: Callable[..., Any]) -> RuntimeError:
    return RuntimeError(f"around_perform hook {getattr(hook, '__qualname__', hook)!r} yielded more "
                        "than once; yield exactly once, where the job should run")


def _run_failure_hooks(spec: JobSpec, failures: Sequence[Callable[..., Any]], exc: Exception,
                       args: tuple, kwargs: Dict[str, Any]) -> None:
    """Ruby's ``run_failure_hooks``: every on_failure hook once; a hook error is wrapped."""
    for hook in failures:
        try:
            hook(exc, *args, **kwargs)
        except Exception as hook_exc:
            raise FailureHookError(
                f"Additional error ({type(hook_exc).__name__}: {hook_exc}) occurred in running "
                f"failure hooks for job {spec.name}\nOriginal error that caused job failure was "
                f"{type(exc).__name__}: {exc}"
            ) from exc


# -- enqueue / dequeue -------------------------------------------------------------------------

def _registered(class_name: str) -> Optional[JobSpec]:
    try:
        return lookup(class_name)
    except JobNotRegistered:
        return None


def _run_before(kind: str, class_name: str, args: Sequence[Any]) -> bool:
    spec = _registered(class_name)
    if spec is None:
        return True
    # Ruby runs every before hook (collect), then vetoes if any returned exactly false.
    results = [hook(*args) for hook in hooks_for(spec, kind)]
    return not any(result is False for result in results)


def _run_after(kind: str, class_name: str, args: Sequence[Any]) -> None:
    spec = _registered(class_name)
    if spec is not None:
        for hook in hooks_for(spec, kind):
            hook(*args)


def run_before_enqueue(class_name: str, args: Sequence[Any]) -> bool:
    """False when a before_enqueue hook vetoed (returned exactly False)."""
    return _run_before("before_enqueue", class_name, args)


def run_after_enqueue(class_name: str, args: Sequence[Any]) -> None:
    _run_after("after_enqueue", class_name, args)


def run_before_dequeue(class_name: str, args: Sequence[Any]) -> bool:
    """False when a before_dequeue hook vetoed (returned exactly False)."""
    return _run_before("before_dequeue", class_name, args)


def run_after_dequeue(class_name: str, args: Sequence[Any]) -> None:
    _run_after("after_dequeue", class_name, args)


# -- worker hooks ------------------------------------------------------------------------------

def run_worker_hook(name: str, runner: Any) -> None:
    """Run the ``name`` worker hooks. ``on_start`` errors propagate; others are logged."""
    for fn in list(_worker_hooks.get(name, ())):
        if name == "on_start":
            fn(runner)
            continue
        try:
            fn(runner)
        except Exception:
            log.exception("%s hook %s raised; the worker carries on", name,
                          getattr(fn, "__qualname__", fn))
