"""``python -m resque_compat`` and the ``resque-py`` console script: patch gevent, then run.

gevent must patch the standard library before redis, ssl or requests are imported, or sockets
created by them would block the whole process (and gevent warns about ssl).
"""
import os
from importlib import metadata


def _reopen_standard_fds() -> None:
    """Put ``/dev/null`` on fd 0, 1 or 2 if the process was started with it closed (``<&-``,
    some supervisors and CI runners).

    Why (issue 14, the start-up hang): otherwise the first Redis socket gets fd 0, and every
    child that gevent's ``subprocess`` forks without a ``stdin`` (``ps`` for Ruby's pruning)
    clears ``O_NONBLOCK`` on its inherited fd 0: the same open file as our socket, so the
    socket turns blocking and the next ``can_read`` on it sleeps in the kernel for ever.
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            os.open(os.devnull, os.O_RDWR)  # the lowest free number, which is ``fd``


def _patch_gevent() -> None:
    """``monkey.patch_all()`` with one scan of the installed distributions instead of 26.

    gevent asks ``importlib.metadata.entry_points(group=...)`` for plugins before and after
    patching each module, and each call reads every distribution's metadata: about a tenth of
    the worker's start-up (issue 17 req 6). The answers cannot change during the call, so one
    scan serves them all; the real function is put back afterwards.
    """
    from gevent import monkey

    scan = metadata.entry_points
    every = scan()
    # gevent passes group= on Python 3.10+ (EntryPoints.select) and nothing on 3.9 (a dict).
    metadata.entry_points = lambda **params: every.select(**params) if params else every  # type: ignore[assignment]
    try:
        monkey.patch_all()
    finally:
        metadata.entry_points = scan


_reopen_standard_fds()
_patch_gevent()

import sys  # noqa: E402


def main() -> None:
    from resque_compat.cli.main import main as cli_main

    sys.exit(cli_main())


if __name__ == "__main__":
    main()
