"""registry: ``@job("Ruby::Class", queue=...)`` on functions and classes, Ruby constant names,
and a clear error naming both places when a name is registered twice."""
from __future__ import annotations

import inspect
import os

import pytest

from resque_compat import job as public_job
from resque_compat import registry
from resque_compat.errors import JobNotRegistered, RegistryError
from resque_compat.registry import job

HERE = os.path.abspath(__file__)


@pytest.fixture
def names(unique):
    """Unique Ruby class names for one test; every registration is forgotten afterwards."""
    made = []

    def make(template="Test{u}"):
        name = template.format(u="T" + unique + str(len(made)))
        made.append(name)
        return name

    yield make
    for name in made:
        registry.unregister(name)
        registry.unregister("::" + name.lstrip(":"))
        registry.unregister(name.lstrip(":"))


def test_package_exports_the_decorator():
    assert public_job is job


def test_function_registration_and_lookup(names):
    name = names("Callbacks::Deliver{u}")

    @job(name, queue="critical")
    def deliver(a, b):
        return (a, b)

    spec = registry.lookup(name)
    assert spec.name == name and spec.queue == "critical" and spec.target is deliver
    assert spec.perform(1, "x") == (1, "x")
    assert registry.spec_for(deliver) is spec
    assert registry.spec_for(name) is spec
    assert deliver(2, 3) == (2, 3)  # the decorator returns the function unchanged
    assert spec.origin == f"{HERE}:{inspect.getsourcelines(deliver)[1]}"


def test_class_with_static_or_class_perform(names):
    static_name, class_name = names(), names("Jobs::{u}")

    @job(static_name, queue="low")
    class StaticJob:
        @staticmethod
        def perform(*args):
            return ("static", args)

    @job(class_name)
    class ClassJob:
        prefix = "cls"

        @classmethod
        def perform(cls, x):
            return (cls.prefix, x)

    assert registry.lookup(static_name).perform(1, 2) == ("static", (1, 2))
    assert registry.lookup(static_name).queue == "low"
    assert registry.lookup(class_name).perform(5) == ("cls", 5)
    assert registry.lookup(class_name).queue is None
    assert registry.spec_for(ClassJob).name == class_name


def test_perform_inherited_from_a_base_class_counts(names):
    class Base:
        @staticmethod
        def perform(x):
            return x * 2

    name = names()
    job(name)(type("Child", (Base,), {}))
    assert registry.lookup(name).perform(4) == 8


def test_class_without_a_usable_perform_is_refused(names):
    class NoPerform:
        pass

    class InstancePerform:  # Ruby's perform is a class method; an instance method would get self
        def perform(self, x):
            return x

    for cls in (NoPerform, InstancePerform):
        with pytest.raises(RegistryError, match="perform"):
            job(names())(cls)


def test_non_callable_is_refused(names):
    with pytest.raises(RegistryError, match="function or a class"):
        job(names())(42)


@pytest.mark.parametrize("bad", [
    "my_app.jobs.SendEmail", "lowercase", "Foo::", "::", "Foo::bar", "Foo-Bar", "Foo Bar", "",
    "Foo:Bar", "1Foo", None, 42,
])
def test_name_must_be_a_ruby_constant_path(bad):
    with pytest.raises(RegistryError, match="Ruby class name"):
        job(bad)


@pytest.mark.parametrize("template", ["{u}", "Foo::{u}", "::{u}", "A_1::B2::{u}"])
def test_valid_ruby_constant_paths(names, template):
    name = names(template)

    @job(name)
    def f():
        pass

    assert registry.lookup(name).target is f


def test_leading_double_colon_names_the_same_class(names):
    name = names()

    @job(name)
    def f():
        pass

    assert registry.lookup("::" + name).target is f

    other = names("::{u}")

    @job(other)
    def g():
        pass

    assert registry.lookup(other.lstrip(":")).target is g
    with pytest.raises(RegistryError, match="registered twice"):
        job("::" + name)(lambda: None)


def test_registering_one_name_twice_names_both_places(names):
    name = names("Dup::{u}")

    @job(name)
    def first():
        pass

    def second():
        pass

    with pytest.raises(RegistryError) as info:
        job(name, queue="x")(second)
    message = str(info.value)
    first_at = f"{HERE}:{inspect.getsourcelines(first)[1]}"
    second_at = f"{HERE}:{inspect.getsourcelines(second)[1]}"
    assert first_at in message and second_at in message and name in message
    assert registry.lookup(name).target is first  # the first registration stands


def test_registering_the_same_object_again_is_harmless(names):
    name = names()

    def f():
        pass

    job(name)(f)
    job(name)(f)
    assert registry.lookup(name).target is f


def test_registered_lists_every_job_sorted(names):
    b, a = names("Zz{u}"), names("Aa{u}")
    job(b)(lambda: None)
    job(a)(lambda: None)
    listed = [spec.name for spec in registry.registered()]
    assert a in listed and b in listed
    assert listed == sorted(listed)


def test_unknown_names_say_how_to_register(names):
    name = names()
    with pytest.raises(JobNotRegistered) as info:
        registry.lookup(name)
    assert f"@job({name!r})" in str(info.value)
    with pytest.raises(JobNotRegistered, match="@job"):
        registry.spec_for(lambda: None)


def test_unregister_forgets(names):
    name = names()
    job(name)(lambda: None)
    registry.unregister(name)
    with pytest.raises(JobNotRegistered):
        registry.lookup(name)
    registry.unregister(name)  # twice is fine
