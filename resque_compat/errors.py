"""Exceptions resque_compat raises; each message says what happened and what to do next.

``ruby_name`` is the ``exception`` field written in a failure entry when the name must be the one
Ruby uses (WIRE §4.4), so resque-web and Ruby tooling recognise it.
"""
from __future__ import annotations


class ResqueError(Exception):
    """Base class for every error resque_compat raises on purpose."""

    ruby_name = ""


class ConfigurationError(ResqueError):
    """A setting is missing or invalid; the message names the setting and a valid example."""


class EncodeError(ResqueError, ValueError):
    """A value cannot be written as JSON that a Ruby worker would read back unchanged."""


class NoQueueError(ResqueError):
    """Ruby's Resque::NoQueueError: no queue could be inferred for the job."""

    ruby_name = "Resque::NoQueueError"


class NoClassError(ResqueError):
    """Ruby's Resque::NoClassError: the job has an empty class name."""

    ruby_name = "Resque::NoClassError"


class RegistryError(ResqueError):
    """A job name was registered twice, or registered with an invalid name."""


class JobNotRegistered(ResqueError):
    """A payload names a class no ``@job`` registered in this process (Ruby's NameError)."""


class PayloadError(ResqueError):
    """A queue item is not a job we can run: invalid JSON, not an object, bad class or args."""


class DontPerform(ResqueError):
    """Raise in a before_perform hook to skip the job quietly (Resque::Job::DontPerform)."""

    ruby_name = "Resque::Job::DontPerform"


class DirtyExit(ResqueError):
    """The job's worker went away while it ran (Resque::DirtyExit)."""

    ruby_name = "Resque::DirtyExit"


class PruneDeadWorkerDirtyExit(DirtyExit):
    """A worker was pruned because its heartbeat expired (Resque::PruneDeadWorkerDirtyExit)."""

    ruby_name = "Resque::PruneDeadWorkerDirtyExit"


class JobKilled(DirtyExit):
    """USR1 stopped the job. Ruby's worker SIGKILLs the forked child running it and records
    ``Resque::DirtyExit "Child process received unhandled signal pid <pid> SIGKILL (signal 9)"``
    (WIRE §4.5, §6.1); we record the same (the pid is ours: there is no child)."""

    def __init__(self, pid: int) -> None:
        super().__init__(f"Child process received unhandled signal pid {pid} SIGKILL (signal 9)")


class TermException(ResqueError):
    """The job was stopped by a signal after its grace period (Resque::TermException)."""

    ruby_name = "Resque::TermException"


class RedisUnavailable(ResqueError):
    """Redis did not answer at the configured URL."""


class JobTimeout(ResqueError):
    """The job ran past its time limit (``@job(timeout=...)`` or JOB_TIMEOUT) and was stopped."""


class LateDontPerform(ResqueError):
    """``DontPerform`` raised by the job or an around/after hook: a failure, as in Ruby, where only
    before_perform hooks may skip a job. Not a DontPerform subclass, so the worker records it."""

    ruby_name = "Resque::Job::DontPerform"
