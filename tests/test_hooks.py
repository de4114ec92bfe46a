"""Resque hooks (WIRE §6.5): job hook order and outcomes in-process, enqueue/dequeue vetoes on the
real Redis, and job + worker hooks fired by a real ``resque-py work`` process (incl. USR2/CONT)."""
from __future__ import annotations

import contextlib
import json
import signal
import time

import pytest

from resque_compat import hooks, registry
from resque_compat.errors import DontPerform, RegistryError
from resque_compat.hooks import FailureHookError
from resque_compat.registry import job
from resque_compat.wire import records
from tests.conftest import ROOT, wait_for

HOOK_JOBS = f"{ROOT}/tests/hook_jobs.py"


@pytest.fixture
def events():
    return []


@pytest.fixture
def register(unique):
    """Register a job under a unique name; forget it, its hooks and any plugin afterwards."""
    names, plugins = [], []

    def make(target, queue=None):
        name = f"HookTest{unique}N{len(names)}"
        job(name, queue=queue)(target)
        names.append(name)
        return registry.lookup(name)

    make.plugins = plugins
    yield make
    for name in names:
        hooks.detach_all(name)
        registry.unregister(name)
    for plugin in plugins:
        hooks.remove_plugin(plugin)


def add_plugin(register, plugin):
    register.plugins.append(plugin)
    return hooks.add_plugin(plugin)


class Recorder:
    """A plugin recording every hook kind it is given."""

    def __init__(self, events, applies=True):
        self.events, self.applies = events, applies

    def applies_to(self, spec):
        return self.applies

    def before_perform(self, spec, args):
        self.events.append(f"plugin before {args}")

    def around_perform(self, spec, args):
        self.events.append("plugin around enter")
        yield
        self.events.append("plugin around exit")

    def after_perform(self, spec, args):
        self.events.append(f"plugin after {args}")

    def on_failure(self, spec, exc, args):
        self.events.append(f"plugin on_failure {type(exc).__name__} {args}")


# -- hooks are resolved once per job (issue 17) ---------------------------------------------------

class _CountingDir(type):
    """Counts dir(cls): resolving a class's hooks reads it; running the job must not."""

    reads = 0

    def __dir__(cls):
        type(cls).reads += 1
        return super().__dir__()


def test_a_class_jobs_hooks_are_read_once_not_per_job(register, events):
    class Job(metaclass=_CountingDir):
        @staticmethod
        def before_perform_log(n): events.append(f"before {n}")

        @staticmethod
        def perform(n): events.append(f"perform {n}")

    spec = register(Job)
    _CountingDir.reads = 0
    for n in range(5):
        hooks.perform(spec, [n])
    hooks.run_before_enqueue(spec.name, [9])
    assert _CountingDir.reads == 1
    assert events == [e for n in range(5) for e in (f"before {n}", f"perform {n}")]


def test_hooks_attached_or_plugins_added_after_a_job_ran_apply_to_its_next_run(register, events):
    def deliver(n): events.append(f"perform {n}")

    spec = register(deliver)
    hooks.perform(spec, [1])
    hooks.before_perform(deliver)(lambda n: events.append(f"attached {n}"))
    hooks.perform(spec, [2])
    plugin = add_plugin(register, Recorder(events))
    hooks.perform(spec, [3])
    hooks.remove_plugin(plugin)
    hooks.detach_all(deliver)
    hooks.perform(spec, [4])
    assert events == ["perform 1", "attached 2", "perform 2",
                      "attached 3", "plugin before (3,)", "plugin around enter", "perform 3",
                      "plugin around exit", "plugin after (3,)", "perform 4"]


def test_a_name_registered_again_gets_the_new_jobs_hooks(register, events):
    class First:
        @staticmethod
        def before_perform(n): events.append("first's hook")

        @staticmethod
        def perform(n): events.append("first")

    spec = register(First)
    hooks.perform(spec, [1])
    registry.unregister(spec.name)

    class Second:
        @staticmethod
        def perform(n): events.append("second")

    job(spec.name)(Second)
    hooks.perform(registry.lookup(spec.name), [2])
    assert events == ["first's hook", "first", "second"]


# -- job hooks, in process -----------------------------------------------------------------------

