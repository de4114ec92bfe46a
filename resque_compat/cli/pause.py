"""resque-pause's operator commands: ``pause-queue NAME`` and ``resume-queue NAME``.

They write the plugin's own key (``pause:queue:<q>``, fixtures/ruby-plugins/pause_01), so Ruby
workers with resque-pause loaded and our workers both stop taking jobs from that queue; the
jobs stay queued, in order. Added to the group by ``cli/main.py``.
"""
from __future__ import annotations

from typing import Sequence

import click

from resque_compat.cli.common import Context, connected_client


@click.command("pause-queue")
@click.argument("names", metavar="NAME...", nargs=-1, required=True)
@click.pass_obj
def pause_queue(obj: Context, names: Sequence[str]) -> None:
    """Stop every worker taking jobs from queue NAME (resque-pause's ResquePauseHelper.pause).

    Jobs already running finish; queued ones wait, in order, until resume-queue NAME.
    """
    resque = connected_client(obj)
    for name in names:
        resque.store.set_queue_paused(name, True)
        click.echo(f"paused queue {name}: {resque.keys.strip(resque.keys.pause_queue(name))} is set; "
                   f"undo with `resque-py resume-queue {name}`")


@click.command("resume-queue")
@click.argument("names", metavar="NAME...", nargs=-1, required=True)
@click.pass_obj
def resume_queue(obj: Context, names: Sequence[str]) -> None:
    """Let workers take jobs from queue NAME again (resque-pause's unpause)."""
    resque = connected_client(obj)
    for name in names:
        resque.store.set_queue_paused(name, False)
        paused_all = resque.store.paused_queues([name])[0]
        note = ("; resque-pause's global pause:all is still set, so nothing runs until it is deleted"
                if paused_all else "")
        click.echo(f"resumed queue {name}: {resque.keys.strip(resque.keys.pause_queue(name))} is deleted{note}")
