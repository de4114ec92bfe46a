"""``resque-py failed``: list, show, retry, remove and clear failed jobs, as resque-web's Failed
page does, on either failure layout (redis, redis_multi_queue); plus triage: stable ids,
filters, newest first and bulk retry/remove (:mod:`resque_compat.triage`)."""
from __future__ import annotations

import json
import re
from itertools import islice
from typing import TYPE_CHECKING, Any, Callable, Optional

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
from resque_compat.wire.triage import FailureFilter, Ref, parse_when

if TYPE_CHECKING:  # triage loads redis; --help stays fast without it
    from resque_compat.triage import Triage


class _FailedContext:
    def __init__(self, parent: Context, backend: Optional[str]) -> None:
        self.parent = parent
        self.backend = backend

    def open(self) -> Failures:
        resque = connected_client(self.parent)
        return Failures(resque.redis, resque.keys, failure_backend(self.parent, self.backend))

    def triage(self) -> "Triage":
        from resque_compat.triage import Triage

        return Triage(self.open())


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
_FILTERS = [
    click.option("--class", "class_name", metavar="CLASS", default=None,
                 help="Only failures of this job class (for ActiveJob, the job's own class)."),
    click.option("--exception", metavar="NAME", default=None, help="Only this exception, e.g. Resque::DirtyExit."),
    click.option("--worker", metavar="ID", default=None, help="Only from this worker id, host:pid or host."),
    click.option("--since", metavar="WHEN", default=None,
                 help="failed_at at or after WHEN: an age (30m, 2h, 7d) or a time (2026-11-27T11:55Z)."),
    click.option("--until", "until_", metavar="WHEN", default=None, help="failed_at at or before WHEN."),
    click.option("--grep", metavar="REGEX", default=None, help="Only if the error text matches (ignoring case)."),
]


def _filter_options(func: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_FILTERS):
        func = option(func)
    return func


def _filter(queue: Optional[str], class_name: Optional[str], exception: Optional[str],
            worker: Optional[str], since: Optional[str], until_: Optional[str],
            grep: Optional[str]) -> FailureFilter:
    try:
        return FailureFilter(class_name, exception, queue, worker,
                             None if since is None else parse_when(since),
                             None if until_ is None else parse_when(until_),
                             None if grep is None else re.compile(grep, re.IGNORECASE))
    except re.error as exc:
        fail(f"--grep {grep!r} is not a regular expression ({exc})")
    except ValueError as exc:
        fail(str(exc))


def _ref(text: str) -> Ref:
    try:
        return Ref.parse(text)
    except ValueError as exc:
        fail(str(exc))


def _bulk(obj: _FailedContext, action: str, filt: FailureFilter, dry_run: bool, yes: bool) -> None:
    """Count first (dry run), ask, then act on what matches; exit 1 if some entry could not be."""
    triage = obj.triage()
    matched = triage.bulk(action, filt, dry_run=True).matched
    if dry_run or not matched:
        click.echo(f"{matched} failure(s) match; {'nothing done (dry run)' if matched else 'nothing to do'}")
        return
    if not yes:
        click.confirm(f"{action.capitalize()} {matched} failure(s)?", abort=True)
    report = triage.bulk(action, filt)
    verb = "retried" if action == "retry" else "removed"
    click.echo(f"{verb} {report.done} of {report.matched} matching failure(s)" +
               (f"; {report.gone} changed or removed by someone else meanwhile, left alone"
                if report.gone else ""))
    for problem in report.problems:
        click.echo(f"resque-py: not retried: {problem}", err=True)
    if report.problems:
        raise SystemExit(1)


@click.group()
@click.option("--backend", type=click.Choice(BACKENDS), default=None,
              help="Failure layout the workers write [env: FAILURE_BACKEND; default: redis].")
@click.pass_context
def failed(ctx: click.Context, backend: Optional[str]) -> None:
    """List, show, retry and remove failed jobs, as resque-web's Failed page does, plus
    filters and bulk actions.

    An entry is named by INDEX:ID: INDEX is its real position in the failure list (the ids in
    resque-web's links), ID a hash of its bytes; a command given both acts only if the entry
    at INDEX still has that ID.
    """
    ctx.obj = _FailedContext(ctx.obj, backend)


@failed.command("list")
@_QUEUE
@_filter_options
@click.option("--newest", is_flag=True, help="Newest first (resque-web's order) instead of oldest first.")
@click.option("--start", default=0, type=click.IntRange(0), show_default=True, help="Skip this many matches.")
@click.option("--count", "--limit", "count", default=20, type=click.IntRange(-1), show_default=True,
              help="How many (-1: all).")
@click.option("--json", "as_json", is_flag=True,
              help="Print {total, failures: [{ref, id, index, list, entry}]}.")