def test_every_perform_hook_runs_in_resques_order(register, events):
    class Job:
        # Defined out of order on purpose: Ruby sorts hook names alphabetically.
        @staticmethod
        def before_perform_z(n): events.append("before_perform_z")
        @staticmethod
        def before_perform(n): events.append(f"before_perform {n}")
        @staticmethod
        def before_perform_a(n): events.append("before_perform_a")

        @staticmethod
        def around_perform_inner(n):
            events.append("inner enter")
            result = yield
            events.append(f"inner exit with {result}")

        @staticmethod
        def around_perform(n):
            events.append("outer enter")
            yield
            events.append("outer exit")

        @staticmethod
        def after_perform_x(n): events.append("after_perform_x")
        @staticmethod
        def after_perform(n): events.append("after_perform")

        @staticmethod
        def perform(n):
            events.append(f"perform {n}")
            return n * 10

    spec = register(Job)
    hooks.before_perform(spec.name)(lambda n: events.append("decorated before"))
    hooks.around_perform(Job)(contextlib.contextmanager(lambda n: (yield events.append("decorated around"))))
    hooks.after_perform(spec.name)(lambda n: events.append("decorated after"))
    add_plugin(register, Recorder(events))

    assert hooks.perform(spec, [4]) == 40
    assert events == [
        "before_perform 4", "before_perform_a", "before_perform_z", "decorated before", "plugin before (4,)",
        "outer enter", "inner enter", "decorated around", "plugin around enter",
        "perform 4",
        "plugin around exit", "inner exit with 40", "outer exit",
        "after_perform", "after_perform_x", "decorated after", "plugin after (4,)",
    ]


def test_an_around_hook_that_does_not_yield_skips_the_job_but_not_after_perform(register, events):
    def deliver(n):
        events.append("performed")

    spec = register(deliver)

    @hooks.around_perform(deliver)
    def gate(n):
        events.append("gate closed")
        if n > 0:
            yield

    hooks.after_perform(deliver)(lambda n: events.append("after"))
    assert hooks.perform(spec, [0]) is None
    assert events == ["gate closed", "after"]  # as Ruby: after_perform runs even so


def test_around_hooks_see_the_jobs_exception_and_on_failure_runs_once(register, events):
    def deliver(n):
        raise ValueError(f"bad {n}")

    spec = register(deliver)

    @hooks.around_perform(deliver)
    def watch(n):
        try:
            yield
        except ValueError as exc:
            events.append(f"around saw {exc}")
            raise

    hooks.on_failure(deliver)(lambda exc, n: events.append(f"on_failure {exc} {n}"))
    hooks.after_perform(deliver)(lambda n: events.append("after"))
    add_plugin(register, Recorder(events))
    with pytest.raises(ValueError, match="bad 3"):
        hooks.perform(spec, [3])
    assert events == ["plugin before (3,)", "plugin around enter", "around saw bad 3",
                      "on_failure bad 3 3", "plugin on_failure ValueError (3,)"]


def test_an_around_hook_may_swallow_the_error_like_a_ruby_rescue(register, events):
    def deliver():
        raise ValueError("handled")

    spec = register(deliver)

    @hooks.around_perform(deliver)
    @contextlib.contextmanager
    def rescue():
        with contextlib.suppress(ValueError):
            yield

    hooks.on_failure(deliver)(lambda exc: events.append("on_failure"))
    assert hooks.perform(spec, []) is None and events == []


def test_dont_perform_skips_quietly_without_failure_hooks(register, events):
    spec = register(lambda: events.append("performed"))

    def refuse():
        events.append("refuse")
        raise DontPerform("not today")

    hooks.before_perform(spec.name)(refuse)
    hooks.before_perform(spec.name)(lambda: events.append("second before"))
    hooks.on_failure(spec.name)(lambda exc: events.append("on_failure"))
    hooks.after_perform(spec.name)(lambda: events.append("after"))
    with pytest.raises(DontPerform):
        hooks.perform(spec, [])
    assert events == ["refuse"]


@pytest.mark.parametrize("with_hooks", [False, True])
def test_dont_perform_from_the_job_itself_is_a_failure_as_in_ruby(register, events, with_hooks):
    def body():
        events.append("performed")
        raise DontPerform("too late")

    spec = register(body)
    if with_hooks:
        hooks.on_failure(spec.name)(lambda exc: events.append(records.exception_name(exc)))
    with pytest.raises(Exception) as caught:
        hooks.perform(spec, [])
    assert not isinstance(caught.value, DontPerform)  # the worker must record it, not skip it
    assert records.exception_name(caught.value) == "Resque::Job::DontPerform"
    assert events == ["performed"] + (["Resque::Job::DontPerform"] if with_hooks else [])


