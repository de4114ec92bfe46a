"""resque-status (0.5.0) for Python jobs: the Rails app's progress pages and kill button keep working.

A Rails app creates such a job with ``ExportJob.create(options)``: it writes ``status:<uuid>``
(``queued``) and enqueues ``{"class":"ExportJob","args":["<uuid>",{options}]}``. Register the
Python side with ``status=True``; it is called with the options hash only::

    from resque_compat import job, status

    @job("ExportJob", status=True)
    def export(options):
        rows = options["rows"]
        for i, row in enumerate(rows, 1):
            status.at(i, len(rows), f"At {i} of {len(rows)}")   # also where a kill stops the job
            ...
        status.completed(url="https://...")                      # optional: merged into the status

The worker then writes exactly what the Ruby plugin's ``safe_perform!`` writes
(fixtures/ruby-plugins/status_*): ``working`` with ``name`` when the job starts; ``num``,
``total`` and ``message`` on each :func:`at`; ``completed`` (``Completed at <Time#to_s>``)
after the job returns; ``failed`` (``The task failed because of an error: <message>``, and the
exception still becomes an ordinary failure entry) when it raises; and ``killed`` (``Killed at
...``, no failure entry) when a kill was requested with Ruby's
``Resque::Plugins::Status::Hash.kill(uuid)`` or :func:`kill`. Each update is a GET, then a SET
(+ EXPIRE with :func:`configure` ``expire_in``) of the merged hash, in Ruby's field order.

From Python, :func:`create` enqueues such a job as Ruby's ``create`` does (a Ruby worker can run
it) and :func:`get` reads a status.
"""
from __future__ import annotations

import contextvars
import secrets
import time
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Sequence, Union

from resque_compat import client, hooks, registry
from resque_compat.errors import ResqueError, TermException
from resque_compat.registry import JobSpec
from resque_compat.retry import ruby_inspect
from resque_compat.store.status import StatusStore
from resque_compat.wire import codec

QUEUED, WORKING, COMPLETED, FAILED, KILLED = "queued", "working", "completed", "failed", "killed"
#: The plugin's own default queue (``def self.queue; :statused; end``).
DEFAULT_QUEUE = "statused"

_expire_in: Optional[int] = None


class Killed(ResqueError):
    """Raised by :func:`at`/:func:`tick` when a kill was requested (``Status::Killed``). The
    worker ends the job normally with status ``killed``: do not catch it."""


class NotANumber(ResqueError, ValueError):
    """:func:`at` with a total that is not a positive number (``Status::NotANumber``)."""


def configure(expire_in: Optional[int] = None) -> None:
    """Ruby's ``Resque::Plugins::Status::Hash.expire_in = seconds``: every status write is
    followed by EXPIRE, and create drops ``_statuses`` entries older than that. None = never.
    Give the Ruby apps and the Python workers the same value."""
    global _expire_in
    _expire_in = None if expire_in is None else int(expire_in)


def _store() -> StatusStore:
    resque = client.default()
    return StatusStore(resque.redis, resque.keys)


def _now() -> int:
    return int(time.time())


def merged(uuid: str, *parts: Union[None, str, Mapping[str, Any]], now: Optional[int] = None) -> Dict[str, Any]:
    """``Status::Hash.new(uuid, *parts)``: ``time``/``status``/``uuid`` first, then each part
    merged in order (a string is a ``message``, None is nothing). Python's ``dict.update``
    keeps a key where it first appeared, as Ruby's ``Hash#merge`` does, so an update written
    over the old status keeps Ruby's field order (and the old ``time``)."""
    out: Dict[str, Any] = {"time": _now() if now is None else now, "status": QUEUED, "uuid": uuid}
    for part in parts:
        if isinstance(part, str):
            part = {"message": part}
        if part:
            out.update(part)
    return out


def job_name(class_name: str, options: Any) -> str:
    """The ``name`` field: ``"ExportJob({"k"=>"v"})"`` (Ruby 3.1 ``Hash#inspect``), or
    ``"ExportJob()"`` for empty options."""
    if class_name.startswith("::"):
        class_name = class_name[2:]  # Ruby's Class#name has no leading ::
    shown = ruby_inspect(options) if options not in (None, {}, [], "") else ""
    return f"{class_name}({shown})"


