"""``python -m resque_compat`` and the ``resque-py`` console script: patch gevent, then run.

gevent must patch the standard library before redis, ssl or requests are imported, or sockets
created by them would block the whole process (and gevent warns about ssl).
"""
from importlib import metadata


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


_patch_gevent()

import sys  # noqa: E402


def main() -> None:
    from resque_compat.cli.main import main as cli_main

    sys.exit(cli_main())


if __name__ == "__main__":
    main()