def test_an_error_after_perform_is_a_failure_too(register, events):
    spec = register(lambda: events.append("performed"))
    hooks.after_perform(spec.name)(lambda: 1 / 0)
    hooks.on_failure(spec.name)(lambda exc: events.append(type(exc).__name__))
    with pytest.raises(ZeroDivisionError):
        hooks.perform(spec, [])
    assert events == ["performed", "ZeroDivisionError"]


def test_a_failing_on_failure_hook_is_wrapped_and_names_the_original_error(register, events):
    def deliver(n):
        raise KeyError("original")

    spec = register(deliver)
    hooks.on_failure(deliver)(lambda exc, n: [][1])
    hooks.on_failure(deliver)(lambda exc, n: events.append("never: Ruby stops at the first error"))
    with pytest.raises(FailureHookError) as info:
        hooks.perform(spec, [1])
    message = str(info.value)
    assert "IndexError: list index out of range" in message and "KeyError: 'original'" in message
    assert isinstance(info.value.__cause__, KeyError)
    assert records.exception_name(info.value) == "RuntimeError" and events == []


def test_keyword_arguments_reach_every_hook(register, events):
    spec = register(lambda n, *, k: events.append(f"perform {n} {k}"))
    hooks.before_perform(spec.name)(lambda n, *, k: events.append(f"before {n} {k}"))
    hooks.perform(spec, [1], {"k": 2})
    assert events == ["before 1 2", "perform 1 2"]


def test_a_plugin_only_runs_where_it_applies(register, events):
    spec = register(lambda: events.append("performed"))
    add_plugin(register, Recorder(events, applies=False))
    hooks.perform(spec, [])
    assert events == ["performed"]


def test_misuse_is_reported_clearly(register):
    spec = register(lambda: None)
    with pytest.raises(RegistryError, match="unknown job hook 'before_perfrom'"):
        hooks.attach("before_perfrom", spec.name, lambda: None)
    with pytest.raises(RegistryError, match="unknown worker hook"):
        hooks.worker_hook("before_fork")
    hooks.around_perform(spec.name)(lambda: (yield (yield)))
    with pytest.raises(RuntimeError, match="yielded more than once"):
        hooks.perform(spec, [])


# -- enqueue / dequeue vetoes on the real Redis ----------------------------------------------------

def test_before_enqueue_false_vetoes_after_every_before_hook_ran(r, resque, register, events):
    class Mailer:
        @staticmethod
        def before_enqueue(n):
            events.append("before_enqueue")
            return n != 1 and None  # None (not False) must not veto

        @staticmethod
        def before_enqueue_z(n):
            events.append("before_enqueue_z")

        @staticmethod
        def after_enqueue(n):
            events.append(f"after_enqueue sees {r.llen('resque:queue:mail')} queued")

        @staticmethod
        def perform(n):
            pass

    register(Mailer, queue="mail")
    assert resque.enqueue(Mailer, 1) is None
    assert events == ["before_enqueue", "before_enqueue_z"]
    assert r.keys("*") == []  # not even the queues set
    events.clear()
    assert resque.enqueue(Mailer, 2) is True
    assert events == ["before_enqueue", "before_enqueue_z", "after_enqueue sees 1 queued"]


def test_a_plugin_can_veto_an_enqueue(r, resque, register, events):
    spec = register(lambda n: None)

    class Unique:
        def applies_to(self, spec_):
            return spec_.name == spec.name

        def before_enqueue(self, spec_, args):
            return args != (1,) and None

        def after_enqueue(self, spec_, args):
            events.append(f"plugin after_enqueue {args}")

    add_plugin(register, Unique())
    assert resque.enqueue_to("q", spec.name, 1) is None
    assert resque.enqueue_to("q", spec.name, 2) is True
    assert resque.enqueue_to("q", "NotRegisteredHere", 1) is True  # no hooks for foreign classes
    assert r.lrange("resque:queue:q", 0, -1) == [f'{{"class":"{spec.name}","args":[2]}}',
                                                  '{"class":"NotRegisteredHere","args":[1]}']
    assert events == ["plugin after_enqueue (2,)"]


def test_before_dequeue_false_vetoes_and_after_dequeue_follows_the_removal(r, resque, register, events):
    def deliver(n):
        pass

    register(deliver, queue="q")
    hooks.before_dequeue(deliver)(lambda n: n != 1)
    hooks.after_dequeue(deliver)(lambda n: events.append(f"after_dequeue {n}: {r.llen('resque:queue:q')} left"))
    resque.enqueue(deliver, 1)
    resque.enqueue(deliver, 2)
    assert resque.dequeue(deliver, 1) is None
    assert resque.dequeue(deliver, 2) == 1
    assert events == ["after_dequeue 2: 1 left"]
    assert r.llen("resque:queue:q") == 1


