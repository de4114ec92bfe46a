"""Operator commands over the keys resque-web uses: workers, failed, remove-worker, pause-all,
resume-all, queues. Registered on :data:`cli.main_group`; every listing also has ``--json``.

Each command does what the matching resque-web button or ``bin/resque`` subcommand does
(WIRE §3.5 "What unregister writes", §4.5, §5.1), so Ruby and Python workers see the same result.
"""
from __future__ import annotations

import json
import os
import re
import socket
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

import click

from .cli import Context, _client, fail, main_group
from .errors import ConfigurationError, ResqueError
from .failures import BACKENDS, Failure, FailureLookupError, Failures
from .records import ParsedWorkerId
from .settings import connection_settings

if TYPE_CHECKING:  # redis and gevent load inside the commands, so `resque-py --help` stays fast
    from .store import Store

#: Longest text shown in one table cell; ``show`` and ``--json`` give the whole value.
CELL = 60


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns two spaces apart, one line per row (cells cut to :data:`CELL`)."""
    cells = [[cell_text(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip()
                     for line in [list(headers)] + cells)


def cell_text(value: Any) -> str:
    text = "-" if value is None else value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(text.split())  # one line per row, even for multi-line error messages
    return text if len(text) <= CELL else text[: CELL - 1] + "…"


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False))


def _backend(obj: Context, option: Optional[str]) -> str:
    """--backend, else FAILURE_BACKEND (as the workers were started), else redis."""
    try:
        return connection_settings({**obj.options, "failure_backend": option}).failure_backend
    except ConfigurationError as exc:
        fail(str(exc))


# -- workers ----------------------------------------------------------------------------------

_LEADING_INT = re.compile(r"^\d+")


def job_class(payload: Any) -> Optional[str]:
    """The class resque-web shows: ActiveJob's own class for a JobWrapper payload (WIRE §2.6)."""
    from .activejob import JOB_WRAPPER

    if not isinstance(payload, dict):
        return None
    name, args = payload.get("class"), payload.get("args")
    if name == JOB_WRAPPER and isinstance(args, list) and args and isinstance(args[0], dict) \
            and args[0].get("job_class"):
        return f"{args[0]['job_class']} (via ActiveJob)"
    return name if isinstance(name, str) else None


@dataclass
class WorkerRow:
    """One registered worker as resque-web's Workers page reads it; ``--json`` prints these
    fields. ``processing`` is None when idle."""

    id: str
    host: Optional[str]
    pid: Optional[int]
    queues: List[str]
    processing: Optional[Dict[str, Any]]
    started: Optional[str]
    heartbeat: Optional[str]
    heartbeat_age: Optional[int]  # seconds, by Redis TIME

    def cells(self) -> List[Any]:
        beat = self.heartbeat
        if beat is not None and self.heartbeat_age is not None:
            beat = f"{beat} ({self.heartbeat_age}s ago)"
        return [self.id, self.host, self.pid, ",".join(self.queues),
                _processing_text(self.processing), self.started, beat]


def worker_rows(store: Store) -> List[WorkerRow]:
    """Every registered worker, in id order, from one round trip."""
    from .heartbeat import parse_heartbeat

    ids = store.worker_ids()
    jobs, started, beats, now = store.worker_details(ids)
    rows = []
    for wid, raw_job, raw_started in zip(ids, jobs, started):
        parsed = ParsedWorkerId.parse(wid)
        pid = _LEADING_INT.match(parsed.pid) if parsed else None
        beat = beats.get(wid)
        beat_time = parse_heartbeat(beat) if beat else None
        rows.append(WorkerRow(
            id=wid,
            host=parsed.host if parsed else None,
            pid=int(pid.group(0)) if pid else None,  # Ruby's to_i: node-resque's 4242+3 is 4242
            queues=list(parsed.queues) if parsed else [],
            processing=_processing(raw_job),
            started=raw_started.decode("utf-8", "replace") if raw_started is not None else None,
            heartbeat=beat,
            heartbeat_age=int(now - beat_time) if beat_time is not None else None,
        ))
    return rows


def _processing(raw: Optional[bytes]) -> Optional[Dict[str, Any]]:
    """None when idle. resque-web counts a worker as working whenever ``worker:<id>`` exists."""
    from .heartbeat import held_job

    if not raw:
        return None
    record = held_job(raw)
    if record is None or "queue" not in record:
        return {"queue": None, "run_at": None, "class": None, "payload": None,
                "raw": raw.decode("utf-8", "replace")}
    payload = record.get("payload")
    return {"queue": record.get("queue"), "run_at": record.get("run_at"),
            "class": job_class(payload), "payload": payload}


def _processing_text(job: Optional[Dict[str, Any]]) -> str:
    if job is None:
        return "idle"
    if job.get("raw") is not None:
        return "working (job record unreadable)"
    return f"{job['class'] or 'No Name'} ({job['queue']}) since {job['run_at']}"


