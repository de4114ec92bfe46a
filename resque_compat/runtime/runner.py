"""One OS process running FIBERS workers: start-up, signals, process title, orderly shutdown.

Start-up follows Ruby's order (WIRE §6.7): title ``resque: Starting``, HDEL our heartbeat
fields, prune dead workers under the shared lock, first heartbeat, then register every slot.
Shutdown always unregisters with Ruby's six-command pipeline, whatever ended the run.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import time
from typing import TYPE_CHECKING, Callable, List, Optional, Set

import gevent
import redis
from gevent.event import Event
from setproctitle import setproctitle

from resque_compat import (
    activejob,  # noqa: F401  registers ActiveJob's JobWrapper (WIRE §2.6)
    client,
    db,
    hooks,
    http,
    lock,  # noqa: F401  adds the resque-lock-timeout plugin for @job(lock_timeout=...)
    retry,  # noqa: F401  adds the resque-retry plugin for @job(retry_limit=...) (WIRE §7.2)
    status,  # noqa: F401  adds the resque-status plugin for @job(status=True)
)
from resque_compat import redis as job_redis
from resque_compat.errors import ConfigurationError, JobKilled, TermException
from resque_compat.failures import notifier_for
from resque_compat.retry_failures import suppression_for
from resque_compat.runtime import pause  # noqa: F401  resque-pause's push-back, @job(pause=True)
from resque_compat.runtime.autoscale import Autoscaler, db_headroom
from resque_compat.runtime.fetcher import Fetcher, FetcherEvents
from resque_compat.runtime.heartbeat import HeartbeatThread, beat, store_factory
from resque_compat.runtime.process import monitor_hub, rss_mb
from resque_compat.runtime.pruning import dirty_exit_policy, prune_dead_workers, unregister_workers
from resque_compat.runtime.worker import Worker
from resque_compat.settings import Settings
from resque_compat.store.store import Store, connect
from resque_compat.version import RESQUE_VERSION
from resque_compat.wire import codec, records
from resque_compat.wire.keys import Keys
from resque_compat.wire.queues import QueueList

if TYPE_CHECKING:
    from resque_compat.metrics.recorder import Metrics

log = logging.getLogger("resque_compat.runner")

TITLE_PREFIX = f"resque-{RESQUE_VERSION}: "
#: How often the process title is refreshed and MAX_MEMORY checked; not per job.
WATCH_INTERVAL = 0.25
#: Exit code after MAX_JOBS / MAX_MEMORY: "recycle me", distinct from errors (1) and usage (2).
EXIT_RECYCLE = 3


class Runner:
    """Owns the workers of one process. ``run()`` returns the exit code."""

    def __init__(self, settings: Settings, hostname: Optional[str] = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.queues = QueueList(settings.queues)
        if not self.queues:
            raise ConfigurationError("no queues to work: set QUEUE, e.g. resque-py work QUEUE=critical,high")
        self.hostname = hostname or settings.hostname or socket.gethostname()
        self.pid = os.getpid()
        self.clock = clock
        self.keys = Keys(settings.namespace)
        self.store = Store(connect(settings.redis_url, max_connections=settings.effective_redis_pool),
                           self.keys, settings.failure_backend)
        # Pools shared by every greenlet's jobs: MySQL (only with DATABASE_URL) and HTTP.
        db.configure(settings.database_url, settings.db_pool, settings.db_pool_timeout)
        http.configure(settings.fibers, *settings.http_timeout)
        # resque_compat.redis: its own pool, so job commands never wait behind our bookkeeping.
        job_redis.configure(settings.effective_job_redis_url, settings.effective_redis_pool)
        codec.set_ruby_json(settings.ruby_json)  # floats in every payload we write, as the Ruby apps'
        # Jobs and plugins that enqueue share the worker's bounded pool (client.default()).
        client.set_default(client.Resque(self.store.redis, settings.namespace, settings.redis_url))
        #: Jobs still allowed before the process recycles itself (MAX_JOBS); None = no limit.
        self.jobs_left: Optional[int] = settings.max_jobs or None
        #: Resque's queue_empty hook runs when a poll finds the queues empty after jobs were
        #: taken and none is still running (the process went from working to idle).
        self._took_jobs = False
        # RESQUE_PY_FAILURE_BACKEND=multiple: a bad FAILURE_CALLBACK is a start-up error (exit 2), not a surprise later.
        self.failure_notifier = notifier_for(settings.failure_backend, settings.failure_callback)
        self.retry_suppression = suppression_for(settings.failure_backend, self.store.redis, self.keys, clock)
        self.fetcher = Fetcher(
            self.store, self.queues,
            interval=settings.interval,
            min_interval=settings.effective_min_interval,
            max_interval=settings.effective_max_interval,
            backoff_interval=settings.backoff_interval,
            poll_cap=settings.poll_interval,
            clock=clock,
            events=FetcherEvents(
                allowance=lambda: self.jobs_left,
                jobs_taken=self._jobs_taken,
                queues_empty=self._queues_empty,
                failures_recorded=self._failures_recorded,
                retired=self._slots_retired,
                reconnected=self._reregister,
            ),
        )
        #: --statsd / --graphite / --metrics-port (binds the port now: a busy one fails start-up);
        #: every slot, autoscaled ones too, reports each ended job to it. None = off, no cost.
        self.metrics: Optional[Metrics] = None
        if settings.metrics_enabled:
            # Imported only when asked for: most workers run without, and start-up counts.
            from resque_compat.metrics import recorder

            self.metrics = recorder.for_runner(self)
        # FIBERS=MIN..MAX starts MIN slots; the autoscaler adds and retires them while running.
        self.workers: List[Worker] = [self._new_worker(slot) for slot in range(settings.effective_fibers_min)]
        self.ids = [w.id for w in self.workers]
        self.retired: List[Worker] = []
        self._leaving: Set[str] = set()  # retired slots that have not left yet
        self.autoscaler: Optional[Autoscaler] = None
        if settings.autoscale:
            self.autoscaler = Autoscaler(
                settings.effective_fibers_min, settings.fibers,
                busy=lambda: self.fetcher.in_flight, slots=lambda: len(self.workers) - len(self._leaving),
                grow=self.add_slots, shrink=self.retire_slots, db_free=lambda: db_headroom(db.stats()))
        self.heartbeat = HeartbeatThread(store_factory(settings.redis_url, settings.namespace),
                                         self.ids, settings.heartbeat_interval, self._started_text)
        self.shutdown_requested = Event()
        self.exit_code = 0
        self._term_timer: Optional[gevent.Greenlet] = None
        self._last_title = ""

    # -- life cycle ----------------------------------------------------------------------------
    def run(self, signals: bool = True) -> int:
        """Start up, work until told to stop (or, with INTERVAL=0, until the queues are empty),
        unregister. ``signals=False`` leaves the signal handlers of a host process alone (the
        in-process tests): QUIT/TERM/USR1/USR2/CONT are then only the methods below."""
        setproctitle("resque: Starting")
        self._write_pidfile()
        try:
            if signals:  # before registering, as Ruby: a QUIT now still unregisters
                self._install_signals()
            self.startup()
            if self.metrics is not None:
                self.metrics.start()
            log.info("Starting %d worker(s) %s:%s:%s", len(self.workers), self.hostname, self.pid,
                     self.queues.id_field)
            fetcher = gevent.spawn(self.fetcher.run)
            watcher = gevent.spawn(self._watch_loop)
            monitor_hub(self.settings.hub_block_threshold, self.busy_jobs)
            for w in self.workers:
                w.greenlet = gevent.spawn(w.work)
            scaler = gevent.spawn(self.autoscaler.run) if self.autoscaler else None
            self._join_slots(scaler)
            self.fetcher.close()
            fetcher.join()
            if self.failure_notifier is not None and not self.failure_notifier.join(self.settings.term_timeout):
                log.warning("FAILURE_CALLBACK calls still running after %.1fs; not waiting for them",
                            self.settings.term_timeout)
            watcher.kill()
            for w in self.workers:
                crash = w.greenlet.exception if w.greenlet is not None else None
                if crash is not None and not isinstance(crash, TermException):
                    log.error("worker %s crashed: %r", w.id, crash)
                    self.exit_code = 1
        finally:
            self.shutdown()
            if self.metrics is not None:
                self.metrics.stop()  # after unregistering: /healthz says "shutting down" to the end
            self._remove_pidfile()
        every = self.workers + self.retired
        log.info("Exiting (processed %d job(s), %d failed, in %d reserve round trip(s))",
                 sum(w.processed for w in every), sum(w.failed for w in every), self.fetcher.round_trips)
        return self.exit_code

    def startup(self) -> None:
        """Ruby's order: HDEL heartbeats, prune, heartbeat, register (WIRE §6.7 Startup)."""
        self.store.clear_heartbeats(self.ids)
        pruned = prune_dead_workers(
            self.store, self.ids[0], self.queues, self.hostname,
            prune_interval=self.settings.effective_prune_interval,
            lock_ttl=self.settings.heartbeat_interval,
            now=self.clock,
            policy=dirty_exit_policy(self.settings),
        )
        if pruned:
            log.info("Pruned %d dead worker(s)", len(pruned))
        self.heartbeat.start()
        # Ruby's heartbeat thread beats before registration; wait (cooperatively) for it.
        deadline = self.clock() + 5
        while self.heartbeat.beats == 0 and self.clock() < deadline:
            gevent.sleep(0.001)  # start-up waits on this: poll finely (issue 17)
        hooks.run_worker_hook("on_start", self)  # Ruby's before_first_fork: before registering
        self.store.register_workers(self.ids, self._started_text())
        self.heartbeat.registered = True

    def shutdown(self) -> None:
        """Stop the heartbeat, then unregister every slot (DirtyExit for any job still held)."""
        self.heartbeat.stop()
        try:
            unregister_workers(self.store, self.ids, self.clock)
        except Exception:
            log.exception("could not unregister %d worker(s); a Ruby worker's pruning will "
                          "remove them once our heartbeats expire", len(self.ids))
            self.exit_code = self.exit_code or 1

    # -- slots (autoscaling adds and retires them; resque-web must always see the live set) -----
    def _new_worker(self, slot: int) -> Worker:
        return Worker(records.worker_id(self.hostname, self.pid, self.queues.include, str(slot)),
                      self.fetcher, self.settings.job_timeout, self.clock, self.metrics,
                      self.retry_suppression)

    def _join_slots(self, scaler: Optional[gevent.Greenlet]) -> None:
        """Wait for every slot, including ones the autoscaler adds meanwhile, to end."""
        while True:
            live = [w.greenlet for w in self.workers if w.greenlet is not None and not w.greenlet.dead]
            if live:
                gevent.joinall(live)
            elif scaler is not None and not scaler.dead and self.autoscaler is not None:
                self.autoscaler.stop()  # let it finish a step in progress, then look again
                scaler.join()
            else:
                return

    def add_slots(self, count: int) -> None:
        """Start ``count`` slots with the lowest free numbers: heartbeat + SADD + started in one
        MULTI first (Ruby's order), so resque-web never lists a slot that is not running."""
        if self.shutdown_requested.is_set() or count <= 0:
            return
        used = {w.id for w in self.workers}
        new = [w for w in (self._new_worker(n) for n in range(len(used) + count)) if w.id not in used][:count]
        self.workers = self.workers + new  # before the MULTI: a shutdown now unregisters them too
        self.ids = [w.id for w in self.workers]
        try:
            beat_at = codec.iso8601_local(self.store.server_time())
            self.store.register_workers([w.id for w in new], self._started_text(), beat=beat_at)
        finally:  # if Redis failed us, the heartbeat re-registers them once it is back
            self.heartbeat.replace_ids(self.ids)
            for w in new:
                w.greenlet = gevent.spawn(w.work)

    def retire_slots(self, count: int) -> None:
        """Retire up to ``count`` idle slots, highest numbers first (see Fetcher.retire)."""
        idle = [w for w in self.workers if w.job is None and w.id not in self._leaving]
        idle.sort(key=lambda w: int(w.id.rsplit(":", 1)[1]), reverse=True)
        chosen = [w.id for w in idle[:count]]
        self._leaving.update(chosen)
        self.fetcher.retire(chosen)

    def _slots_retired(self, ids: List[str]) -> None:
        """The fetcher let these slots go after their last job was recorded: stop beating for
        them, then Ruby's six-key unregister. On a Redis error they stay in ``self.ids``, so the
        shutdown unregisters them."""
        gone = set(ids)
        self.heartbeat.replace_ids([i for i in self.ids if i not in gone])
        try:
            self.store.unregister_workers(ids)
        except redis.RedisError as exc:
            log.warning("could not unregister %d retired slot(s) (%s); will at shutdown", len(ids), exc)
            return
        self.retired += [w for w in self.workers if w.id in gone]
        self.workers = [w for w in self.workers if w.id not in gone]
        self.ids = [w.id for w in self.workers]
        self._leaving -= gone

    # -- what the fetcher reports (FetcherEvents; called in the fetcher's greenlet) ------------
    def _jobs_taken(self, count: int) -> None:
        self._took_jobs = True
        if self.jobs_left is None:
            return
        self.jobs_left = max(0, self.jobs_left - count)
        if self.jobs_left == 0:
            self.recycle(f"MAX_JOBS={self.settings.max_jobs} reached")

    def _queues_empty(self) -> None:
        if self._took_jobs and self.fetcher.in_flight <= 0:
            self._took_jobs = False
            hooks.run_worker_hook("queue_empty", self)

    def _failures_recorded(self, entries: List[str]) -> None:
        if self.failure_notifier is not None:
            for entry in entries:
                self.failure_notifier(entry)

    def _reregister(self) -> None:
        """After a Redis outage: heartbeat now and re-register slots a restarted Redis lost;
        then /healthz reads Redis again at once rather than at the next metrics poll."""
        missing = beat(self.store, self.ids, self._started_text)
        if missing:
            log.warning("re-registered %d worker id(s) a restarted Redis had lost", missing)
        if self.metrics is not None:
            self.metrics.poll()

    def _started_text(self) -> str:
        return codec.time_to_s(self.clock())

    # -- signals (WIRE §6.1); handlers run in their own greenlet, never inside a raw handler --
    def _install_signals(self) -> None:
        gevent.signal_handler(signal.SIGQUIT, self.quit)
        gevent.signal_handler(signal.SIGTERM, self.terminate, "SIGTERM")
        gevent.signal_handler(signal.SIGINT, self.terminate, "SIGINT")
        gevent.signal_handler(signal.SIGUSR1, self.kill_jobs, "SIGUSR1")
        gevent.signal_handler(signal.SIGUSR2, self.pause)
        gevent.signal_handler(signal.SIGCONT, self.resume)

    def quit(self) -> None:
        """QUIT: take no new jobs, let every in-flight job finish, then exit 0."""
        log.info("QUIT received: finishing %d job(s), then exiting", self.busy_count())
        self._begin_shutdown()

    def terminate(self, name: str = "SIGTERM") -> None:
        """TERM/INT: no new jobs; in-flight jobs get RESQUE_TERM_TIMEOUT, then are killed and
        recorded as failures. A second signal does not shorten the grace period."""
        if self._term_timer is not None:
            log.info("%s received again: still waiting for in-flight jobs", name)
            return
        log.info("%s received: giving %d job(s) %.1fs to finish", name, self.busy_count(),
                 self.settings.term_timeout)
        self._begin_shutdown()
        self._term_timer = gevent.spawn_later(self.settings.term_timeout, self.kill_jobs, name)

    def kill_jobs(self, name: str = "SIGUSR1") -> None:
        """Stop every busy slot's job; each records it as a failure and the slot goes on. USR1
        is Ruby's child SIGKILLed (Resque::DirtyExit); TERM/INT after the grace period is
        TERM_CHILD's Resque::TermException."""
        killed = sum(w.kill_job(JobKilled(self.pid) if name == "SIGUSR1" else TermException(name))
                     for w in self.workers)
        if killed:
            log.warning("%s: killing %d in-flight job(s)", name, killed)

    def recycle(self, reason: str) -> None:
        """MAX_JOBS / MAX_MEMORY: stop taking jobs, finish in-flight ones, exit with code 3."""
        if self.shutdown_requested.is_set():
            return
        log.warning("%s: finishing %d job(s), then exiting with code %d to be restarted",
                    reason, self.busy_count(), EXIT_RECYCLE)
        self.exit_code = EXIT_RECYCLE
        if self.settings.supervisor_fd:  # under a pool: our replacement starts while we drain
            try:
                os.write(self.settings.supervisor_fd, b"recycling\n")
            except OSError as exc:
                log.warning("could not tell the pool supervisor we are recycling (%s)", exc)
        self._begin_shutdown()

    def _begin_shutdown(self) -> None:
        """Take no new jobs (QUIT, TERM, recycling): Ruby's on_shutdown hook, once per process
        whatever asked first, then stop the fetcher; in-flight jobs carry on."""
        if not self.shutdown_requested.is_set():
            hooks.run_worker_hook("on_shutdown", self)
        self.shutdown_requested.set()
        self.fetcher.stop()

    def pause(self) -> None:
        log.info("USR2 received: pausing (no new jobs until CONT)")
        hooks.run_worker_hook("before_pause", self)
        self.fetcher.set_paused(True)
        self._refresh_title()

    def resume(self) -> None:
        log.info("CONT received: resuming")
        self.fetcher.set_paused(False)
        self._refresh_title()
        hooks.run_worker_hook("after_pause", self)

    # -- process title (WIRE §6.4): must always match Ruby's ps rule [r]esque-[0-9] ------------
    def busy_count(self) -> int:
        return sum(1 for w in self.workers if w.job is not None)

    def title(self) -> str:
        if self.fetcher.paused or self.fetcher.redis_paused:
            return TITLE_PREFIX + "Paused"
        busy = [w for w in self.workers if w.job is not None]
        if not busy:
            return TITLE_PREFIX + "Waiting for " + ",".join(self.fetcher.current_queues)
        if len(self.workers) == 1:
            job = busy[0].job
            assert job is not None  # busy holds only slots with a job
            return f"{TITLE_PREFIX}Processing {job.queue} since {int(busy[0].job_started)} [{job.display_class}]"
        return f"{TITLE_PREFIX}Processing {len(busy)} of {len(self.workers)} jobs"

    def _refresh_title(self) -> None:
        text = self.title()
        if text != self._last_title:
            setproctitle(text)
            self._last_title = text

    def busy_jobs(self) -> List[str]:
        """``id: job`` for every busy slot (for the hub-block log line)."""
        return [f"{w.id} {w.job}" for w in self.workers if w.job is not None]

    def _watch_loop(self) -> None:
        while True:
            self._refresh_title()
            if self.settings.max_memory and rss_mb() >= self.settings.max_memory:
                self.recycle(f"MAX_MEMORY={self.settings.max_memory} MB reached ({rss_mb():.0f} MB)")
            gevent.sleep(WATCH_INTERVAL)

    # -- pidfile -------------------------------------------------------------------------------
    def _write_pidfile(self) -> None:
        if self.settings.pidfile:
            with open(self.settings.pidfile, "w") as fh:
                fh.write(f"{self.pid}\n")

    def _remove_pidfile(self) -> None:
        if self.settings.pidfile:
            try:
                os.unlink(self.settings.pidfile)
            except FileNotFoundError:
                pass