def _time_to_s() -> str:
    return codec.time_to_s(time.time())


# -- inside a job ------------------------------------------------------------------------------

class StatusJob:
    """The running job's side of the plugin (Ruby's job instance): its uuid and options."""

    def __init__(self, uuid: str, options: Any, class_name: str, store: StatusStore) -> None:
        self.uuid = uuid
        self.options = options
        self.name = job_name(class_name, options)
        self.store = store

    def _write(self, old: Optional[bytes], *parts: Union[None, str, Mapping[str, Any]]) -> None:
        """``set_status``: the old status, then ``name``, then ``parts``, merged and SET."""
        previous = _decoded(old)
        value = merged(self.uuid, previous, {"name": self.name}, *parts)
        self.store.set(self.uuid, codec.encode(value), _expire_in)

    def set_status(self, *parts: Union[None, str, Mapping[str, Any]]) -> None:
        self._write(self.store.get(self.uuid), *parts)

    def tick(self, *parts: Union[None, str, Mapping[str, Any]]) -> None:
        kill, old = self.store.should_kill_and_get(self.uuid)
        if kill:
            self._write(old, {"status": KILLED, "message": f"Killed at {_time_to_s()}"})
            raise Killed(f"status {self.uuid} was asked to stop (Resque::Plugins::Status::Hash.kill)")
        self._write(old, {"status": WORKING}, *parts)

    def read(self) -> Optional[Dict[str, Any]]:
        return _decoded(self.store.get(self.uuid))


_current: contextvars.ContextVar[Optional[StatusJob]] = contextvars.ContextVar(
    "resque_compat_status_job", default=None)


def current() -> Optional[StatusJob]:
    """The status job this greenlet is performing, or None."""
    return _current.get()


def _running() -> StatusJob:
    job = _current.get()
    if job is None:
        raise RuntimeError(
            "resque_compat.status functions work inside a job registered with "
            "@job(\"Name\", status=True) while a worker performs it; use status.get(uuid) elsewhere"
        )
    return job


def uuid() -> str:
    """The running job's status uuid."""
    return _running().uuid


def at(num: Any, total: Any, message: Optional[str] = None) -> None:
    """Progress: ``num`` of ``total`` (and a message). Stops the job here if a kill was
    requested. ``total`` must be a positive number, as in Ruby."""
    try:
        positive = float(total) > 0.0
    except (TypeError, ValueError):
        positive = False
    if not positive:
        raise NotANumber(f"Called at() with total={total} which is not a number")
    tick({"num": num, "total": total}, message)


def tick(*messages: Union[None, str, Mapping[str, Any]]) -> None:
    """Status ``working`` (with a message, if given); stops the job here if a kill was
    requested."""
    _running().tick(*messages)


def set(**data: Any) -> None:  # noqa: A001  (the issue's name; shadows set only in this module)
    """Merge ``data`` into the running job's status (Ruby's ``set_status(data)``)."""
    _running().set_status(data)


def completed(**data: Any) -> None:
    """Status ``completed`` now (``Completed at <time>``), with ``data`` merged in. Without it
    the worker does the same when the job returns."""
    _running().set_status({"status": COMPLETED, "message": f"Completed at {_time_to_s()}"}, data)


# -- the worker side: Ruby's safe_perform!, as a hooks plugin -----------------------------------

