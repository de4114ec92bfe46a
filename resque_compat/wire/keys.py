"""Every Redis key resque_compat reads or writes, and the only module that spells one.

Catalogue (names without the namespace prefix; see ``../shared/WIRE.md`` §1.2 and the
fixtures under ``fixtures/ruby-resque-3.0/``):

=====================================  ======  ==================================================
key                                    type    meaning (WIRE section; fixture that shows it)
=====================================  ======  ==================================================
``queues``                             set     every queue name ever pushed to (§1.2; 01)
``queue:<name>``                       list    job JSON strings, FIFO (§1.2, §2.1; 01)
``workers``                            set     registered worker ids (§1.2, §3.1; 02)
``worker:<id>``                        string  ``{"queue","run_at","payload"}`` while working (§4.1; 03)
``worker:<id>:started``                string  ``Time#to_s`` at registration (§4.2; 02)
``workers:heartbeat``                  hash    id -> ISO-8601 from Redis TIME (§3.6; 02)
``stat:processed`` / ``stat:failed``   string  global counters (§1.2; 04)
``stat:processed:<id>`` etc.           string  per-worker counters, deleted at unregister (04, 04b)
``failed``                             list    failure entries, redis backend (§4.4; 04)
``failed_queues`` / ``<queue>_failed`` set/lst redis_multi_queue backend (§4.4; 10)
``pruning_dead_workers_in_progress``   string  pruning lock, SET NX EX 60 (§3.5; 02)
``pause-all-workers``                  string  operator pause switch (§1.2)
``dirty_exit_counts``                  hash    ours: payload bytes -> crashes it caused (DIRTY_EXIT_MAX); expires
``pause:queue:<q>`` / ``pause:all``    string  resque-pause: any value pauses (plugins README)
``delayed_queue_schedule``             zset    due epoch seconds, member = score (§7.1; 09)
``delayed:<ts>``                       list    ``{"class","args","queue"}`` items due at ts (§7.1; 09)
``timestamps:<item JSON>``             set     ``delayed:<ts>`` members holding that item (§7.1; 09)
``<ns>:resque_scheduler_master_lock``  string  scheduler leader ``host:pid``, doubled ns (§7.1; 09b)
``persistent_schedules``               hash    schedule name -> config JSON, ``persist`` removed (sched_03)
``schedules_changed``                  set     schedule names set/removed since a dynamic leader looked (sched_01, 05a)
``delayed:last_enqueued_at``           hash    schedule name -> ``Time#to_s`` of its last enqueue (sched_01, 04)
``resque-retry:<Class>[:<sha1>]``      string  resque-retry attempt counter (§7.2)
``status:<uuid>``                      string  resque-status JSON (ruby-plugins/status_01..06b)
``_statuses``                          zset    resque-status uuids, score = create epoch (status_01)
``_kill``                              set     resque-status uuids asked to stop (status_04a)
``pause:queue:<q>`` / ``pause:all``    string  resque-pause: present = paused (pause_01, pause_03)
``failure-<the resque-retry key>``     string  MultipleWithRetrySuppression's pending failure (retry_01)
``loners:queue:<q>:job:<md5>``         string  resque-loner: ``"1"`` while a unique job is queued (loner_01)
``lock:<Class>:<identifier>``          string  resque-lock-timeout run lock: expiry epoch or ``true`` (lock_01)
``loner:lock:<Class>:<identifier>``    string  resque-lock-timeout ``@loner``: queued lock (lock_05)
=====================================  ======  ==================================================

The namespace is joined with ``:`` exactly as redis-namespace does (§1.1); nested namespaces
such as ``resque:GitHub`` simply contain a colon.
"""
from __future__ import annotations

import re
from typing import Optional, Tuple

DEFAULT_NAMESPACE = "resque"
#: Ruby's ``/\s/``: ASCII whitespace only, also in UTF-8 strings.
_RUBY_WHITESPACE = re.compile(r"[ \t\n\v\f\r]")


