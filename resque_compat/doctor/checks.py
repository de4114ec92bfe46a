"""The doctor's checks: one pass over the keyspace with SCAN, returning :class:`Finding` s.

Memory: values are fetched :data:`~resque_compat.store.survey.BATCH` keys at a time. What is
kept whole is sized by the fleet, not by the data: the ``workers`` ids, the heartbeat fields
and the queue names (plus the findings themselves).
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from typing import Callable, Dict, Iterable, List, Optional, Set, Tuple

from resque_compat.runtime.pruning import resque_pids
from resque_compat.store.survey import BATCH, Survey
from resque_compat.wire import health
from resque_compat.wire.codec import parse_heartbeat
from resque_compat.wire.keys import Keys
from resque_compat.wire.queues import fnmatch_ruby
from resque_compat.wire.records import ParsedWorkerId

CRITICAL, WARNING, INFO = "critical", "warning", "info"
#: More failures than this and the doctor warns: each one is kept in Redis memory forever.
FAILED_WARN = 10_000
#: Ruby's ``Resque.prune_interval`` default (WIRE §3.6).
RUBY_PRUNE_INTERVAL = 300.0
#: Findings kept per check; the rest are counted in one summary finding, so a keyspace with a
#: million orphaned keys still gives a bounded report (``--fix`` repeats until none are left).
MAX_PER_CHECK = 1000


@dataclass
class Finding:
    """One problem: how bad, where (``key``, plus ``subject``: the worker id, heartbeat field
    or queue it concerns), what breaks, and what to do. ``fixable``: ``--fix`` repairs it."""

    check: str
    severity: str
    key: str
    breaks: str
    fix: str
    fixable: bool = False
    subject: str = ""

    def as_json(self) -> dict:
        return asdict(self)


def pid_alive(pid: int) -> bool:
    """True if a process with this pid exists on this host (signal 0 probes without sending)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by another user
    return True


