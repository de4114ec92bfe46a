"""One scan of the installed distributions for gevent's plugin look-ups (issue 17 req 6).

gevent calls ``importlib.metadata.entry_points(group=...)`` around every module ``patch_all``
patches (26 calls) and again when its monitor thread starts, and each call reads every
installed distribution's metadata: about a tenth of the worker's start-up. Nothing is
installed while those calls run, so one scan can answer them all. Imports nothing but the
standard library: ``resque_compat.__main__`` uses it before gevent has patched anything.
"""
from __future__ import annotations

from contextlib import contextmanager
from importlib import metadata
from typing import Any, Iterator

_scanned: Any = None


@contextmanager
def one_scan() -> Iterator[None]:
    """Within the block, ``importlib.metadata.entry_points`` answers from one scan; the real
    function is back afterwards. The scan is kept for the next block: the runner's hub monitor
    asks again a moment later (7-10 ms a scan), and start-up installs nothing in between."""
    global _scanned
    scan = metadata.entry_points
    every = _scanned = _scanned if _scanned is not None else scan()
    # gevent passes group= on Python 3.10+ (EntryPoints.select) and nothing on 3.9 (a dict).
    metadata.entry_points = lambda **params: every.select(**params) if params else every  # type: ignore[assignment]
    try:
        yield
    finally:
        metadata.entry_points = scan
