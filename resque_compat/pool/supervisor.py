"""The process pool: one supervisor keeping N ``resque-py work`` processes running (issue 7).

``resque-py pool --config config/resque-pool.yml`` (groups from resque-pool's YAML, see
:mod:`pool_config`) and ``resque-py work ... PROCESSES=N`` (one group of N) both end here. Each
child is a complete worker process with its own FIBERS greenlets, Redis, MySQL and HTTP pools,
its own pid (so its own worker ids in resque-web) and its own core.

**Why fork + exec (subprocess) and not a bare fork.** The ``resque-py`` entry point patches
gevent before it parses the command line, so this process is a gevent process by the time it
knows PROCESSES. A child made by ``os.fork`` alone would inherit the hub, the libev loop, any
threads and sockets in whatever state they were in at that instant: exactly the "fork after the
hub exists" that gevent and redis-py warn about. Exec replaces all of it: each child is a fresh
interpreter that patches first and builds its own hub, i.e. the same ``resque-py work`` an
operator starts by hand, on the same tested code path. The cost is an interpreter start per
child (about half a second, at start-up, recycle and crash only) and no copy-on-write sharing,
which resque-pool gets from preloading Rails and a Python worker would gain little from. The
supervisor itself only waits: one greenlet per child blocks in ``Popen.wait``, and signal
handlers only queue the signal; the loop below does the work.

**Signals** (resque-pool's set): QUIT, TERM and INT are forwarded with Resque's meaning (QUIT:
finish jobs; TERM/INT: RESQUE_TERM_TIMEOUT grace) and the supervisor exits once every child has;
USR1, USR2 and CONT are forwarded (a child started while paused is paused too); HUP re-reads the
configuration, starts and stops children to match, and replaces children whose group changed
(QUIT to the old ones, their replacements start at once). A signal reaches a child only once
the child catches it (Linux: SigCgt in /proc), because the default action of QUIT, TERM, USR1
and USR2 kills a process that is still importing.

**Restarts.** A child recycled by MAX_JOBS / MAX_MEMORY says so on a pipe
(RESQUE_SUPERVISOR_FD) as it starts draining, and its replacement starts right then, so the
pool never runs a process short; one that exits with :data:`runner.EXIT_RECYCLE` without
having said so is replaced at once. One that crashes (any other exit we did not ask for) is restarted after a
back-off that doubles per consecutive crash (0.5 s up to 30 s; a child that ran 30 s counts as a
fresh start). One that exits 2 (configuration error: a bad -r module, an unknown setting) is not
restarted, since it would fail the same way: fix it and send HUP. With INTERVAL=0 a child that
drained its queues (exit 0) is not replaced, and the supervisor ends with the last one.

With METRICS_PORT, child number ``i`` (the lowest number free when it starts, so a replacement
takes its predecessor's) serves ``/metrics`` on METRICS_PORT + i: a port takes one process.

Children run in their own process group (a terminal's Ctrl-C reaches only the supervisor, which
forwards one INT), and on Linux they get QUIT if the supervisor dies (resque-pool's "workers
watch the pool master"). The process title, ``resque-pool-py: managing N processes [pids]``,
cannot match Ruby's pruning pattern ``[r]esque-[0-9]``; it would not matter if it did, since no
worker id carries the supervisor's pid.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import gevent
import redis
from gevent.event import Event
from gevent.os import make_nonblocking, nb_read
from setproctitle import setproctitle

from resque_compat.errors import ConfigurationError
from resque_compat.pool.config import Group
from resque_compat.runtime.pruning import dirty_exit_policy, unregister_dead_process
from resque_compat.runtime.runner import EXIT_RECYCLE
from resque_compat.settings import Settings
from resque_compat.store.store import Store, connect
from resque_compat.wire.keys import Keys

log = logging.getLogger("resque_compat.supervisor")

#: ``resque-py work``'s exit code for a usage or configuration error (cli.fail).
EXIT_USAGE = 2
#: Restart back-off after a crash: first delay, cap, and the run time after which a crash no
#: longer counts as consecutive.
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
STABLE_AFTER = 30.0
#: A child that has not installed its handlers this long after starting gets its signals anyway.
HOLD_LIMIT = 10.0
STOP_SIGNALS = (signal.SIGQUIT, signal.SIGTERM, signal.SIGINT)
FORWARDED = STOP_SIGNALS + (signal.SIGUSR1, signal.SIGUSR2, signal.SIGCONT)
_PR_SET_PDEATHSIG = 1


class WorkCommand:
    """The argv of one child: ``python -m resque_compat [GLOBAL] work [ARGS] --queue Q --fibers F
    --processes 1 --pidfile ''``. The options come last so they beat the same settings given as
    words or in the environment (which children inherit)."""

    def __init__(self, global_args: Sequence[str], work_args: Sequence[str], fibers: str,
                 metrics_port: int = 0) -> None:
        self.global_args = list(global_args)
        self.work_args = list(work_args)
        self.fibers = fibers  # the pool's FIBERS, for groups that do not set their own
        self.metrics_port = metrics_port

    def argv(self, group: Group, index: int = 0, notice_fd: int = 0) -> List[str]:
        """``index`` is the child's number among those running (lowest free); with METRICS_PORT
        child ``index`` serves on METRICS_PORT + index, since one port takes one process.
        ``notice_fd`` is the pipe on which it says it is recycling."""
        port = ["--metrics-port", str(self.metrics_port + index)] if self.metrics_port else []
        notice = [f"RESQUE_SUPERVISOR_FD={notice_fd}"] if notice_fd else []
        return [sys.executable, "-m", "resque_compat", *self.global_args, "work", *self.work_args,
                *notice, "--queue", group.queues, "--fibers", group.fibers or self.fibers,
                "--processes", "1", "--pidfile", "", *port]


@dataclass
class Child:
    group: Group
    proc: subprocess.Popen
    started: float
    index: int
    stopping: bool = False  # asked to stop, or recycling: never restarted
    held: List[int] = field(default_factory=list)  # signals it does not catch yet

    @property
    def pid(self) -> int:
        return self.proc.pid


class Supervisor:
    """Keeps ``groups`` (``{Group: count}``) running; :meth:`run` returns the exit code.

    ``reload`` re-reads the configuration on HUP (None: nothing to re-read); ``drain`` is
    INTERVAL=0, where a child that exits 0 has finished and is not replaced.
    """

    def __init__(self, command: WorkCommand, groups: Dict[Group, int], *,
                 reload: Optional[Callable[[], Dict[Group, int]]] = None, drain: bool = False,
                 pidfile: Optional[str] = None,
                 unregister_dead: Optional[Callable[[int], None]] = None) -> None:
        self.command = command
        #: Called with the pid of every child that exits, before its replacement starts.
        self.unregister_dead = unregister_dead
        self.configured = dict(groups)
        self.wanted = dict(groups)  # configured, less groups given up on until the next HUP
        self.reload = reload
        self.drain = drain
        self.pidfile = pidfile
        self.children: List[Child] = []
        self.stopping = False
        self.paused = False
        self.gave_up = False
        self._signals: List[int] = []
        self._wake = Event()
        self._crashes: Dict[Group, int] = {}
        self._not_before: Dict[Group, float] = {}
        self._title = ""

    # -- the loop --------------------------------------------------------------------------------
    def run(self) -> int:
        self._write_pidfile()
        for sig in FORWARDED + (signal.SIGHUP,):
            gevent.signal_handler(sig, self._queue_signal, sig)
        log.info("pool: supervising %s", describe(self.wanted) or "no processes")
        try:
            while True:
                self._handle_signals()
                for child in [c for c in self.children if c.proc.poll() is not None]:
                    self._exited(child, child.proc.returncode)
                if not self.stopping:
                    self._maintain()
                self._deliver_held()
                self._refresh_title()
                # Nothing left to run: stopped, drained, or every process failed its configuration
                # (an empty file after HUP is different: the pool waits for the next HUP).
                finished = not any(self.wanted.values()) and (self.drain or self.gave_up)
                if not self.children and (self.stopping or finished):
                    break
                self._wake.wait(self._next_wake())
                self._wake.clear()
        finally:
            self._remove_pidfile()
        code = EXIT_USAGE if self.gave_up and not self.stopping else 0
        log.info("pool: every worker process has exited; supervisor exiting (%d)", code)
        return code

    def _next_wake(self) -> float:
        if any(c.held for c in self.children):
            return 0.05
        due = [t - time.monotonic() for t in self._not_before.values()]
        return max(0.01, min(due + [1.0]))

    def _queue_signal(self, sig: int) -> None:
        self._signals.append(sig)  # acted on in the loop, never inside the handler
        self._wake.set()

    def _handle_signals(self) -> None:
        while self._signals:
            sig = self._signals.pop(0)
            name = signal.Signals(sig).name
            if sig == signal.SIGHUP:
                self._reconfigure()
                continue
            if sig in STOP_SIGNALS:
                if not self.stopping:
                    log.info("pool: %s received: stopping %d worker process(es), then exiting",
                             name, len(self.children))
                self.stopping = True
            elif sig in (signal.SIGUSR2, signal.SIGCONT):
                self.paused = sig == signal.SIGUSR2
            log.info("pool: sending %s to %d worker process(es)", name, len(self.children))
            for child in self.children:
                child.stopping = child.stopping or sig in STOP_SIGNALS
                child.held.append(sig)

    # -- children --------------------------------------------------------------------------------
    def _maintain(self) -> None:
        """Start missing children (after any back-off) and QUIT surplus ones, per group."""
        now = time.monotonic()
        for group in list(self.wanted) + [c.group for c in self.children if c.group not in self.wanted]:
            want = self.wanted.get(group, 0)
            active = [c for c in self.children if c.group == group and not c.stopping]
            for child in active[want:]:  # the newest go first
                log.info("pool: stopping worker process %d (%s) with QUIT", child.pid, label(group))
                child.stopping = True
                child.held.append(signal.SIGQUIT)
            if len(active) < want and now >= self._not_before.get(group, 0.0):
                self._not_before.pop(group, None)
                for _ in range(want - len(active)):
                    self._start(group)

    def _start(self, group: Group) -> None:
        used = {c.index for c in self.children}
        index = next(i for i in range(len(used) + 1) if i not in used)
        notice, notice_w = os.pipe()
        try:
            proc = subprocess.Popen(self.command.argv(group, index, notice_w), pass_fds=(notice_w,),
                                    preexec_fn=_in_child(os.getpid()))
        except OSError as exc:
            os.close(notice)
            log.error("pool: cannot start a worker process for %s (%s)", label(group), exc)
            self._back_off(group, 0.0)
            return
        finally:
            os.close(notice_w)  # the child's copy alone keeps it open: EOF when it exits
        child = Child(group, proc, time.monotonic(), index)
        if self.paused:
            child.held.append(signal.SIGUSR2)  # as paused as its siblings
        self.children.append(child)
        gevent.spawn(self._await_exit, child)
        gevent.spawn(self._await_notice, child, notice)
        log.info("pool: started worker process %d (%s)", child.pid, label(group))

    def _await_exit(self, child: Child) -> None:
        child.proc.wait()
        self._wake.set()

    def _await_notice(self, child: Child, fd: int) -> None:
        """MAX_JOBS / MAX_MEMORY: the child writes "recycling" when it starts draining, so its
        replacement starts now instead of after its last job and its exit (no gap)."""
        try:
            make_nonblocking(fd)
            while True:
                data = nb_read(fd, 64)
                if not data:  # EOF: the child exited
                    return
                if b"recycling" in data and not child.stopping and not self.stopping:
                    log.info("pool: worker process %d (%s) is recycling itself (MAX_JOBS/MAX_MEMORY); "
                             "starting its replacement now", child.pid, label(child.group))
                    child.stopping = True
                    self._wake.set()
        finally:
            os.close(fd)

    def _exited(self, child: Child, code: int) -> None:
        self.children.remove(child)
        if self.unregister_dead is not None:
            self.unregister_dead(child.pid)
        ran = time.monotonic() - child.started
        how = f"exited with code {code}" if code >= 0 else f"was killed by {signal.Signals(-code).name}"
        if child.stopping or self.stopping:
            log.info("pool: worker process %d (%s) %s", child.pid, label(child.group), how)
        elif code == EXIT_RECYCLE:
            log.info("pool: worker process %d (%s) recycled itself (MAX_JOBS/MAX_MEMORY); "
                     "starting its replacement", child.pid, label(child.group))
        elif code == 0 and self.drain:
            log.info("pool: worker process %d (%s) drained its queues", child.pid, label(child.group))
            self.wanted[child.group] -= 1
        elif code == EXIT_USAGE:
            log.error("pool: worker process %d (%s) exited with a configuration error (code 2, see "
                      "its output above); not restarting it: fix the problem, then send HUP",
                      child.pid, label(child.group))
            self.wanted[child.group] -= 1
            self.gave_up = True
        else:
            delay = self._back_off(child.group, ran)
            log.warning("pool: worker process %d (%s) %s after %.1fs; restarting it in %.1fs",
                        child.pid, label(child.group), how, ran, delay)

    def _back_off(self, group: Group, ran: float) -> float:
        crashes = 1 if ran >= STABLE_AFTER else self._crashes.get(group, 0) + 1
        self._crashes[group] = crashes
        delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (crashes - 1))
        self._not_before[group] = time.monotonic() + delay
        return delay

    def _deliver_held(self) -> None:
        now = time.monotonic()
        for child in self.children:
            while child.held:
                sig = child.held[0]
                if not catches(child.pid, sig) and now - child.started < HOLD_LIMIT:
                    break  # still starting: the default action would kill it
                try:
                    os.kill(child.pid, sig)
                except ProcessLookupError:
                    pass
                child.held.pop(0)

    def _reconfigure(self) -> None:
        """HUP: re-read the configuration; :meth:`_maintain` then starts and stops children."""
        if self.reload is None:
            log.info("pool: HUP received; nothing to reload (PROCESSES=%d, no configuration file)",
                     sum(self.configured.values()))
        else:
            try:
                self.configured = self.reload()
            except ConfigurationError as exc:
                log.error("pool: HUP received, but %s; keeping the running configuration", exc)
                return
            log.info("pool: HUP received; configuration now %s", describe(self.configured) or "empty")
        self.wanted = dict(self.configured)
        self._crashes.clear()
        self._not_before.clear()
        self.gave_up = False

    # -- process title and pidfile ---------------------------------------------------------------
    def _refresh_title(self) -> None:
        pids = ", ".join(str(c.pid) for c in self.children)
        title = f"resque-pool-py: managing {len(self.children)} processes [{pids}]"
        if self.stopping:
            title = f"resque-pool-py: stopping, waiting for {len(self.children)} processes [{pids}]"
        if title != self._title:
            setproctitle(title)
            self._title = title

    def _write_pidfile(self) -> None:
        if self.pidfile:
            with open(self.pidfile, "w") as fh:
                fh.write(f"{os.getpid()}\n")

    def _remove_pidfile(self) -> None:
        if self.pidfile:
            try:
                os.unlink(self.pidfile)
            except FileNotFoundError:
                pass


def dead_child_cleaner(settings: Settings) -> Callable[[int], None]:
    """Issue 14, requirement 3: a child that exited leaves no worker id behind. An exited
    process owns nothing, so whatever of its ids is still registered (kill -9, the OOM killer)
    is unregistered at once, with Ruby's unregister and DIRTY_EXIT for the jobs they held, and
    without Ruby's pruning lock, which a sibling may hold for a minute."""
    store = Store(connect(settings.redis_url, max_connections=1), Keys(settings.namespace),
                  settings.failure_backend)
    hostname = settings.hostname or socket.gethostname()
    policy = dirty_exit_policy(settings)

    def unregister(pid: int) -> None:
        try:
            ids = unregister_dead_process(store, hostname, pid, policy, time.time)
        except redis.RedisError as exc:
            log.warning("pool: could not unregister the worker ids of exited process %d (%s); "
                        "Ruby's pruning will remove them", pid, exc)
            return
        if ids:
            log.info("pool: unregistered %d worker id(s) of exited process %d", len(ids), pid)
    return unregister


def catches(pid: int, sig: int) -> bool:
    """Whether process ``pid`` has a handler for ``sig`` (Linux SigCgt); True where unknown."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    except (OSError, ValueError):
        pass
    return True


def _in_child(parent: int) -> Callable[[], None]:
    """Runs in each child between fork and exec: own process group, QUIT when we die."""
    prctl = None
    if sys.platform.startswith("linux"):
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl

    def setup() -> None:
        os.setpgrp()
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, int(signal.SIGQUIT))
            if os.getppid() != parent:  # the supervisor died before prctl took effect
                os._exit(1)
    return setup


def label(group: Group) -> str:
    return f"QUEUE={group.queues}" + (f" FIBERS={group.fibers}" if group.fibers else "")


def describe(groups: Dict[Group, int]) -> str:
    return ", ".join(f"{n} x {label(g)}" for g, n in groups.items() if n)
