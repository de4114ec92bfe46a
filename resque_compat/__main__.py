"""``python -m resque_compat`` and the ``resque-py`` console script: patch gevent, then run.

gevent must patch the standard library before redis, ssl or requests are imported, or sockets
created by them would block the whole process (and gevent warns about ssl).
"""


def _patch_gevent() -> None:
    """``monkey.patch_all()``, with one scan of the installed distributions for gevent's
    plugin look-ups instead of 26 (resque_compat.common.plugin_scan)."""
    from gevent import monkey

    from resque_compat.common.plugin_scan import one_scan

    with one_scan():
        monkey.patch_all()


_patch_gevent()

import sys  # noqa: E402


def main() -> None:
    from resque_compat.cli.main import main as cli_main

    sys.exit(cli_main())


if __name__ == "__main__":
    main()
