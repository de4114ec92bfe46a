"""Client commands on queues: ``enqueue``, ``info`` and ``queues`` (resque-web's Queues page)."""
from __future__ import annotations

import json
import time
from typing import List, Optional, Sequence, Tuple

import click

from resque_compat.cli.common import Context, connected_client, echo_json, fail
from resque_compat.errors import EncodeError, ResqueError


@click.command()
@click.argument("queue")
@click.argument("class_name", metavar="CLASS")
@click.argument("args_json", metavar="ARGS_JSON", default="[]")
@click.pass_obj
def enqueue(obj: Context, queue: str, class_name: str, args_json: str) -> None:
    """Put a job on QUEUE with the bytes Ruby's Resque.enqueue_to writes.

    ARGS_JSON is a JSON array of arguments, e.g. '[1,"x"]' (default []).
    """
    from resque_compat.wire import codec

    try:
        args = codec.decode(args_json)
    except codec.DecodeError as exc:
        fail(f"ARGS_JSON is not valid JSON ({exc}); give an array such as '[1,\"x\"]'")
    if not isinstance(args, list):
        fail("ARGS_JSON must be a JSON array of arguments, e.g. '[1,\"x\"]'")
    resque = connected_client(obj)
    try:
        resque.enqueue_to(queue, class_name, *args)
    except (EncodeError, ResqueError) as exc:
        fail(str(exc))
    click.echo(f"enqueued {class_name} on {queue}")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print Resque.info as JSON.")
@click.pass_obj
def info(obj: Context, as_json: bool) -> None:
    """Show Resque.info: pending, processed, queues, workers, working, failed, servers, environment."""
    data = connected_client(obj).info()
    if as_json:
        click.echo(json.dumps(data))
        return
    for key, value in data.items():
        click.echo(f"{key:>12}: {', '.join(value) if isinstance(value, list) else value}")


@click.command()
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON array of {name, size, oldest_age, age_method}.")
@click.option("--watch", type=click.FloatRange(0.1), default=None, metavar="SECONDS",
              help="Print again every SECONDS; jobs without enqueued_at then get an estimated age "
                   "(how long their head has been seen; README: Queue latency).")
@click.option("--times", type=click.IntRange(1), default=None, metavar="N",
              help="With --watch: stop after N prints.")
@click.option("--clear", "clear", metavar="NAME", multiple=True,
              help="Drop every job waiting in queue NAME, keeping the queue listed; repeatable.")
@click.option("--remove", "remove", metavar="NAME", multiple=True,
              help="Drop the jobs and the queue's name too (resque-web's Remove Queue); repeatable.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask before dropping jobs.")
@click.pass_obj
def queues(obj: Context, as_json: bool, watch: Optional[float], times: Optional[int],
           clear: Sequence[str], remove: Sequence[str], yes: bool) -> None:
    """List queues with their sizes and the age of their oldest job (resque-web's Queues page
    plus latency), or clear / remove queues.

    The age is exact for payloads with enqueued_at (ActiveJob); for others it is shown as
    >=N s with --watch (a lower bound), else "?".
    """
    resque = connected_client(obj)
    if clear or remove:
        listed = ", ".join([*clear, *remove])
        if not yes:
            click.confirm(f"Drop every job waiting in {listed}?", abort=True)
        for name in clear:
            click.echo(f"cleared {name}: {resque.store.clear_queue(name)} job(s) dropped")
        for name in remove:
            size = resque.size(name)
            resque.remove_queue(name)
            click.echo(f"removed {name}: {size} job(s) dropped")
        return
    from resque_compat.metrics.latency import ESTIMATE, OldestJobAge
    from resque_compat.store.survey import Survey

    survey, tracker, printed = Survey(resque.redis, resque.keys), OldestJobAge(), 0
    while True:
        names = resque.queues()
        keys = [resque.keys.queue(name) for name in names]
        sizes, heads, now = survey.lengths(keys), survey.heads(keys), survey.server_time()
        rows = []
        for name, size, head in zip(names, sizes, heads):
            age = tracker.observe(name, head, now)
            known = age is not None and (age[1] != ESTIMATE or printed > 0)
            shown = age if known else None
            rows.append((name, size, shown[0] if shown else None, shown[1] if shown else None, head is not None))
        _print_queues(rows, as_json)
        printed += 1
        if watch is None or (times is not None and printed >= times):
            return
        time.sleep(watch)


def _print_queues(rows: List[Tuple[str, int, Optional[float], Optional[str], bool]], as_json: bool) -> None:
    if as_json:
        echo_json([{"name": name, "size": size, "oldest_age": None if age is None else round(age, 3),
                    "age_method": method} for name, size, age, method, _ in rows])
        return
    for name, size, age, method, waiting in rows:
        shown = "-" if not waiting else "?" if age is None else \
            f"{age:.1f}s" if method == "enqueued_at" else f">={age:.1f}s"
        click.echo(f"{name}\t{size}\t{shown}")
