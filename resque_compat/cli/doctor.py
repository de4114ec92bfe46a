"""``resque-py doctor``: check a shared Resque keyspace (mixed Ruby/Python fleets)."""
from __future__ import annotations

import socket
import time
from typing import List, Optional

import click

from resque_compat.cli.common import Context, connected_client, echo_json, failure_backend
from resque_compat.failures import BACKENDS

#: --fix repairs what one pass lists (at most MAX_PER_CHECK per check), checks again, and
#: repeats while it still finds something to repair, up to this many passes.
FIX_ROUNDS = 20

_EPILOG = """\b
Exit codes: 0 healthy (warnings allowed); 3 something breaks Ruby workers or resque-web, or
can lose jobs (a critical finding; after --fix, one that is still there); 1 Redis unreachable.
"""


@click.command(epilog=_EPILOG)
@click.option("--json", "as_json", is_flag=True, help="Print {findings: [...], fixed: [...], exit}.")
@click.option("--fix", is_flag=True, help="Apply the safe repairs (Ruby's own rules; no job is ever "
                                          "deleted) and print what was done.")
@click.option("--hostname", default=None, metavar="NAME",
              help="This host's name in worker ids (default: the real one); only ids of this "
                   "host are checked for dead pids and process titles.")
@click.option("--prune-interval", default=300.0, show_default=True, type=click.FloatRange(1),
              help="Heartbeat age after which a worker counts as dead (Ruby's Resque.prune_interval).")
@click.option("--clock-tolerance", default=60.0, show_default=True, type=click.FloatRange(0),
              help="Largest accepted difference between this host's clock and Redis TIME "
                   "(one heartbeat interval).")
@click.option("--scheduler-lock-prefix", default="", metavar="PREFIX",
              help="RESQUE_SCHEDULER_MASTER_LOCK_PREFIX of your resque-scheduler, if any.")
@click.option("--backend", type=click.Choice(BACKENDS), default=None,
              help="Failure layout the workers write [env: FAILURE_BACKEND; default: redis].")
@click.pass_obj
def doctor(obj: Context, as_json: bool, fix: bool, hostname: Optional[str], prune_interval: float,
           clock_tolerance: float, scheduler_lock_prefix: str, backend: Optional[str]) -> None:
    """Check the Resque keyspace for what breaks Ruby workers or resque-web or loses jobs.

    Reads everything with SCAN (bounded memory). Each finding has a severity, the key, what
    breaks and the fix. See README "Operating a mixed fleet".
    """
    from resque_compat.doctor.checks import Doctor, exit_code
    from resque_compat.doctor.repair import Repairer
    from resque_compat.failures import Failures
    from resque_compat.store.store import Store
    from resque_compat.store.survey import Survey

    resque = connected_client(obj)
    layout = failure_backend(obj, backend)
    failures = Failures(resque.redis, resque.keys, layout)
    survey = Survey(resque.redis, resque.keys)
    checker = Doctor(survey, hostname=hostname or socket.gethostname(), prune_interval=prune_interval,
                     clock_tolerance=clock_tolerance, scheduler_lock_prefix=scheduler_lock_prefix,
                     failure_lists=failures.list_keys)
    findings = checker.examine()
    fixed: List[str] = []
    for _round in range(FIX_ROUNDS if fix else 0):
        done = Repairer(checker, Store(resque.redis, resque.keys, layout), time.time).run(findings)
        if not done:
            break
        fixed += done
        findings = checker.examine()  # what is left is what the exit code is about
    code = exit_code(findings)
    if as_json:
        echo_json({"findings": [f.as_json() for f in findings], "fixed": fixed, "exit": code})
    else:
        for line in fixed:
            click.echo(f"fixed: {line}")
        for f in findings:
            click.echo(f"{f.severity.upper():8} {f.check}  {f.key}\n         {f.breaks}\n"
                       f"         fix: {f.fix}")
        bad = sum(f.severity == "critical" for f in findings)
        click.echo(f"{len(findings)} finding(s), {bad} critical" + ("" if bad else ": healthy"))
    raise SystemExit(code)