@main_group.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array, one object per worker.")
@click.pass_obj
def workers(obj: Context, as_json: bool) -> None:
    """List registered workers, Ruby and Python, with their jobs and heartbeats."""
    rows = worker_rows(_client(obj).store)
    if as_json:
        echo_json([asdict(w) for w in rows])
        return
    click.echo(table(["ID", "HOST", "PID", "QUEUES", "PROCESSING", "STARTED", "HEARTBEAT"],
                     [w.cells() for w in rows]))
    busy = sum(1 for w in rows if w.processing is not None)
    click.echo(f"{busy} of {len(rows)} worker(s) working")


@main_group.command("remove-worker")
@click.argument("worker_id", metavar="ID")
@click.pass_obj
def remove_worker(obj: Context, worker_id: str) -> None:
    """Unregister worker ID as Ruby's Resque.remove_worker does.

    A job it still held is recorded as a Resque::DirtyExit failure ("Job still being
    processed"), then its registration, started time, heartbeat and stats are deleted.
    """
    from .heartbeat import unregister_workers
    from .store import Store

    resque = _client(obj)
    store = Store(resque.redis, resque.keys, _backend(obj, None))
    if not store.registered([worker_id])[0]:
        fail(f"no worker {worker_id!r} is registered; `resque-py workers` lists the ids")
    held = unregister_workers(store, [worker_id], time.time)
    record = held[0] if held else None
    click.echo(f"removed worker {worker_id}")
    if record is not None:
        click.echo(f"its job {job_class(record.get('payload')) or 'No Name'} was recorded as a "
                   "Resque::DirtyExit failure")
    _warn_if_alive(worker_id)


def _warn_if_alive(worker_id: str) -> None:
    parsed = ParsedWorkerId.parse(worker_id)
    if parsed is None or parsed.host != socket.gethostname() or not parsed.pid.isdigit():
        return
    try:
        os.kill(int(parsed.pid), 0)
    except ProcessLookupError:
        return
    except PermissionError:
        pass  # someone else's process, but alive
    click.echo(f"note: process {parsed.pid} is still running; a resque-py worker re-registers "
               f"at its next heartbeat. Stop it with: kill -QUIT {parsed.pid}", err=True)


# -- pause-all / resume-all -----------------------------------------------------------------------

@main_group.command()
@click.pass_obj
def pause_all(obj: Context) -> None:
    """Pause every worker, Ruby and Python (SET pause-all-workers true).

    Each finishes its current job and takes no new one until resume-all; all stay registered.
    """
    resque = _client(obj)
    resque.store.set_pause_all(True)
    click.echo(f"paused: {resque.keys.strip(resque.keys.pause_all_workers)} is set; workers "
               "finish their current job and take no new one until `resque-py resume-all`")


@main_group.command()
@click.pass_obj
def resume_all(obj: Context) -> None:
    """Let every worker take jobs again (DEL pause-all-workers)."""
    resque = _client(obj)
    resque.store.set_pause_all(False)
    click.echo(f"resumed: {resque.keys.strip(resque.keys.pause_all_workers)} is deleted")


# -- queues ---------------------------------------------------------------------------------------

@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of {name, size}.")
@click.option("--clear", "clear", metavar="NAME", multiple=True,
              help="Drop every job waiting in queue NAME, keeping the queue listed; repeatable.")
@click.option("--remove", "remove", metavar="NAME", multiple=True,
              help="Drop the jobs and the queue's name too (resque-web's Remove Queue); repeatable.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask before dropping jobs.")
@click.pass_obj
def queues(obj: Context, as_json: bool, clear: Sequence[str], remove: Sequence[str], yes: bool) -> None:
    """List queues with their sizes (resque-web's Queues page), or clear / remove queues."""
    resque = _client(obj)
    if clear or remove:
        names = ", ".join([*clear, *remove])
        if not yes:
            click.confirm(f"Drop every job waiting in {names}?", abort=True)
        for name in clear:
            click.echo(f"cleared {name}: {resque.store.clear_queue(name)} job(s) dropped")
        for name in remove:
            size = resque.size(name)
            resque.remove_queue(name)
            click.echo(f"removed {name}: {size} job(s) dropped")
        return
    sizes = [(name, resque.size(name)) for name in resque.queues()]
    if as_json:
        echo_json([{"name": name, "size": size} for name, size in sizes])
        return
    for name, size in sizes:
        click.echo(f"{name}\t{size}")


main_group.add_command(queues)


# -- failed ---------------------------------------------------------------------------------------

class _FailedContext:
    def __init__(self, parent: Context, backend: Optional[str]) -> None:
        self.parent = parent
        self.backend = backend

    def open(self) -> Failures:
        resque = _client(self.parent)
        return Failures(resque.redis, resque.keys, _backend(self.parent, self.backend))


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


@main_group.group()
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
