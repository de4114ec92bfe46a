"""Recurring schedules: resque-scheduler's keys, its client API, and the leader's firing loop.

Keys (fixtures ``sched_01``..``sched_05b``): ``persistent_schedules`` (name -> config JSON),
``schedules_changed`` (names to reload), ``delayed:last_enqueued_at`` (name -> ``Time#to_s``).

Exactly once across leaders, Ruby or Python (issue #13):

* Only the lock holder fires, and the check is inside the same script as the push
  (:data:`FIRE_SCRIPT`): a paused or partitioned Python leader that lost the lock cannot
  enqueue a stale slot (Ruby can, from its cached flag: WIRE §7.3).
* ``delayed:last_enqueued_at`` is the shared record of what ran: a slot is done when the time
  recorded there (by Ruby or by us) is at or after it. The script pushes only if the record is
  still the value we read (compare and set), so two fires of one slot cannot both land.
* Missed slots (no leader at that moment: kill -9, a deploy, Redis away). Policy
  ``RESQUE_SCHEDULER_MISSED``:

  - ``once`` (default): a new leader runs the latest slot it finds missed, once, if that slot
    is at most ``lock timeout + 2 x interval`` old (the longest a handover can take), and
    only for schedules with a recorded last run (a brand-new schedule starts from now, as in
    Ruby). Several missed slots of one schedule become one run.
  - ``skip``: Ruby's behaviour (rufus-scheduler starts afresh on each new leader): slots
    before this process took the lead are not run.
"""
from __future__ import annotations

import datetime as _dt
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import redis

from resque_compat.scheduler import schedule as _schedule
from resque_compat.scheduler.delayed import registered_queue
from resque_compat.wire import codec
from resque_compat.wire.keys import Keys

log = logging.getLogger("resque_compat.scheduler")

MISSED_POLICIES = ("once", "skip")

#: Push one recurring job and record it, only if we still lead and nobody recorded a run since
#: we looked. KEYS: lock, last_enqueued_at, queues, queue:<q>. ARGV: lock value, name, the
#: last_enqueued_at value we read ('' = none), queue name, payload, the new Time#to_s.
#: Returns 1 pushed, 0 someone recorded a run meanwhile, -1 we do not hold the lock.
FIRE_SCRIPT = r"""
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local seen = redis.call('HGET', KEYS[2], ARGV[2])
if (seen or '') ~= ARGV[3] then return 0 end
redis.call('SADD', KEYS[3], ARGV[4])
redis.call('RPUSH', KEYS[4], ARGV[5])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[6])
return 1
"""