# -- a real worker -------------------------------------------------------------------------------

def push(r, *payloads):
    for payload in payloads:
        r.sadd("resque:queues", "hooks")
        r.rpush("resque:queue:hooks", payload)


def hooked(n):
    return json.dumps({"class": "Hooked::Job", "args": [n]})


def job_events(r):
    return [e for e in r.lrange("test:events", 0, -1) if e.split(" ")[0] not in hooks.WORKER_HOOKS]


@pytest.fixture
def hook_jobs_in_process():
    """tests/hook_jobs.py imported here, its worker hooks removed after the test."""
    from tests import hook_jobs

    yield "tests.hook_jobs"
    for name, fn in hook_jobs.WORKER_EVENTS.items():
        hooks.remove_worker_hook(name, fn)


def test_job_hooks_dont_perform_and_failures_in_a_real_worker(r, run_worker, hook_jobs_in_process):
    push(r, hooked(1), hooked(0), '{"class":"Hooked::Skip","args":["closed"]}',
         '{"class":"Hooked::BadFailureHook","args":[]}')
    w = run_worker("QUEUE=hooks", "INTERVAL=0", jobs=(hook_jobs_in_process,))
    assert w.code == 0, w.output
    assert job_events(r) == [
        "before_perform 1", "before_perform_b 1", "around enter 1", "perform 1", "around exit 1", "after_perform 1",
        "before_perform 0", "before_perform_b 0", "around enter 0", "perform 0", "around exit 0",
        "on_failure 0 ValueError: zero",
        "refuse closed",
    ]
    failed = [json.loads(e) for e in r.lrange("resque:failed", 0, -1)]
    assert [(f["exception"], f["payload"]["class"]) for f in failed] == [
        ("ValueError", "Hooked::Job"), ("RuntimeError", "Hooked::BadFailureHook")]
    assert "ValueError: the hook broke" in failed[1]["error"] and "KeyError: 'original'" in failed[1]["error"]
    # DontPerform is no failure but still counts as processed, as in Ruby.
    assert r.get("resque:stat:processed") == "4" and r.get("resque:stat:failed") == "2"


def proctitle(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as fh:
        return fh.read().replace(b"\0", b" ").decode().strip()


def test_worker_hooks_fire_at_start_idle_pause_resume_and_shutdown(r, start_worker):
    w = start_worker("QUEUE=hooks", "FIBERS=2", "INTERVAL=0.1", require=HOOK_JOBS)
    w.wait_registered(r, count=2)
    all_events = lambda: r.lrange("test:events", 0, -1)  # noqa: E731
    assert all_events() == ["on_start registered=False slots=2"]

    push(r, hooked(3), hooked(2))  # run side by side: 0.3 s and 0.2 s
    wait_for(lambda: any(e.startswith("queue_empty") for e in all_events()), what="queue_empty")
    seen = all_events()
    assert [e for e in seen if e.startswith(("around exit", "queue_empty"))] == [
        "around exit 2", "around exit 3", "queue_empty registered=True slots=2"]  # idle only after both

    w.signal(signal.SIGUSR2)
    wait_for(lambda: proctitle(w.pid) == "resque-3.0.0: Paused", what="the Paused title")
    assert all_events()[-1] == "before_pause registered=True slots=2"
    push(r, hooked(1))
    time.sleep(0.3)  # an absence cannot be awaited: 15 idle polls' worth, and the job must still wait
    assert r.llen("resque:queue:hooks") == 1
    w.signal(signal.SIGCONT)
    wait_for(lambda: "after_perform 1" in all_events(), what="the job after CONT")
    assert "after_pause registered=True slots=2" in all_events()

    wait_for(lambda: all_events().count("queue_empty registered=True slots=2") == 2, what="second queue_empty")
    w.signal(signal.SIGQUIT)
    assert w.wait() == 0, w.output
    assert all_events()[-1] == "on_shutdown registered=True slots=2"
    assert [e.split(" ")[0] for e in all_events() if e.split(" ")[0] in hooks.WORKER_HOOKS] == [
        "on_start", "queue_empty", "before_pause", "after_pause", "queue_empty", "on_shutdown"]
