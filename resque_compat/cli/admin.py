"""Operator commands over the keys resque-web uses: workers, remove-worker, pause-all,
resume-all. Added to the group by ``cli/main.py``; every listing also has ``--json``.

Each command does what the matching resque-web button or ``bin/resque`` subcommand does
(WIRE §3.5 "What unregister writes", §4.5, §5.1), so Ruby and Python workers see the same result.
"""
from __future__ import annotations

import os
import re
import socket
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Optional

import click

from resque_compat.cli.common import (
    Context,
    connected_client,
    echo_json,
    fail,
    failure_backend,
    table,
)
from resque_compat.wire import codec, records
from resque_compat.wire.records import ParsedWorkerId

if TYPE_CHECKING:  # redis and gevent load inside the commands, so `resque-py --help` stays fast
    from resque_compat.store.store import Store

# -- workers ----------------------------------------------------------------------------------

_LEADING_INT = re.compile(r"^\d+")
_DIGITS = re.compile(r"(\d+)")


def natural_key(text: str) -> List[Any]:
    """Sort key putting slot 2 before slot 10 (and pid 999 before 1000): digit runs as numbers."""
    return [int(part) if i % 2 else part for i, part in enumerate(_DIGITS.split(text))]


def job_class(payload: Any) -> Optional[str]:
    """The class resque-web shows: ActiveJob's own class for a JobWrapper payload (WIRE §2.6)."""
    from resque_compat.activejob import JOB_WRAPPER

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
    """Every registered worker, in natural id order (slot 2 before 10), from one round trip."""
    ids = sorted(store.worker_ids(), key=natural_key)
    jobs, started, beats, now = store.worker_details(ids)
    rows = []
    for wid, raw_job, raw_started in zip(ids, jobs, started):
        parsed = ParsedWorkerId.parse(wid)
        pid = _LEADING_INT.match(parsed.pid) if parsed else None
        beat = beats.get(wid)
        beat_time = codec.parse_heartbeat(beat) if beat else None
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

    if not raw:
        return None
    record = records.held_job(raw)
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


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array, one object per worker.")
@click.pass_obj
def workers(obj: Context, as_json: bool) -> None:
    """List registered workers, Ruby and Python, with their jobs and heartbeats."""
    rows = worker_rows(connected_client(obj).store)
    if as_json:
        echo_json([asdict(w) for w in rows])
        return
    click.echo(table(["ID", "HOST", "PID", "QUEUES", "PROCESSING", "STARTED", "HEARTBEAT"],
                     [w.cells() for w in rows]))
    busy = sum(1 for w in rows if w.processing is not None)
    click.echo(f"{busy} of {len(rows)} worker(s) working")


@click.command("remove-worker")
@click.argument("worker_id", metavar="ID")
@click.pass_obj
def remove_worker(obj: Context, worker_id: str) -> None:
    """Unregister worker ID as Ruby's Resque.remove_worker does.

    A job it still held is recorded as a Resque::DirtyExit failure ("Job still being
    processed"), then its registration, started time, heartbeat and stats are deleted.
    """
    from resque_compat.runtime.pruning import unregister_workers
    from resque_compat.store.store import Store

    resque = connected_client(obj)
    store = Store(resque.redis, resque.keys, failure_backend(obj, None))
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

@click.command()
@click.pass_obj
def pause_all(obj: Context) -> None:
    """Pause every worker, Ruby and Python (SET pause-all-workers true).

    Each finishes its current job and takes no new one until resume-all; all stay registered.
    """
    resque = connected_client(obj)
    resque.store.set_pause_all(True)
    click.echo(f"paused: {resque.keys.strip(resque.keys.pause_all_workers)} is set; workers "
               "finish their current job and take no new one until `resque-py resume-all`")


@click.command()
@click.pass_obj
def resume_all(obj: Context) -> None:
    """Let every worker take jobs again (DEL pause-all-workers)."""
    resque = connected_client(obj)
    resque.store.set_pause_all(False)
    click.echo(f"resumed: {resque.keys.strip(resque.keys.pause_all_workers)} is deleted")