def local_zone(name: Optional[str]) -> _dt.tzinfo:
    """The zone of cron lines without a suffix: TZ (an IANA name) if given, else the system's
    (/etc/localtime), else UTC, as Ruby's Time.now would see it."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if name:
        try:
            return ZoneInfo(name.lstrip(":"))
        except (ZoneInfoNotFoundError, ValueError, OSError):
            log.warning("TZ=%r is not an IANA zone name; cron lines without a zone use the "
                        "system's zone (set TZ=Europe/Stockholm or add the zone to each line)", name)
    try:
        with open("/etc/localtime", "rb") as fh:
            return ZoneInfo.from_file(fh, key="localtime")
    except (OSError, ValueError):
        return _dt.timezone.utc


# -- Redis commands ----------------------------------------------------------------------------

class ScheduleStore:
    """resque-scheduler's schedule keys over one client and namespace (Ruby's command order)."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.redis = client
        self.keys = keys
        self._fire = client.register_script(FIRE_SCRIPT)

    def persistent(self) -> Dict[str, Dict[str, Any]]:
        """HGETALL ``persistent_schedules``, decoded; an entry that is not JSON is logged and left out."""
        out: Dict[str, Dict[str, Any]] = {}
        for name, raw in self.redis.hgetall(self.keys.persistent_schedules).items():
            name = name.decode("utf-8", errors="replace") if isinstance(name, bytes) else name
            try:
                value = codec.decode(raw)
            except codec.DecodeError as exc:
                log.error("schedule %r: persistent_schedules holds invalid JSON (%s); fix it with "
                          "resque-py schedule set/remove", name, exc)
                continue
            out[name] = value if isinstance(value, dict) else {"__invalid__": value}
        return out

    def persist(self, name: str, config: Mapping[str, Any]) -> None:
        """``set_schedule`` with persist: HSET the JSON (keys in the order given), SADD changed."""
        self.redis.hset(self.keys.persistent_schedules, name, codec.encode(dict(config)))
        self.mark_changed(name)

    def remove(self, name: str) -> None:
        """``remove_schedule``: HDEL, SADD changed. ``last_enqueued_at`` stays, as in Ruby."""
        self.redis.hdel(self.keys.persistent_schedules, name)
        self.mark_changed(name)

    def mark_changed(self, name: str) -> None:
        self.redis.sadd(self.keys.schedules_changed, name)

    def pop_changed(self) -> Optional[str]:
        value = self.redis.spop(self.keys.schedules_changed)
        return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value

    def clear_changed(self) -> None:
        self.redis.delete(self.keys.schedules_changed)

    def last_enqueued(self) -> Dict[str, str]:
        return {_text(k): _text(v) for k, v in self.redis.hgetall(self.keys.last_enqueued_at).items()}

    def last_enqueued_at(self, name: str) -> Optional[str]:
        value = self.redis.hget(self.keys.last_enqueued_at, name)
        return None if value is None else _text(value)

    def push(self, queue: str, payload: str) -> None:
        """``Resque::Job.create``: SADD queues + RPUSH (``enqueue-now``, resque-web's Queue now)."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.sadd(self.keys.queues, queue)
        pipe.rpush(self.keys.queue(queue), payload)
        pipe.execute()

    def fire(self, lock_key: str, lock_value: str, name: str, seen: Optional[str], queue: str,
             payload: str, now_text: str) -> int:
        return int(self._fire(keys=[lock_key, self.keys.last_enqueued_at, self.keys.queues,
                                    self.keys.queue(queue)],
                              args=[lock_value, name, seen or "", queue, payload, now_text]))


def _text(value: Any) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def payload_for(entry: _schedule.Entry) -> str:
    """The queue item: ``{"class","args"}``; with a ``custom_job_class`` that class is enqueued
    with the same args (what Ruby does when it cannot load the custom class)."""
    return codec.encode_job(entry.custom_job_class or entry.class_name, entry.args)


def enqueue_now(store: ScheduleStore, name: str, config: Mapping[str, Any]) -> Tuple[str, str]:
    """resque-web's "Queue now" (``enqueue_from_config``): push once, record no run, whatever
    the trigger or env. Returns (queue, payload); raises ScheduleError without class or queue."""
    class_name, queue, args, custom = _schedule.job_target(name, config, registered_queue)
    payload = codec.encode_job(custom or class_name, args)
    store.push(queue, payload)
    return queue, payload


# -- the client API (Ruby's SchedulingExtensions) ----------------------------------------------

class Schedules:
    """``Resque.set_schedule``/``remove_schedule``/``schedule``/``fetch_schedule`` for one client.

    As in Ruby, a schedule set without ``persist`` lives only in this object (and only marks
    ``schedules_changed``): another process never sees it. Pass ``{"persist": True}`` (or
    ``persist=True``) to store it in ``persistent_schedules`` where every scheduler reads it.
    """

    def __init__(self, store: ScheduleStore) -> None:
        self.store = store
        self.memory: Dict[str, Dict[str, Any]] = {}

    def set_schedule(self, name: str, config: Mapping[str, Any], persist: Optional[bool] = None) -> None:
        config = dict(config)
        flag = config.pop("persist", None)
        if persist is None:
            persist = bool(flag)
        if persist:
            if not config.get("queue") and isinstance(config.get("class"), str):
                # resque-web renders the row with the class's Ruby @queue, which a Python-only
                # class has not: store the Python @job's queue so the tab and "Queue now" work.
                queue = registered_queue(config["class"])
                if queue:
                    config["queue"] = queue
            self.store.persist(name, config)
        else:
            self.memory[name] = codec.decode(codec.encode(config))
            self.store.mark_changed(name)

    def remove_schedule(self, name: str) -> None:
        self.memory.pop(name, None)
        self.store.remove(name)

    def schedule(self) -> Dict[str, Dict[str, Any]]:
        """Ruby's ``all_schedules``: this process's non-persistent ones, then the persistent ones."""
        return {**self.memory, **self.store.persistent()}

    def fetch_schedule(self, name: str) -> Optional[Dict[str, Any]]:
        return self.schedule().get(name)


# -- the leader's loop -------------------------------------------------------------------------

@dataclass
class _Armed:
    """An entry the leader fires: the next slot to look at, and the last slot it fired."""

    entry: _schedule.Entry
    cursor: float          # slots strictly after this are still to run
    first: Optional[float] = None  # every: the first slot of the grid
    #: The last_enqueued_at text we wrote for it: while it is still there, the record is our
    #: own run of ``cursor`` (a late fire may stamp the next slot's second: do not mistake it).
    written: Optional[str] = None


class Recurring:
    """The schedule a leader runs: static entries (the file) plus ``persistent_schedules``."""

    def __init__(self, store: ScheduleStore, static: Mapping[str, Mapping[str, Any]], *,
                 env: Optional[str], dynamic: bool, zone: _dt.tzinfo, missed: str = "once",
                 window: float = 190.0, clock: Callable[[], float] = time.time,
                 time_to_s: Optional[Callable[[float], str]] = None) -> None:
        if missed not in MISSED_POLICIES:
            raise ValueError(f"missed-slot policy must be one of {', '.join(MISSED_POLICIES)}")
        self.store = store
        self.static = {name: dict(config) for name, config in static.items()}
        self.env = env
        self.dynamic = dynamic
        self.zone = zone
        self.missed = missed
        self.window = window
        self.clock = clock
        #: Ruby's ``Time.now.to_s`` in the scheduler's zone (TZ), for ``last_enqueued_at``
        self.time_to_s = time_to_s or (lambda epoch: _dt.datetime.fromtimestamp(int(epoch), zone)
                                       .strftime("%Y-%m-%d %H:%M:%S %z"))
        self.armed: Dict[str, _Armed] = {}
        self.errors: Dict[str, str] = {}
        self.lock_key = ""
        self.lock_value = ""
        self.fired = 0

    # -- loading -------------------------------------------------------------------------------
    def publish_static(self) -> None:
        """What ``Resque.schedule = YAML`` does in Ruby's initializer: SADD every name to
        ``schedules_changed``, and persist the entries marked ``persist``."""
        for name, config in list(self.static.items()):
            if config.pop("persist", None):
                # Ruby keeps a persisted entry only in Redis: remove_schedule then ends it
                self.store.persist(name, self.static.pop(name))
            else:
                self.store.mark_changed(name)

    def schedule(self) -> Dict[str, Dict[str, Any]]:
        return {**self.static, **self.store.persistent()}

    def build(self, name: str, config: Mapping[str, Any]) -> Optional[_schedule.Entry]:
        """The entry, or None with one log line (skipped for this env, or refused)."""
        wanted = _schedule.configured_env(config) if isinstance(config, Mapping) else None
        if wanted is not None and not _schedule.env_matches(wanted, self.env):
            log.info("skipping schedule %s: its env %r does not include RAILS_ENV=%r", name, wanted, self.env)
            return None
        try:
            return _schedule.build(name, config, default_zone=self.zone, queue_of=registered_queue)
        except _schedule.ScheduleError as exc:
            if self.errors.get(name) != str(exc):
                log.error("%s; the other schedules keep running", exc)
            self.errors[name] = str(exc)
            return None

    def lead(self, lock_key: str, lock_value: str) -> None:
        """We just became the leader: load every schedule and arm it from now."""
        self.lock_key, self.lock_value = lock_key, lock_value
        if self.dynamic:
            self.store.clear_changed()  # Ruby's load_schedule! as a dynamic master
        self.armed.clear()
        schedules = self.schedule()
        if not schedules:
            log.info("schedule empty: give --schedule FILE or set schedules with resque-py schedule set")
        last = self.store.last_enqueued()
        now = self.clock()
        for name, config in schedules.items():
            self._arm(name, config, now, last.get(name))
        log.info("scheduling %d recurring job(s): %s", len(self.armed), ", ".join(sorted(self.armed)) or "-")

    def step_down(self) -> None:
        self.armed.clear()

    def _arm(self, name: str, config: Mapping[str, Any], now: float, last_text: Optional[str]) -> None:
        entry = self.build(name, config)
        self.armed.pop(name, None)
        if entry is None:
            return
        last = codec.parse_time_to_s(last_text)
        trigger = entry.trigger
        if trigger.kind == "cron":
            cursor = now
            if last is not None and self.missed == "once":
                cursor = max(float(last), now - self.window)  # the slots a handover can miss
            if last is not None and last > cursor:
                cursor = float(last)  # a run recorded later than now (clock skew): not before it
            armed = _Armed(entry, cursor)
        else:
            fresh = trigger.first_at if trigger.first_at is not None else \
                now + (trigger.first_in if trigger.first_in is not None else trigger.every)
            first = fresh
            if last is not None:
                following = last + trigger.every  # the run after the recorded one
                if self.missed == "once" and following >= now - self.window:
                    first = following  # at or before now: that missed run happens once, now
                else:
                    first = max(fresh, following)
            armed = _Armed(entry, first - 1e-6, first=first)
        self.armed[name] = armed
        log.debug("armed schedule %s (%s): next at %s", name, entry.trigger.describe(),
                  self.time_to_s(self.next_slot(armed) or 0))

    def update(self) -> None:
        """Ruby's ``update_schedule`` (DYNAMIC_SCHEDULE): SPOP each changed name and re-arm it."""
        if not self.dynamic:
            return
        while True:
            name = self.store.pop_changed()
            if name is None:
                return
            config = self.schedule().get(name)
            if config is None:
                if self.armed.pop(name, None) is not None:
                    log.info("removing schedule %s", name)
                continue
            log.info("reloading schedule %s", name)
            self._arm(name, config, self.clock(), self.store.last_enqueued_at(name))

    # -- firing --------------------------------------------------------------------------------
    def next_slot(self, armed: _Armed) -> Optional[float]:
        trigger = armed.entry.trigger
        if trigger.kind == "cron":
            assert trigger.cron is not None
            return float(trigger.cron.next_time(armed.cursor))
        assert armed.first is not None
        if armed.cursor < armed.first:
            return armed.first
        k = int((armed.cursor - armed.first) // trigger.every) + 1
        return armed.first + k * trigger.every

    def latest_due(self, armed: _Armed, now: float) -> Optional[float]:
        """The latest slot in (cursor, now], or None."""
        slot = self.next_slot(armed)
        if slot is None or slot > now:
            return None
        trigger = armed.entry.trigger
        if trigger.kind == "every":
            assert armed.first is not None
            return armed.first + int((now - armed.first) // trigger.every) * trigger.every
        assert trigger.cron is not None
        while True:
            following = trigger.cron.next_time(slot)
            if following > now:
                return slot
            slot = float(following)

    def next_wake(self) -> Optional[float]:
        slots = [s for s in (self.next_slot(a) for a in self.armed.values()) if s is not None]
        return min(slots) if slots else None

    def fire_due(self) -> Tuple[int, bool]:
        """Fire every armed entry whose slot has come. Returns (fired, still leader)."""
        now = self.clock()
        due: List[Tuple[_Armed, float]] = []
        for armed in self.armed.values():
            slot = self.latest_due(armed, now)
            if slot is not None:
                due.append((armed, slot))
        if not due:
            return 0, True
        last = self.store.last_enqueued()
        fired = 0
        for armed, slot in sorted(due, key=lambda pair: pair[1]):
            name = armed.entry.name
            seen = last.get(name)
            recorded = None if seen is not None and seen == armed.written else codec.parse_time_to_s(seen)
            if recorded is not None and recorded >= int(slot):
                log.debug("schedule %s: the slot at %s already ran (%s)", name, self.time_to_s(slot), seen)
                armed.cursor = max(slot, float(recorded)) if armed.entry.trigger.kind == "cron" else slot
                continue
            stamp = self.time_to_s(self.clock())
            result = self.store.fire(self.lock_key, self.lock_value, name, seen, armed.entry.queue,
                                     payload_for(armed.entry), stamp)
            if result < 0:
                log.warning("lost the leader lock before enqueuing %s; the new leader runs it", name)
                return fired, False
            armed.cursor = slot
            if result == 0:
                log.info("schedule %s: another scheduler recorded a run meanwhile; not enqueued", name)
                continue
            armed.written = stamp
            fired += 1
            log.info("queueing %s (%s) for the slot at %s", armed.entry.class_name, name, self.time_to_s(slot))
        self.fired += fired
        return fired, True

