"""``python -m resque_compat`` and the ``resque-py`` console script: patch gevent, then run.

gevent must patch the standard library before redis, ssl or requests are imported, or sockets
created by them would block the whole process (and gevent warns about ssl).
"""
from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402


def main() -> None:
    from resque_compat.cli.main import main as cli_main

    sys.exit(cli_main())


if __name__ == "__main__":
    main()