class Doctor:
    """Reads one namespace and reports findings (see README "Operating a mixed fleet")."""

    def __init__(self, survey: Survey, *, hostname: str, prune_interval: float = RUBY_PRUNE_INTERVAL,
                 clock_tolerance: float = 60.0, scheduler_lock_prefix: str = "",
                 failure_lists: Callable[[], Iterable[str]] = lambda: (),
                 clock: Callable[[], float] = time.time,
                 alive: Callable[[int], bool] = pid_alive,
                 ps_pids: Callable[[], List[str]] = resque_pids) -> None:
        self.survey = survey
        self.keys: Keys = survey.keys
        self.hostname = hostname
        self.prune_interval = prune_interval
        self.clock_tolerance = clock_tolerance
        self.lock_key = self.keys.scheduler_master_lock(scheduler_lock_prefix)
        self.failure_lists = failure_lists
        self.clock = clock
        self.alive = alive
        self.ps_pids = ps_pids
        self.findings: List[Finding] = []
        self._ps: Optional[List[str]] = None
        self._counts: Dict[str, Tuple[int, str]] = {}

    def add(self, check: str, severity: str, key: str, breaks: str, fix: str,
            fixable: bool = False, subject: str = "") -> None:
        seen, _ = self._counts.get(check, (0, severity))
        self._counts[check] = (seen + 1, severity)
        if seen < MAX_PER_CHECK:
            self.findings.append(Finding(check, severity, key, breaks, fix, fixable, subject))

    def _summarise_overflow(self) -> None:
        for check, (seen, severity) in sorted(self._counts.items()):
            if seen > MAX_PER_CHECK:
                self.findings.append(Finding(
                    check, severity, "", f"{seen - MAX_PER_CHECK} more {check} finding(s) not listed",
                    f"fix the {MAX_PER_CHECK} listed ones, then run the doctor again"))

    def examine(self) -> List[Finding]:
        """Every check, in a stable order; returns (and keeps) the findings."""
        self.findings, self._counts = [], {}
        now = self.survey.server_time()
        self.check_server(now)
        workers = set(self.survey.workers())
        ghosts = self.check_workers(workers)
        beats = self.check_heartbeats(workers, now, ghosts)
        for wid in sorted(workers - set(beats) - ghosts):
            parsed = ParsedWorkerId.parse(wid)
            if parsed is not None and parsed.host != self.hostname:
                self.add("no_heartbeat", WARNING, self.keys.heartbeats,
                         f"{wid} has no heartbeat, so Ruby never prunes it: if host {parsed.host} "
                         "is gone it stays registered (and 'working' if it held a job) forever",
                         f"if {parsed.host} is gone: resque-py remove-worker '{wid}'", subject=wid)
        queues = self.scan_keyspace(workers)
        self.check_queues(queues, workers - ghosts)
        self.check_scheduler_lock()
        self.check_pruning_lock()
        self.check_pauses()
        self.check_failed()
        self._summarise_overflow()
        return self.findings

    # -- the server ---------------------------------------------------------------------------
    def check_server(self, redis_now: float) -> None:
        skew = self.clock() - redis_now
        if abs(skew) > self.clock_tolerance:
            self.add("clock_skew", WARNING, "TIME",
                     f"this host's clock is {skew:+.0f}s off Redis TIME (tolerance "
                     f"{self.clock_tolerance:g}s): failed_at, run_at and enqueued_at written here "
                     "disagree with the heartbeats, and queue latency is misread",
                     "run NTP (chrony/systemd-timesyncd) on this host and the Redis host")
        config = self.survey.config("maxmemory-policy", "save", "appendonly")
        if config is None:
            self.add("config_unreadable", WARNING, "CONFIG",
                     "CONFIG GET is refused, so eviction and persistence could not be checked",
                     "check maxmemory-policy=noeviction and persistence in your provider's console")
            return
        policy = config.get("maxmemory-policy", "noeviction")
        if policy != "noeviction":
            self.add("maxmemory_policy", CRITICAL, "CONFIG maxmemory-policy",
                     f"maxmemory-policy is {policy}: when Redis fills up it silently evicts "
                     "queued jobs, workers and failures",
                     "CONFIG SET maxmemory-policy noeviction (and in redis.conf), then CONFIG REWRITE")
        if not config.get("save", "").strip() and config.get("appendonly", "no") == "no":
            self.add("no_persistence", CRITICAL, "CONFIG save/appendonly",
                     "neither RDB snapshots nor AOF are on: a Redis restart loses every queue",
                     "CONFIG SET appendonly yes (or a save schedule), then CONFIG REWRITE")

    # -- workers ------------------------------------------------------------------------------
    def check_workers(self, workers: Set[str]) -> Set[str]:
        """Malformed ids, and same-host ids whose pid is dead or whose title Ruby's ps grep
        misses. Returns the ids known dead (ghosts)."""
        ghosts: Set[str] = set()
        for wid in sorted(workers):
            problem = health.worker_id_problem(wid)
            if problem is not None:
                self.add("bad_worker_id", CRITICAL, self.keys.workers, f"{wid!r}: {problem}",
                         "--fix unregisters it as Ruby would (a DirtyExit failure for any job it held)",
                         True, wid)
                ghosts.add(wid)
                continue
            parsed = ParsedWorkerId.parse(wid)
            if parsed is None or parsed.host != self.hostname:
                continue
            problem = health.pid_problem(parsed.pid)
            if problem is not None:
                self.add("pid_not_exact", CRITICAL, self.keys.workers, f"{wid}: {problem}",
                         "start the worker with a plain pid in its id (resque-py does)", False, wid)
                continue
            if not self.alive(int(parsed.pid)):
                self.add("ghost_dead_pid", WARNING, self.keys.worker(wid),
                         f"{wid}: pid {parsed.pid} is not running on this host, yet the worker is "
                         "registered (resque-web shows it; a held job looks 'working' forever)",
                         "--fix prunes it as Ruby's pruner does (DirtyExit for a held job)", True, wid)
                ghosts.add(wid)
            elif parsed.pid not in self._local_resque_pids():
                self.add("title_not_recognised", CRITICAL, self.keys.worker(wid),
                         f"{wid}: pid {parsed.pid} is alive but its process title does not match "
                         "Ruby's ps grep (resque:work / resque-<version>), so the next Ruby worker "
                         "starting on this host unregisters it while it runs",
                         "set the title, e.g. setproctitle('resque-3.0.0: Waiting for <queues>')",
                         False, wid)
        return ghosts

    def _local_resque_pids(self) -> List[str]:
        if self._ps is None:
            self._ps = self.ps_pids()
        return self._ps

    def check_heartbeats(self, workers: Set[str], now: float, ghosts: Set[str]) -> Dict[str, float]:
        """Bad field names and values, and expired heartbeats. Returns field -> age."""
        ages: Dict[str, float] = {}
        key = self.keys.heartbeats
        for field, value in self.survey.heartbeats():
            problem = health.worker_id_problem(field)
            if problem is not None:
                self.add("bad_heartbeat_field", CRITICAL, key, f"field {field!r}: {problem}",
                         "--fix deletes the field", True, field)
                continue
            problem = health.heartbeat_value_problem(value, parse_heartbeat(value))
            if problem is not None:
                self.add("bad_heartbeat", CRITICAL, key, f"{field}: {problem}",
                         "--fix deletes the field (a live resque-py worker writes a good one at "
                         "its next beat)", True, field)
                continue
            age = now - (parse_heartbeat(value) or now)
            ages[field] = age
            if age > self.prune_interval and field not in ghosts:
                self.add("ghost_expired_heartbeat", WARNING, key,
                         f"{field}: heartbeat {age:.0f}s old (Ruby prunes after "
                         f"{self.prune_interval:g}s, but only when a Ruby worker starts)",
                         "--fix prunes it as Ruby does (PruneDeadWorkerDirtyExit for a held job)",
                         True, field)
                ghosts.add(field)
        return ages

    # -- the keyspace -------------------------------------------------------------------------
    def scan_keyspace(self, workers: Set[str]) -> Set[str]:
        """One SCAN: worker records, started and per-worker stat keys; returns queue names."""
        queues: Set[str] = set(self.survey.queue_names())
        pending: List[Tuple[str, str, str]] = []
        for key in self.survey.scan_keys():
            kind, name = self.keys.classify(key)
            if kind == "queue":
                queues.add(name)
            elif kind in ("worker", "started", "worker_stat"):
                pending.append((key, kind, name))
                if len(pending) >= BATCH:
                    self._check_worker_keys(pending, workers)
                    pending = []
            elif kind == "paused_queue":
                self.add("paused_queue", WARNING, key,
                         f"queue {name} is paused (resque-pause): Ruby workers with the plugin skip it",
                         f"resque-pause unpause, or DEL {key}", subject=name)
        if pending:
            self._check_worker_keys(pending, workers)
        return queues

    def _check_worker_keys(self, batch: List[Tuple[str, str, str]], workers: Set[str]) -> None:
        for (key, kind, wid), (rtype, value) in zip(batch, self.survey.values([b[0] for b in batch])):
            if rtype == "none":
                continue  # gone since the SCAN saw it
            registered = wid in workers
            if rtype != "string":
                job_slot = kind == "worker"  # may hold a job in some foreign shape: never deleted
                self.add("wrong_type", CRITICAL, key,
                         f"a {rtype} where Resque keeps a string: resque-web's pages that read it "
                         "return 500 (WRONGTYPE)",
                         f"inspect it (TYPE, DUMP) and DEL {key} by hand" if job_slot
                         else f"--fix deletes {key}", not job_slot, wid)
                continue
            if kind == "worker":
                self._check_record(key, wid, value or b"", registered)
            elif not registered:
                what = "started time" if kind == "started" else "stat counter"
                self.add("orphan_" + kind, WARNING, key,
                         f"a {what} of worker {wid}, which is not registered: Ruby's unregister "
                         "deletes it, so it only wastes memory and misleads /stats/keys",
                         f"--fix deletes {key}", True, wid)

    def _check_record(self, key: str, wid: str, value: bytes, registered: bool) -> None:
        problem = health.worker_record_problem(value)
        if problem is not None:
            self.add("bad_worker_record", CRITICAL, key, f"{wid}: {problem}",
                     "--fix moves the value into a DirtyExit failure entry (nothing is lost) and "
                     "deletes the key", True, wid)
        elif not registered:
            held = value not in (b"", b"{}")
            self.add("orphan_worker", WARNING, key,
                     f"{wid} is not registered but its worker:<id> key remains"
                     + (": the job it held is in no queue and no failure list" if held else ""),
                     "--fix records the held job as a DirtyExit failure, as Ruby's unregister "
                     "does, and deletes the key", True, wid)

    # -- queues, locks, pauses, failures ------------------------------------------------------
    def check_queues(self, queues: Set[str], live: Set[str]) -> None:
        names = sorted(queues)
        patterns: Set[str] = set()
        for wid in live:
            parsed = ParsedWorkerId.parse(wid)
            if parsed is not None:
                patterns.update(parsed.queues)
        for start in range(0, len(names), BATCH):
            chunk = names[start:start + BATCH]
            for name, size in zip(chunk, self.survey.lengths([self.keys.queue(q) for q in chunk])):
                if size and not any(fnmatch_ruby(p, name) for p in patterns):
                    self.add("unwatched_queue", WARNING, self.keys.queue(name),
                             f"{size} job(s) wait in {name} and no registered worker (Ruby or "
                             "Python) lists it, so nothing will take them",
                             f"start a worker with QUEUE={name} (or a pattern matching it)",
                             subject=name)

    def check_scheduler_lock(self) -> None:
        value, ttl = self.survey.get_with_ttl(self.lock_key)
        if value is None:
            return
        host, _, pid = value.rpartition(":")
        if host == self.hostname and pid.isdigit() and not self.alive(int(pid)):
            self.add("dead_scheduler_lock", WARNING, self.lock_key,
                     f"the scheduler lock is held by {value}, which is not running: no scheduler "
                     f"enqueues delayed or recurring jobs for up to {ttl}s more",
                     "--fix deletes the lock if it still names that process", True, value)
        else:
            self.add("scheduler_lock", INFO, self.lock_key,
                     f"scheduler leader: {value} (lock expires in {ttl}s unless renewed)",
                     "nothing to do", subject=value)

    def check_pruning_lock(self) -> None:
        # Ruby takes it with SET NX EX (60 s, or the heartbeat interval); one that lost its
        # expiry (a snapshot restored without TTLs, a hand-made copy) is never released.
        value, ttl = self.survey.get_with_ttl(self.keys.pruning_lock)
        if value is not None and ttl == -1:
            self.add("pruning_lock_without_ttl", CRITICAL, self.keys.pruning_lock,
                     f"Ruby's pruning lock (held by {value}) has no expiry: while it exists no Ruby "
                     "or resque-py worker prunes dead workers, which stay listed with their jobs "
                     "shown as running",
                     "--fix deletes the lock if it still holds that value", True, value)

    def check_pauses(self) -> None:
        (_, core), (_, plugin) = self.survey.values([self.keys.pause_all_workers, self.keys.pause_all])
        if core is not None and health.paused_value(core.decode("utf-8", errors="replace")):
            self.add("pause_all_workers", WARNING, self.keys.pause_all_workers,
                     "every Ruby and resque-py worker is paused: no job is taken",
                     "resque-py resume-all when the pause is over")
        if plugin is not None:
            self.add("pause_all", WARNING, self.keys.pause_all,
                     "resque-pause's global pause is on: Ruby workers with the plugin take no job",
                     f"ResquePauseHelper.global_unpause, or DEL {self.keys.pause_all}")

    def check_failed(self) -> None:
        lists = list(self.failure_lists())
        total = sum(self.survey.lengths(lists))
        if total > FAILED_WARN:
            self.add("failed_size", WARNING, ",".join(lists),
                     f"{total} failures are kept in Redis memory and page slowly in resque-web",
                     "triage them: resque-py failed list --newest, then failed retry/remove with filters")
        else:
            self.add("failed_size", INFO, ",".join(lists), f"{total} failure(s)", "nothing to do")


def exit_code(findings: Iterable[Finding]) -> int:
    """3 when something breaks Ruby or resque-web or can lose jobs, else 0."""
    return 3 if any(f.severity == CRITICAL for f in findings) else 0