@click.pass_obj
def list_failures(obj: _FailedContext, queue: Optional[str], class_name: Optional[str],
                  exception: Optional[str], worker: Optional[str], since: Optional[str],
                  until_: Optional[str], grep: Optional[str], newest: bool, start: int, count: int,
                  as_json: bool) -> None:
    """List failures (oldest first, or --newest) with their refs: INDEX:ID, where ID is a hash
    of the entry that retry/remove/show check before acting."""
    filt = _filter(queue, class_name, exception, worker, since, until_, grep)
    triage = obj.triage()
    failures = triage.failures
    total = _run(failures.count, queue) if filt == FailureFilter(queue=queue) else _run(triage.count, filt)
    entries = list(islice(_run(triage.scan, filt, newest), start, None if count < 0 else start + count))
    shown = [e.failure for e in entries]
    if as_json:
        echo_json({"total": total, "failures": [e.as_json() for e in entries]})
        return
    headers = ["INDEX", "ID", "QUEUE", "FAILED AT", "CLASS", "EXCEPTION", "ERROR", "RETRIED AT"]
    rows = [[f.index, e.id, f.queue, f.get("failed_at"), job_class(f.payload), f.get("exception"),
             f.get("error") if f.data is not None else f"(not a JSON object) {f.raw}", f.get("retried_at")]
            for e, f in zip(entries, shown)]
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
@click.argument("ref", metavar="REF")
@_QUEUE
@click.option("--json", "as_json", is_flag=True, help="Print {ref, id, index, list, entry}.")
@click.pass_obj
def show(obj: _FailedContext, ref: str, queue: Optional[str], as_json: bool) -> None:
    """Show failure REF (INDEX:ID, ID or INDEX) in full: args, error and backtrace."""
    entry = _run(obj.triage().find, _ref(ref), queue)
    failure: Failure = entry.failure
    index = failure.index
    if as_json:
        echo_json(entry.as_json())
        return
    if failure.data is None:
        click.echo(f"{failure.list_name}[{index}] is not a JSON object:\n{failure.raw}")
        return
    for label, value in [("index", f"{failure.list_name}[{index}]"), ("ref", entry.ref), ("queue", failure.queue),
                         ("worker", failure.get("worker")), ("failed at", failure.get("failed_at")),
                         ("retried at", failure.get("retried_at")), ("class", job_class(failure.payload)),
                         ("args", json.dumps(failure.args, ensure_ascii=False)),
                         ("exception", failure.get("exception")), ("error", failure.get("error"))]:
        click.echo(f"{label + ':':<11} {'-' if value is None else value}")
    click.echo("backtrace:")
    for line in failure.get("backtrace") or []:
        click.echo(f"  {line}")


_DRY_RUN = click.option("--dry-run", is_flag=True, help="With filters: only count the matches.")
_YES = click.option("-y", "--yes", is_flag=True, help="With filters: do not ask first.")


@failed.command()
@click.argument("ref", metavar="[REF]", required=False)
@click.option("--all", "every", is_flag=True, help="Retry every failure (of --queue, if given).")
@_QUEUE
@_filter_options
@_DRY_RUN
@_YES
@click.pass_obj
def retry(obj: _FailedContext, ref: Optional[str], every: bool, queue: Optional[str],
          class_name: Optional[str], exception: Optional[str], worker: Optional[str],
          since: Optional[str], until_: Optional[str], grep: Optional[str], dry_run: bool,
          yes: bool) -> None:
    """Retry failure REF, --all, or every failure matching filters, as resque-web's Retry does.

    REF is INDEX:ID from `failed list` (refused if the list moved), the ID alone, or a bare
    INDEX (resque-web's semantics). The entry gets retried_at and stays in the list;
    {class, args} is pushed back to its queue.
    """
    filt = _filter(queue, class_name, exception, worker, since, until_, grep)
    bulk = filt != FailureFilter(queue=queue)
    if sum((ref is not None, every, bulk)) != 1:
        fail("give either a failure INDEX or --all (or INDEX:ID from `resque-py failed list`, "
             "checked before acting; or filters such as --class/--exception)")
    if bulk:
        _bulk(obj, "retry", filt, dry_run, yes)
        return
    if ref is not None:
        triage = obj.triage()
        entry = _run(triage.find, _ref(ref), queue)
        problem = _run(triage.retry, entry)
        if problem:
            fail(problem, 1)
        failure = _run(triage.failures.show, entry.failure.index, queue)
        click.echo(f"retried {failure.list_name}[{failure.index}]: {job_class(failure.payload)} back on "
                   f"{failure.queue} (retried_at {failure.get('retried_at')})")
        return
    failures = obj.open()
    report = _run(failures.requeue_queue, queue) if queue is not None else _run(failures.requeue_all)
    click.echo(f"retried {report.requeued} failure(s)")
    for problem in report.problems:
        click.echo(f"resque-py: not retried: {problem}", err=True)
    if report.problems:
        raise SystemExit(1)


@failed.command()
@click.argument("ref", metavar="[REF]", required=False)
@_QUEUE
@_filter_options
@_DRY_RUN
@_YES
@click.pass_obj
def remove(obj: _FailedContext, ref: Optional[str], queue: Optional[str], class_name: Optional[str],
           exception: Optional[str], worker: Optional[str], since: Optional[str],
           until_: Optional[str], grep: Optional[str], dry_run: bool, yes: bool) -> None:
    """Remove failure REF (INDEX:ID, ID or INDEX), or every failure matching filters.

    Later indexes move down by one per removal, as in resque-web; ids do not change.
    """
    filt = _filter(queue, class_name, exception, worker, since, until_, grep)
    if filt != FailureFilter(queue=queue):
        if ref is not None:
            fail("give either a failure REF or filters, not both")
        _bulk(obj, "remove", filt, dry_run, yes)
        return
    if ref is None:
        fail("give a failure REF (INDEX:ID from `resque-py failed list`) or filters such as --class")
    triage = obj.triage()
    entry = _run(triage.find, _ref(ref), queue)
    _run(triage.remove, entry)
    failure = entry.failure
    click.echo(f"removed {failure.list_name}[{failure.index}]: {job_class(failure.payload) or failure.raw[:CELL]}")


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