class StatusPlugin:
    """Wraps the perform of every ``@job(..., status=True)`` as ``safe_perform!`` does.

    It is the innermost around hook (plugins come after the job's own hooks), so the job's hooks
    see what Ruby's do: they wrap ``perform``, which is where the plugin does its work."""

    def applies_to(self, spec: JobSpec) -> bool:
        return bool(spec.options.get("status"))

    def around_perform(self, spec: JobSpec, args: Sequence[Any]) -> Iterator[None]:
        job_uuid = args[0] if args and args[0] else secrets.token_hex(16)  # Ruby: uuid ||= ...
        options = args[1] if len(args) > 1 else {}
        job = StatusJob(str(job_uuid), options, spec.name, _store())
        token = _current.set(job)
        try:
            job.set_status({"status": WORKING})
            try:
                yield
            except Killed:
                job.store.killed(job.uuid)  # the job ends normally: processed, no failure
                return
            except TermException:
                raise  # Ruby's TermException is no StandardError: the status stays "working"
            except Exception as exc:
                job.set_status({"status": FAILED}, f"The task failed because of an error: {exc}")
                raise  # as Ruby with no on_failure: a failure entry too
            state = job.read()
            # Ruby reads the status back: a job that marked itself failed (or delayed) keeps
            # that; one that expired meanwhile (nil) is not written again.
            if state is not None and state.get("status") not in (FAILED, "delayed", COMPLETED):
                job.set_status({"status": COMPLETED, "message": f"Completed at {_time_to_s()}"})
        finally:
            _current.reset(token)


PLUGIN = hooks.add_plugin(StatusPlugin())


# -- anywhere ----------------------------------------------------------------------------------

def create(job: Union[str, Callable[..., Any]], options: Optional[Mapping[str, Any]] = None,
           queue: Optional[str] = None, resque: Optional["client.Resque"] = None) -> Optional[str]:
    """Ruby's ``ExportJob.create(options)`` / ``enqueue_to(queue, ...)``: status ``queued``,
    ``_statuses``, then ``[uuid, options]`` on the queue. Returns the uuid, or None (and no
    status) when a before_enqueue hook refused the job.

    ``queue`` defaults to the job's ``@job(queue=...)``, else the plugin's ``statused``; ``job``
    is the Ruby class name or a decorated function, and need not be registered here (a Ruby
    worker may be the one to run it).
    """
    resque = resque or client.default()
    if isinstance(job, str):
        class_name = job
        spec: Optional[JobSpec] = _registered(job)
    else:
        spec = registry.spec_for(job)
        class_name = spec.name
    queue = queue or (spec.queue if spec is not None else None) or DEFAULT_QUEUE
    options = {} if options is None else options
    store = StatusStore(resque.redis, resque.keys)
    job_uuid = secrets.token_hex(16)  # SecureRandom.hex: 32 lowercase hex digits
    now = _now()
    store.create(job_uuid, codec.encode(merged(job_uuid, {"options": options}, now=now)), now, _expire_in)
    if resque.enqueue_to(queue, class_name, job_uuid, options) is None:
        store.remove(job_uuid)
        return None
    return job_uuid


def get(job_uuid: str, resque: Optional["client.Resque"] = None) -> Optional[Dict[str, Any]]:
    """``Status::Hash.get(uuid)``: the status as a dict (``time``, ``status``, ``uuid``,
    ``options``, ``name``, ``num``, ``total``, ``message``, ...), or None."""
    resque = resque or client.default()
    return _decoded(StatusStore(resque.redis, resque.keys).get(job_uuid))


def kill(*uuids: str, resque: Optional["client.Resque"] = None) -> None:
    """``Status::Hash.kill(uuid)``: the job, Ruby or Python, stops at its next ``at``/``tick``."""
    resque = resque or client.default()
    StatusStore(resque.redis, resque.keys).kill(uuids)


def remove(job_uuid: str, resque: Optional["client.Resque"] = None) -> None:
    """``Status::Hash.remove(uuid)``: forget the status."""
    resque = resque or client.default()
    StatusStore(resque.redis, resque.keys).remove(job_uuid)


def pct_complete(status: Mapping[str, Any]) -> int:
    """``Status::Hash#pct_complete``, as resque-status's pages show it."""
    if status.get("status") == COMPLETED:
        return 100
    if status.get("status") == QUEUED:
        return 0
    total = status.get("total") or 1
    return int((float(status.get("num") or 0) / float(total)) * 100)


def _registered(name: str) -> Optional[JobSpec]:
    try:
        return registry.lookup(name)
    except ResqueError:
        return None


def _decoded(raw: Optional[bytes]) -> Optional[Dict[str, Any]]:
    if raw is None:
        return None
    try:
        value = codec.decode(raw)
    except codec.DecodeError:
        return None
    return value if isinstance(value, dict) else None