class Keys:
    """Key names for one namespace. Pure: builds strings, never talks to Redis."""

    __slots__ = ("namespace", "_prefix")

    def __init__(self, namespace: str = DEFAULT_NAMESPACE) -> None:
        if not namespace:
            raise ValueError("the Resque namespace must not be empty (Ruby's default is 'resque')")
        self.namespace = namespace
        self._prefix = namespace + ":"

    def __repr__(self) -> str:
        return f"Keys({self.namespace!r})"

    def strip(self, key: str) -> str:
        """The key without the namespace prefix (for keys read back with SCAN or KEYS)."""
        return key[len(self._prefix):] if key.startswith(self._prefix) else key

    def pattern(self, glob: str = "*") -> str:
        """A SCAN/KEYS pattern inside this namespace."""
        return self._prefix + glob

    # -- queues -------------------------------------------------------------------------------
    @property
    def queues(self) -> str:
        return self._prefix + "queues"

    def queue(self, name: str) -> str:
        return self._prefix + "queue:" + name

    # -- workers ------------------------------------------------------------------------------
    @property
    def workers(self) -> str:
        return self._prefix + "workers"

    def worker(self, worker_id: str) -> str:
        return self._prefix + "worker:" + worker_id

    def worker_started(self, worker_id: str) -> str:
        return self._prefix + "worker:" + worker_id + ":started"

    @property
    def heartbeats(self) -> str:
        return self._prefix + "workers:heartbeat"

    @property
    def pruning_lock(self) -> str:
        return self._prefix + "pruning_dead_workers_in_progress"

    @property
    def dirty_exit_counts(self) -> str:
        """Ours: payload bytes -> how many workers the job crashed (DIRTY_EXIT_MAX, issue 14)."""
        return self._prefix + "dirty_exit_counts"

    @property
    def pause_all_workers(self) -> str:
        return self._prefix + "pause-all-workers"

    # -- resque-pause (../shared/fixtures/ruby-plugins, pause_01..06) -------------------------
    def paused_queue(self, name: str) -> str:
        """``pause:queue:<q>``: any value (not just ``true``) pauses the queue."""
        return self._prefix + "pause:queue:" + name

    @property
    def pause_all(self) -> str:
        """resque-pause's global switch (not core's ``pause-all-workers``)."""
        return self._prefix + "pause:all"

    # -- reading a key back (SCAN) --------------------------------------------------------------
    def classify(self, key: str) -> Tuple[str, str]:
        """What a key read back with SCAN is, as ``(kind, name)``.

        kinds: ``worker`` / ``started`` / ``worker_stat`` (name = the worker id), ``queue`` and
        ``paused_queue`` (name = the queue), ``other`` (name = the key without the prefix). A
        worker id may itself end in ``:started``; Ruby's keys are ambiguous there too.
        """
        name = self.strip(key)
        if name.startswith("worker:"):
            rest = name[len("worker:"):]
            if rest.endswith(":started"):
                return "started", rest[: -len(":started")]
            return "worker", rest
        for stat in ("stat:processed:", "stat:failed:"):
            if name.startswith(stat):
                return "worker_stat", name[len(stat):]
        if name.startswith("queue:"):
            return "queue", name[len("queue:"):]
        if name.startswith("pause:queue:"):
            return "paused_queue", name[len("pause:queue:"):]
        return "other", name

    # -- stats --------------------------------------------------------------------------------
    def stat(self, name: str) -> str:
        """``stat:processed`` or ``stat:failed`` (the README's ``stats:`` is wrong, §1.2)."""
        return self._prefix + "stat:" + name

    def worker_stat(self, name: str, worker_id: str) -> str:
        return self._prefix + "stat:" + name + ":" + worker_id

    def worker_processed(self, worker_id: str) -> str:
        """``stat:processed:<id>``, deleted when the worker unregisters (fixtures 04, 04b)."""
        return self.worker_stat("processed", worker_id)

    def worker_failed(self, worker_id: str) -> str:
        """``stat:failed:<id>``, deleted when the worker unregisters (fixtures 04, 04b)."""
        return self.worker_stat("failed", worker_id)

    @property
    def processed(self) -> str:
        return self.stat("processed")

    @property
    def failed_count(self) -> str:
        return self.stat("failed")

    # -- failures -----------------------------------------------------------------------------
    @property
    def failed(self) -> str:
        return self._prefix + "failed"

    @property
    def failed_queues(self) -> str:
        return self._prefix + "failed_queues"

    def queue_failed(self, queue: str) -> str:
        """The redis_multi_queue backend's list for one queue, e.g. ``critical_failed``."""
        return self._prefix + self.queue_failed_name(queue)

    @staticmethod
    def queue_failed_name(queue: str) -> str:
        """The member written to ``failed_queues`` (no prefix), e.g. ``critical_failed``."""
        return queue + "_failed"

    def failure_list(self, queue: Optional[str], backend: str) -> str:
        """Where a failure of a job from ``queue`` is RPUSHed under FAILURE_BACKEND=``backend``:
        ``<queue>_failed`` for redis_multi_queue, else ``failed``. Ruby's RedisMultiQueue falls
        back to ``failed`` only for an entry without a queue name (WIRE §4.4, fixture 10)."""
        if backend == "redis_multi_queue" and isinstance(queue, str):
            return self.queue_failed(queue)
        return self.failed

    def failed_queues_member(self, queue: Optional[str], backend: str) -> Optional[str]:
        """The ``failed_queues`` member SADDed with such a failure (None: the backend keeps
        no ``failed_queues`` set for it)."""
        if backend == "redis_multi_queue" and isinstance(queue, str):
            return self.queue_failed_name(queue)
        return None

    def failed_queue_list(self, member: str) -> str:
        """The list a ``failed_queues`` member names: Ruby uses the member itself as the key
        (``Resque.list_range("critical_failed", ...)``), whoever wrote it (fixture 10)."""
        return self._prefix + member

    # -- resque-scheduler (WIRE §7.1; fixtures 08b, 09, 09b) ----------------------------------
    @property
    def delayed_queue_schedule(self) -> str:
        """Zset of due times: member and score are both the epoch second."""
        return self._prefix + "delayed_queue_schedule"

    def delayed(self, timestamp: int) -> str:
        """``delayed:<epoch int>``, the list of items due at that second."""
        return self._prefix + "delayed:" + str(int(timestamp))

    def timestamps(self, item: str) -> str:
        """``timestamps:<exact item JSON>``, the set of ``delayed:<ts>`` holding that item."""
        return self._prefix + "timestamps:" + item

    def scheduler_master_lock(self, lock_prefix: str = "") -> str:
        """resque-scheduler's leader lock. Ruby builds ``<ns>:[<prefix>:]resque_scheduler_master_lock``
        and then sends it through the namespaced client, so the namespace is doubled:
        ``resque:resque:resque_scheduler_master_lock`` (fixture 09b)."""
        middle = lock_prefix + ":" if lock_prefix else ""
        return self._prefix + self.namespace + ":" + middle + "resque_scheduler_master_lock"

    # -- resque-scheduler's recurring schedules (fixtures ruby-plugins/sched_*) ----------------
    @property
    def persistent_schedules(self) -> str:
        """Hash of schedules set with ``persist``: name -> config JSON (sched_03)."""
        return self._prefix + "persistent_schedules"

    @property
    def schedules_changed(self) -> str:
        """Set of schedule names a dynamic leader must reload (SPOPped one by one, sched_05b)."""
        return self._prefix + "schedules_changed"

    @property
    def last_enqueued_at(self) -> str:
        """Hash name -> ``Time#to_s`` of the last recurring enqueue; never deleted (sched_01)."""
        return self._prefix + "delayed:last_enqueued_at"

    # -- resque-retry (WIRE §7.2) --------------------------------------------------------------
    def retry_counter(self, class_name: str, identifier: Optional[str]) -> str:
        """``resque-retry:<Class>[:<identifier>]`` with every whitespace character removed, as
        ``redis_retry_key`` does (``.gsub(/\\s/, '')`` on the joined key, after hashing)."""
        parts = ["resque-retry", class_name] + ([] if identifier is None else [identifier])
        return self._prefix + _RUBY_WHITESPACE.sub("", ":".join(parts))

    def retry_failure(self, counter_key: str) -> str:
        """MultipleWithRetrySuppression's ``failure-<retry key>`` for a :meth:`retry_counter` key."""
        return self._prefix + "failure-" + self.strip(counter_key)

    # -- resque-status 0.5.0 (fixtures/ruby-plugins/status_*) ----------------------------------
    def status(self, uuid: str) -> str:
        """``status:<uuid>``: the job's status JSON."""
        return self._prefix + "status:" + uuid

    @property
    def statuses(self) -> str:
        """``_statuses``: every status uuid, scored by its create time (never expires)."""
        return self._prefix + "_statuses"

    @property
    def status_kill(self) -> str:
        """``_kill``: uuids whose job should stop at its next ``at``/``tick``."""
        return self._prefix + "_kill"

    # -- resque-pause 0.3.0 (fixtures/ruby-plugins/pause_*) ------------------------------------
    def pause_queue(self, queue: str) -> str:
        """``pause:queue:<q>``: any value means the queue is paused (``"true"`` as Ruby writes)."""
        return self._prefix + "pause:queue:" + queue

    # pause_all (``pause:all``, resque-pause's global_pause_key) is defined above, with paused_queue.

    # -- resque-loner and resque-lock-timeout (fixtures ruby-plugins/loner_*, lock_*) ---------
    def loner(self, queue: str, digest: str) -> str:
        """resque-loner's ``loners:queue:<queue>:job:<md5 hex>``."""
        return f"{self._prefix}loners:queue:{queue}:job:{digest}"

    def loner_pattern(self, queue: str) -> str:
        """A SCAN pattern for every resque-loner key of ``queue`` (glob characters in the queue
        name escaped, so only that queue's keys match)."""
        escaped = re.sub(r"([*?\[\]\\])", r"\\\1", queue)
        return f"{self._prefix}loners:queue:{escaped}:job:*"

    def run_lock(self, class_name: str, identifier: str) -> str:
        """resque-lock-timeout's ``lock:<Class>:<identifier>`` (no escaping: spaces, quotes and
        ``=>`` appear as they are)."""
        return f"{self._prefix}lock:{class_name}:{identifier}"

    def loner_lock(self, class_name: str, identifier: str) -> str:
        """resque-lock-timeout's ``loner:lock:<Class>:<identifier>`` (``@loner = true``)."""
        return f"{self._prefix}loner:lock:{class_name}:{identifier}"
