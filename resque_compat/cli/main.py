"""``resque-py``: the command line. Parses arguments into Settings and makes one call.

Exit codes: 0 done; 1 a runtime error (Redis unreachable, a worker crashed); 2 a usage or
configuration error (bad setting, no queue, job module that does not import).
"""
from __future__ import annotations

import difflib
import importlib
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

import click

from resque_compat.cli.common import EPILOG, Context
from resque_compat.settings import DEFAULT_REDIS_URL
from resque_compat.version import RESQUE_VERSION, __version__

#: Every command of resque-py and the module that defines it (each family has its own). A
#: command's module is imported when that command is looked up, so ``resque-py work`` does not
#: load the triage, scheduler, pool, listen and doctor code before its first job (issue 17).
COMMANDS: Dict[str, Tuple[str, str]] = {
    "work": ("work", "work"),
    "enqueue": ("queues", "enqueue"),
    "info": ("queues", "info"),
    "queues": ("queues", "queues"),
    "workers": ("admin", "workers"),
    "remove-worker": ("admin", "remove_worker"),
    "pause-all": ("admin", "pause_all"),
    "resume-all": ("admin", "resume_all"),
    "pause-queue": ("pause", "pause_queue"),
    "resume-queue": ("pause", "resume_queue"),
    "failed": ("failed", "failed"),
    "scheduler": ("scheduler", "scheduler"),
    "schedule": ("schedule", "schedule"),
    "pool": ("pool", "pool"),
    "listen": ("listen", "listen"),
    "doctor": ("doctor", "doctor"),
}


class _Group(click.Group):
    """click's group, loading each command on first use (:data:`COMMANDS`), plus "did you
    mean" for a mistyped command (``resque-py wrok``)."""

    def list_commands(self, ctx: click.Context) -> List[str]:
        return sorted({*self.commands, *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> Optional[click.Command]:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module, attr = COMMANDS[cmd_name]
            command = getattr(importlib.import_module(f"resque_compat.cli.{module}"), attr)
            _accept_global_options(command)  # each subcommand takes the global options too
            self.add_command(command, cmd_name)
        return self.commands.get(cmd_name)

    def resolve_command(self, ctx: click.Context, args: List[str]) -> Tuple[Any, Any, List[str]]:
        name = click.utils.make_str(args[0]) if args else ""
        if args and self.get_command(ctx, name) is None and not ctx.resilient_parsing:
            close = difflib.get_close_matches(name, self.list_commands(ctx), n=2, cutoff=0.6)
            if close:
                ctx.fail(f"No such command {name!r}. Did you mean {' or '.join(close)}?")
        return super().resolve_command(ctx, args)


_VERSION = f"resque-py {__version__} (Resque {RESQUE_VERSION} wire format)"


@click.group(cls=_Group, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", message=_VERSION)
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
    click.echo(_VERSION)


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        code = main_group.main(args=list(argv) if argv is not None else None, prog_name="resque-py",
                               standalone_mode=False)
    except click.UsageError as exc:
        # One line, as our own errors are (click prints usage, a hint and the error on four).
        path = exc.ctx.command_path if exc.ctx is not None else "resque-py"
        click.echo(f"resque-py: {exc.format_message()} (see {path} --help)", err=True)
        return exc.exit_code
    except click.ClickException as exc:
        click.echo(f"resque-py: {exc.format_message()}", err=True)
        return exc.exit_code
    except click.Abort:
        click.echo("resque-py: aborted", err=True)
        return 1
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except Exception as exc:
        # Redis failing after a command's first PING (a timeout mid-command): one line, not a
        # traceback. Looked up, not imported: --help must not load redis.
        redis = sys.modules.get("redis")
        if redis is None or not isinstance(exc, redis.RedisError):
            raise
        click.echo(f"resque-py: Redis failed: {exc}; check --redis / REDIS_URL and try again", err=True)
        return 1
    return code if type(code) is int else 0  # ctx.exit(N) gives N; a command's return value is not a code

def _global_option(name: str, key: str, metavar: str, env: str) -> click.Option:
    """``--redis``/``--namespace`` on a subcommand: the same setting as before the subcommand,
    so ``resque-py work --redis URL`` works as README's settings table says."""
    def remember(ctx: click.Context, param: click.Parameter, value: Optional[str]) -> None:
        if value is not None:
            obj = ctx.find_object(Context)
            if obj is not None:
                obj.options[key] = value

    return click.Option([name], metavar=metavar, expose_value=False, is_eager=True, callback=remember,
                        help=f"Same as `resque-py {name} {metavar} COMMAND` [env: {env}].")


def _accept_global_options(command: click.Command) -> None:
    names = {opt for p in command.params for opt in getattr(p, "opts", ())}
    for name, key, metavar, env in (("--redis", "redis_url", "URL", "REDIS_URL"),
                                    ("--namespace", "namespace", "NS", "RESQUE_NAMESPACE")):
        if name not in names:
            command.params.append(_global_option(name, key, metavar, env))
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _accept_global_options(sub)


# `version` is defined here, not in COMMANDS: it takes the global options like the others.
_accept_global_options(version)
