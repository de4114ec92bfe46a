"""Watches on the whole OS process, not on any one job: its memory (MAX_MEMORY) and a gevent hub
that a job keeps from switching (HUB_BLOCK_THRESHOLD)."""
from __future__ import annotations

import logging
import os
import time
import warnings
from typing import Any, Callable, Dict, List

from resque_compat.common.plugin_scan import one_scan

log = logging.getLogger("resque_compat.runner")  # the logger name operators already filter on


def rss_mb() -> float:
    """Resident set size of this process in MB (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


class _HubTurns:
    """When the hub last ran a greenlet: one stamper per process, as gevent's monitor is."""

    def __init__(self) -> None:
        self.last = time.monotonic()
        self.every = 0.25  # seconds between stamps; monitor_hub sets HUB_BLOCK_THRESHOLD / 4
        self.stamper: Any = None

    def stamp(self) -> None:
        import gevent

        while True:
            self.last = time.monotonic()
            gevent.sleep(self.every)


_hub_turns = _HubTurns()


def monitor_hub(threshold: float, running: Callable[[], List[str]]) -> None:
    """Have gevent's monitor thread report a hub blocked for ``threshold`` seconds (a CPU loop or
    a C call in a job), and log which jobs were running. Heartbeats are unaffected: they run
    in their own OS thread."""
    if threshold <= 0:
        return
    import gevent.events
    import zope.event

    # gevent reports once per period while one greenlet keeps the hub, each time with only the
    # threshold; measure the whole episode so the log says how long the job really blocked.
    episode: Dict[str, Any] = {"greenlet": None, "since": 0.0, "last": 0.0}
    # The monitor thread needs the GIL that a CPU-bound job holds, so its first report can come
    # seconds into the block (seen on a 2-core AMD VM) and would then say "0.5s so far". A
    # greenlet stamps the hub's last turn, so the episode starts no later than the block did.
    _hub_turns.every = threshold / 4
    if _hub_turns.stamper is None:
        _hub_turns.stamper = gevent.spawn(_hub_turns.stamp)

    def on_event(event: object) -> None:
        if not isinstance(event, gevent.events.EventLoopBlocked):
            return
        now = time.monotonic()
        if event.greenlet is not episode["greenlet"] or now - episode["last"] > 3 * threshold:
            blocked_since = min(now - event.blocking_time, _hub_turns.last + _hub_turns.every)
            episode.update(greenlet=event.greenlet, since=blocked_since)
        episode["last"] = now
        log.warning("gevent hub blocked for %.1fs so far (HUB_BLOCK_THRESHOLD=%gs); running: %s",
                    now - episode["since"], threshold, "; ".join(running()) or "no job")

    gevent.config.monitor_thread = True
    gevent.config.max_blocking_time = threshold
    zope.event.subscribers.append(on_event)
    with one_scan(), warnings.catch_warnings():  # gevent looks for plugins again here
        # gevent's own memory watch needs psutil, which is not one of our dependencies: without
        # it gevent warns "Install psutil" at every start. MAX_MEMORY does not use it (rss_mb).
        warnings.filterwarnings("ignore", message="Unable to monitor memory usage")
        gevent.get_hub().start_periodic_monitoring_thread()
