"""The Resque client: enqueue jobs Ruby runs, and inspect queues and stats as Ruby reports them.

>>> resque = Resque.from_url("redis://127.0.0.1:6379/0")
>>> resque.enqueue_to("critical", "Callbacks::Deliver", 1, "x")
True
"""
from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Union

import redis

from resque_compat import hooks, loner, registry
from resque_compat.common.urls import redact
from resque_compat.errors import NoClassError, NoQueueError, RedisUnavailable
from resque_compat.settings import DEFAULT_REDIS_URL, rails_environment
from resque_compat.store.store import Store, connect
from resque_compat.wire import codec
from resque_compat.wire.activejob_args import JOB_WRAPPER, job_data
from resque_compat.wire.keys import DEFAULT_NAMESPACE, Keys
from resque_compat.wire.records import parse_job

JobRef = Union[str, Any]  # a Ruby class name, or a function/class decorated with @job

if TYPE_CHECKING:
    from resque_compat.scheduler.leader import Delayed
    from resque_compat.scheduler.recurring import Schedules


class Resque:
    """One Redis + namespace, with Ruby's ``Resque`` module API (WIRE §2.3, §2.4, §5.1)."""

    def __init__(self, client: redis.Redis, namespace: str = DEFAULT_NAMESPACE, url: str = "") -> None:
        self.redis = client
        self.keys = Keys(namespace)
        self.store = Store(client, self.keys)
        self.url = url

    @classmethod
    def from_url(cls, url: str = DEFAULT_REDIS_URL, namespace: str = DEFAULT_NAMESPACE,
                 max_connections: int = 10) -> "Resque":
        return cls(connect(url, max_connections=max_connections), namespace, url)

    def ping(self) -> None:
        """Raise RedisUnavailable (with the URL) if Redis does not answer."""
        try:
            self.redis.ping()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            url = redact(self.url) if self.url else str(self.redis)
            # Our timeouts name the address; say the URL too unless it is that address (Sentinel).
            where = "" if url.split("?")[0] in str(exc) else f" at {url}"
            raise RedisUnavailable(f"cannot reach Redis{where}: {exc}; check --redis / REDIS_URL") from None
        except redis.RedisError as exc:  # DB index out of range, bad password, not a Redis port
            raise RedisUnavailable(
                f"Redis at {redact(self.url) if self.url else self.redis} refused us: "
                f"{' '.join(str(exc).split())[:200]}; check --redis / REDIS_URL (the DB number, "
                "the user and password, and that the port is a Redis server's)"
            ) from None

    # -- enqueue / dequeue ---------------------------------------------------------------------
    def enqueue(self, job: JobRef, *args: Any) -> Optional[bool]:
        """``Resque.enqueue``: the queue comes from the job's ``@job(..., queue=...)``."""
        spec = registry.spec_for(job)
        if spec.queue is None:
            raise NoQueueError(
                f"Jobs must be placed onto a queue. No queue could be inferred for class {spec.name}"
                f" (give @job({spec.name!r}, queue=...) or use enqueue_to)"
            )
        return self.enqueue_to(spec.queue, spec.name, *args)

    def enqueue_to(self, queue: str, job: JobRef, *args: Any) -> Optional[bool]:
        """``Resque.enqueue_to``: validate like Ruby, then SADD queues + RPUSH in one pipeline
        (a ``unique=True`` job: resque-loner's check and MULTI, see :mod:`resque_compat.loner`).
        Returns True, None when a before_enqueue hook vetoed or a ``lock_loner`` job runs or is
        queued, False when a ``unique`` job is already queued.

        The bytes are exactly Ruby's, so Ruby's ``Resque.dequeue(Klass, *args)`` removes it.
        """
        class_name = self._class_name(job)
        if queue is None or queue is False:  # type: ignore[comparison-overlap]  # Ruby: nil/false
            raise NoQueueError(
                f"Jobs must be placed onto a queue. No queue could be inferred for class {class_name}"
            )
        if not class_name:
            raise NoClassError("Jobs must be given a class.")
        if not hooks.run_before_enqueue(class_name, args):
            return None  # a before_enqueue hook returned False: Ruby pushes nothing, returns nil
        spec = loner.registered(class_name)
        if not loner.lock_loner_admits(self.redis, self.keys, spec, args, time.time()):
            return None  # resque-lock-timeout's loner mode: running or queued already (Ruby: nil)
        item = codec.encode_job(class_name, args)
        unique = loner.unique_for(spec, self.keys, str(queue), args)
        if unique is None:
            pushed = True
            self.store.push(str(queue), item)
        else:  # resque-loner: False when the same job is already queued
            pushed = loner.push(self.redis, self.keys, str(queue), item, unique)
        hooks.run_after_enqueue(class_name, args)  # even after a loner refusal, as Ruby
        return pushed

    def dequeue(self, job: JobRef, *args: Any, queue: Optional[str] = None) -> Optional[int]:
        """``Resque.dequeue``/``Job.destroy``: with args, remove byte-identical items (LREM);
        without, every item of that class whatever its formatting. Returns how many."""
        class_name = self._class_name(job)
        if queue is None:
            spec = registry.spec_for(job)
            queue = spec.queue
            if queue is None:
                raise NoQueueError(f"no queue given and none registered for {class_name}")
        if not hooks.run_before_dequeue(class_name, args):
            return None  # a before_dequeue hook returned False: Ruby removes nothing, returns nil
        self._unqueue_loners(queue, class_name, args)
        if args:
            removed = self.store.remove_items(queue, codec.encode_job(class_name, args))
        else:
            matching = [raw for raw in self.store.queue_items(queue)
                        if parse_job(queue, raw).class_name == class_name]
            removed = self.store.remove_raw_items(queue, matching) if matching else 0
        hooks.run_after_dequeue(class_name, args)
        return removed

    def _unqueue_loners(self, queue: str, class_name: str, args: tuple) -> None:
        """resque-loner's ``job_destroy``: before removing, free the loner key of every queued
        item of the class (with these args, if given), as the gem does (loner_01b)."""
        if loner.registered_unique(class_name, self.keys, queue, args) is None:
            return
        for raw in self.store.queue_items(queue):
            job = parse_job(queue, raw)
            if job.class_name == class_name and not job.problem and (not args or job.args == list(args)):
                unique = loner.registered_unique(class_name, self.keys, queue, job.args)
                if unique is not None:
                    loner.unqueued(self.redis, unique)

    def enqueue_active_job(self, job_class: str, *args: Any, queue: str = "default",
                           **kwargs: Any) -> Optional[str]:
        """``JobClass.set(queue: queue).perform_later(*args, **kwargs)``; see
        :func:`resque_compat.activejob.enqueue_active_job`. Returns the job_id."""
        data = job_data(job_class, args, kwargs, queue=queue)
        if self.enqueue_to(queue, JOB_WRAPPER, data) is None:
            return None
        return data["job_id"]

    @staticmethod
    def _class_name(job: JobRef) -> str:
        if job is None:
            return ""  # Ruby: nil.to_s, refused with NoClassError
        if isinstance(job, str):
            return job
        return registry.spec_for(job).name

    # -- inspection ----------------------------------------------------------------------------
    def size(self, queue: str) -> int:
        return self.store.queue_size(queue)

    def peek(self, queue: str, start: int = 0, count: int = 1) -> Any:
        """Ruby's ``Resque.peek``: one decoded item when count is 1, else a list."""
        items = [_decoded(raw) for raw in self.store.queue_items(queue, start, count)]
        if count == 1:
            return items[0] if items else None
        return items

    def queues(self) -> List[str]:
        return self.store.queue_names()

    def remove_queue(self, queue: str) -> None:
        """``Resque.remove_queue``, and resque-loner's cleanup of the queue's loner keys: a key
        left behind (no TTL by default) would refuse that unique job forever."""
        self.store.remove_queue(queue)
        loner.forget_queue(self.redis, self.keys, queue)

    def workers(self) -> List[str]:
        return self.store.worker_ids()

    def working(self) -> List[str]:
        """Ids whose ``worker:<id>`` holds a job (resque-web's Working page)."""
        ids = self.store.worker_ids()
        return [wid for wid, job in zip(ids, self.store.worker_jobs(ids)) if job]

    def failed(self, start: int = 0, count: int = 1) -> List[Any]:
        return [_decoded(raw) for raw in self.store.failures(start, count)]

    def info(self) -> Dict[str, Any]:
        """``Resque.info``, field for field (WIRE §5.1 Stats)."""
        queues, sizes, processed, failed, workers, working = self.store.info()
        return {
            "pending": sum(sizes),
            "processed": processed,
            "queues": len(queues),
            "workers": len(workers),
            "working": working,
            "failed": failed,
            "servers": [self._redis_id()],
            "environment": rails_environment(),
        }

    def _redis_id(self) -> str:
        """Ruby's ``redis_id`` (redis-rb ``Client#id``): ``redis://<host:port or path>/db``."""
        kw = self.redis.connection_pool.connection_kwargs
        master = getattr(self.redis.connection_pool, "master_address", None)  # Sentinel: the master now
        if master:
            return f"redis://{master[0]}:{master[1]}/{kw.get('db', 0)}"
        if "path" in kw:
            return f"redis://{kw['path']}/{kw.get('db', 0)}"
        return f"redis://{kw.get('host', '127.0.0.1')}:{kw.get('port', 6379)}/{kw.get('db', 0)}"

    # -- delayed jobs: resque-scheduler's API and keys (WIRE §7.1), see scheduler.Delayed -----
    @property
    def delayed(self) -> "Delayed":
        from resque_compat.scheduler.leader import Delayed

        return Delayed(self)

    def enqueue_at(self, when: Any, job: JobRef, *args: Any) -> bool:
        """Run ``job`` at ``when`` (epoch seconds or datetime) on its registered queue."""
        return self.delayed.enqueue_at(when, job, *args)

    def enqueue_in(self, seconds: float, job: JobRef, *args: Any) -> bool:
        return self.delayed.enqueue_in(seconds, job, *args)

    def enqueue_at_with_queue(self, queue: str, when: Any, job: JobRef, *args: Any) -> bool:
        return self.delayed.enqueue_at_with_queue(queue, when, job, *args)

    def enqueue_in_with_queue(self, queue: str, seconds: float, job: JobRef, *args: Any) -> bool:
        return self.delayed.enqueue_in_with_queue(queue, seconds, job, *args)

    def remove_delayed(self, job: JobRef, *args: Any, queue: Optional[str] = None) -> int:
        return self.delayed.remove_delayed(job, *args, queue=queue)

    def delayed_queue_size(self) -> int:
        return self.delayed.delayed_queue_size()

    def delayed_timestamp_peek(self, when: Any, start: int, count: int) -> List[Any]:
        return self.delayed.delayed_timestamp_peek(when, start, count)

    # -- recurring schedules: resque-scheduler's SchedulingExtensions (issue #13) --------------
    @functools.cached_property
    def schedules(self) -> "Schedules":
        from resque_compat.scheduler.recurring import Schedules, ScheduleStore

        return Schedules(ScheduleStore(self.redis, self.keys))

    def set_schedule(self, name: str, config: Dict[str, Any], persist: Optional[bool] = None) -> None:
        """``Resque.set_schedule``: with ``persist`` (argument or config key) every scheduler,
        Ruby's or ours, runs it (``persistent_schedules``); without, only this process knows it."""
        self.schedules.set_schedule(name, config, persist)

    def remove_schedule(self, name: str) -> None:
        """``Resque.remove_schedule``: HDEL ``persistent_schedules`` and mark it changed."""
        self.schedules.remove_schedule(name)

    def schedule(self) -> Dict[str, Dict[str, Any]]:
        """``Resque.schedule``: this process's schedules plus the persistent ones."""
        return self.schedules.schedule()

    def fetch_schedule(self, name: str) -> Optional[Dict[str, Any]]:
        return self.schedules.fetch_schedule(name)


_default: Optional[Resque] = None


def default() -> Resque:
    """The process's client: the worker's own (same Redis, namespace and bounded pool) inside
    ``resque-py work``; elsewhere one built from REDIS_URL / RESQUE_NAMESPACE on first use."""
    global _default
    if _default is None:
        from resque_compat.settings import connection_settings

        settings = connection_settings()
        codec.set_ruby_json(settings.ruby_json)
        _default = Resque.from_url(settings.redis_url, settings.namespace)
    return _default


def set_default(resque: Optional[Resque]) -> None:
    """Make ``resque`` what :func:`default` returns (the runner does this at start-up)."""
    global _default
    _default = resque


def _decoded(raw: bytes) -> Any:
    try:
        return codec.decode(raw)
    except codec.DecodeError:
        return raw.decode("utf-8", errors="replace")
