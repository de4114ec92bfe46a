"""``resque-py failed``: list, show, retry, remove and clear failed jobs, as resque-web's Failed
page does, on either failure layout (redis, redis_multi_queue)."""
from __future__ import annotations

import json
from typing import Any, Optional

import click

from resque_compat.cli.admin import job_class
from resque_compat.cli.common import (
    CELL,
    Context,
    connected_client,
    echo_json,
    fail,
    failure_backend,
    table,
)
from resque_compat.errors import ResqueError
from resque_compat.failures import BACKENDS, Failure, FailureLookupError, Failures


class _FailedContext:
    def __init__(self, parent: Context, backend: Optional[str]) -> None:
        self.parent = parent
        self.backend = backend

    def open(self) -> Failures:
        resque = connected_client(self.parent)
        return Failures(resque.redis, resque.keys, failure_backend(self.parent, self.backend))


def _run(action: Any, *args: Any) -> Any:
    """Run a Failures operation; errors become one ``resque-py: ...`` line (2: bad index or
    --queue, 1: an entry that cannot be retried)."""
    try:
        return action(*args)
    except FailureLookupError as exc:
        fail(str(exc))
    except ResqueError as exc:
        fail(str(exc), 1)


_QUEUE = click.option("--queue", "-q", metavar="Q", default=None,
                      help="Job queue; picks its failure list with redis_multi_queue.")


@click.group()
@click.option("--backend", type=click.Choice(BACKENDS), default=None,
              help="Failure layout the workers write [env: FAILURE_BACKEND; default: redis].")
@click.pass_context
def failed(ctx: click.Context, backend: Optional[str]) -> None:
    """List, show, retry and remove failed jobs, as resque-web's Failed page does.

    Indexes are real positions in the failure list, the ids in resque-web's links.
    """
    ctx.obj = _FailedContext(ctx.obj, backend)


@failed.command("list")
@_QUEUE
@click.option("--start", default=0, type=click.IntRange(0), show_default=True, help="First failure to show.")
@click.option("--count", default=20, type=click.IntRange(-1), show_default=True, help="How many (-1: all).")
@click.option("--json", "as_json", is_flag=True, help="Print {total, failures: [{index, list, entry}]}.")
@click.pass_obj
def list_failures(obj: _FailedContext, queue: Optional[str], start: int, count: int, as_json: bool) -> None:
    """List failures, oldest first, with their indexes."""
    failures = obj.open()
    total = _run(failures.count, queue)
    shown = _run(failures.list, start, count, queue)
    if as_json:
        echo_json({"total": total, "failures": [f.as_json() for f in shown]})
        return
    headers = ["INDEX", "QUEUE", "FAILED AT", "CLASS", "EXCEPTION", "ERROR", "RETRIED AT"]
    rows = [[f.index, f.queue, f.get("failed_at"), job_class(f.payload), f.get("exception"),
             f.get("error") if f.data is not None else f"(not a JSON object) {f.raw}", f.get("retried_at")]
            for f in shown]
    if failures.multi:
        headers.insert(1, "LIST")
        for row, f in zip(rows, shown):
            row.insert(1, f.list_name)
    click.echo(table(headers, rows))
    click.echo(f"{len(shown)} of {total} failure(s) shown" + (
        f", from #{start}" if start else "") + ("; use --start/--count for more" if len(shown) < total else ""))
    if total == 0 and not failures.multi and Failures(failures.redis, failures.keys, "redis_multi_queue").list_keys():
        click.echo("note: failures exist in per-queue lists; use --backend redis_multi_queue "
                   "(or FAILURE_BACKEND=redis_multi_queue)", err=True)


@failed.command()
@click.argument("index", type=click.IntRange(0))
@_QUEUE
@click.option("--json", "as_json", is_flag=True, help="Print {index, list, entry}.")
@click.pass_obj
def show(obj: _FailedContext, index: int, queue: Optional[str], as_json: bool) -> None:
    """Show failure INDEX in full: args, error and backtrace."""
    failure: Failure = _run(obj.open().show, index, queue)
    if as_json:
        echo_json(failure.as_json())
        return
    if failure.data is None:
        click.echo(f"{failure.list_name}[{index}] is not a JSON object:\n{failure.raw}")
        return
    for label, value in [("index", f"{failure.list_name}[{index}]"), ("queue", failure.queue),
                         ("worker", failure.get("worker")), ("failed at", failure.get("failed_at")),
                         ("retried at", failure.get("retried_at")), ("class", job_class(failure.payload)),
                         ("args", json.dumps(failure.args, ensure_ascii=False)),
                         ("exception", failure.get("exception")), ("error", failure.get("error"))]:
        click.echo(f"{label + ':':<11} {'-' if value is None else value}")
    click.echo("backtrace:")
    for line in failure.get("backtrace") or []:
        click.echo(f"  {line}")


@failed.command()
@click.argument("index", type=click.IntRange(0), required=False)
@click.option("--all", "every", is_flag=True, help="Retry every failure (of --queue, if given).")
@_QUEUE
@click.pass_obj
def retry(obj: _FailedContext, index: Optional[int], every: bool, queue: Optional[str]) -> None:
    """Retry failure INDEX (or --all) as resque-web's Retry does.

    The entry gets retried_at and stays in the list; {class, args} is pushed back to its queue.
    """
    if (index is None) == (not every):
        fail("give either a failure INDEX or --all (see `resque-py failed list`)")
    failures = obj.open()
    if index is not None:
        retried_at = _run(failures.requeue, index, queue)
        failure = _run(failures.show, index, queue)
        click.echo(f"retried {failure.list_name}[{index}]: {job_class(failure.payload)} back on "
                   f"{failure.queue} (retried_at {retried_at})")
        return
    report = _run(failures.requeue_queue, queue) if queue is not None else _run(failures.requeue_all)
    click.echo(f"retried {report.requeued} failure(s)")
    for problem in report.problems:
        click.echo(f"resque-py: not retried: {problem}", err=True)
    if report.problems:
        raise SystemExit(1)


@failed.command()
@click.argument("index", type=click.IntRange(0))
@_QUEUE
@click.pass_obj
def remove(obj: _FailedContext, index: int, queue: Optional[str]) -> None:
    """Remove failure INDEX (later indexes move down by one, as in resque-web)."""
    failures = obj.open()
    failure: Failure = _run(failures.show, index, queue)
    _run(failures.remove, index, queue)
    click.echo(f"removed {failure.list_name}[{index}]: {job_class(failure.payload) or failure.raw[:CELL]}")


@failed.command()
@_QUEUE
@click.option("--retried", is_flag=True, help="Only failures already retried (resque-web's Clear Retried).")
@click.option("-y", "--yes", is_flag=True, help="Do not ask first.")
@click.pass_obj
def clear(obj: _FailedContext, queue: Optional[str], retried: bool, yes: bool) -> None:
    """Delete failures: all of them, those of --queue, or only --retried ones."""
    failures = obj.open()
    if retried:
        if queue is not None:
            fail("--retried clears retried failures of every queue; leave out --queue")
        click.echo(f"cleared {_run(failures.clear_retried)} retried failure(s)")
        return
    if not yes:
        click.confirm(f"Delete {_run(failures.count, queue)} failure(s)"
                      f"{' of ' + queue if queue else ''}?", abort=True)
    click.echo(f"cleared {_run(failures.clear, queue)} failure(s)")
