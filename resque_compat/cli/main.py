"""``resque-py``: the command line. Parses arguments into Settings and makes one call.

Exit codes: 0 done; 1 a runtime error (Redis unreachable, a worker crashed); 2 a usage or
configuration error (bad setting, no queue, job module that does not import).
"""
from __future__ import annotations

from typing import Optional, Sequence

import click

from resque_compat.cli import (
    admin,
    doctor,
    failed,
    listen,
    pause,
    pool,
    queues,
    schedule,
    scheduler,
    work,
)
from resque_compat.cli.common import EPILOG, Context
from resque_compat.settings import DEFAULT_REDIS_URL
from resque_compat.version import RESQUE_VERSION, __version__


@click.group(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--redis", "redis_url", metavar="URL", default=None,
              help=f"Redis to use [env: REDIS_URL; default: {DEFAULT_REDIS_URL}]. "
                   "The path is the DB number, as in Ruby. Also rediss:// (TLS, ?ssl_ca_certs=PATH), "
                   "redis://user:password@host (ACL) and "
                   "redis+sentinel://host1:26379,host2:26379/SERVICE/DB (README: Scaling out).")
@click.option("--namespace", metavar="NS", default=None,
              help="Key prefix [env: RESQUE_NAMESPACE; default: resque], as Resque.redis.namespace.")
@click.pass_context
def main_group(ctx: click.Context, redis_url: Optional[str], namespace: Optional[str]) -> None:
    """Python workers and tools for Ruby Resque 3.0 queues (same Redis, same resque-web)."""
    ctx.obj = Context(redis_url, namespace)


@main_group.command()
def version() -> None:
    """Print our version and the Resque wire version we speak."""
    click.echo(f"resque-py {__version__} (Resque {RESQUE_VERSION} wire format)")


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        main_group.main(args=list(argv) if argv is not None else None, prog_name="resque-py",
                        standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


#: Every command of resque-py, one per line (each family's module defines its own).
COMMANDS = (
    work.work,
    queues.enqueue,
    queues.info,
    queues.queues,
    admin.workers,
    admin.remove_worker,
    admin.pause_all,
    admin.resume_all,
    pause.pause_queue,
    pause.resume_queue,
    failed.failed,
    scheduler.scheduler,
    schedule.schedule,
    pool.pool,
    listen.listen,
    doctor.doctor,
)
for command in COMMANDS:
    main_group.add_command(command)
