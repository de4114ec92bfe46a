"""``python -m resque_compat`` and the ``resque-py`` console script: patch gevent, then run.

gevent must patch the standard library before redis, ssl or requests are imported, or sockets
created by them would block the whole process (and gevent warns about ssl).
"""
import os


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
    """``monkey.patch_all()``, with one scan of the installed distributions for gevent's
    plugin look-ups instead of 26 (resque_compat.common.plugin_scan)."""
    from gevent import monkey

    from resque_compat.common.plugin_scan import one_scan

    with one_scan():
        monkey.patch_all()


_reopen_standard_fds()
_patch_gevent()

import sys  # noqa: E402


def main() -> None:
    from resque_compat.cli.main import main as cli_main

    sys.exit(cli_main())


if __name__ == "__main__":
    main()
