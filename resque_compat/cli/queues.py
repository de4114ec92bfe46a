"""Client commands on queues: ``enqueue``, ``info`` and ``queues`` (resque-web's Queues page)."""
from __future__ import annotations

import json
from typing import Sequence

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
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of {name, size}.")
@click.option("--clear", "clear", metavar="NAME", multiple=True,
              help="Drop every job waiting in queue NAME, keeping the queue listed; repeatable.")
@click.option("--remove", "remove", metavar="NAME", multiple=True,
              help="Drop the jobs and the queue's name too (resque-web's Remove Queue); repeatable.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask before dropping jobs.")
@click.pass_obj
def queues(obj: Context, as_json: bool, clear: Sequence[str], remove: Sequence[str], yes: bool) -> None:
    """List queues with their sizes (resque-web's Queues page), or clear / remove queues."""
    resque = connected_client(obj)
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

