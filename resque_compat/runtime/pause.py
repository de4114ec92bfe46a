"""resque-pause's push-back for jobs registered with ``@job(..., pause=True)``.

Our slots never take a job from a paused queue (the reserve script checks ``pause:queue:<q>``
and ``pause:all``, store/scripts.py). A job can still reach a slot while its class's queue is
paused: the queue was paused just after the job was reserved, or Rails sent it to another queue
with ``enqueue_to`` (fixtures/ruby-plugins/pause_05, pause_06). For classes that extend
``Resque::Plugins::Pause``, Ruby's ``before_perform_pause`` then waits ``@pause_check_interval``
seconds (default 10), checks again, and if the class's queue is still paused pushes
``{"class","args"}`` to the head of that queue and skips the job (``DontPerform``: processed, no
failure). ``pause=True`` (with ``pause_check_interval=...``) does the same here.
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

import gevent

from resque_compat import client, hooks
from resque_compat.errors import DontPerform
from resque_compat.registry import JobSpec
from resque_compat.wire import codec

log = logging.getLogger("resque_compat.pause")

#: resque-pause's ``PAUSE_CHECK_INTERVAL``.
DEFAULT_CHECK_INTERVAL = 10.0


class PausePlugin:
    """``Resque::Plugins::Pause#before_perform_pause`` for ``@job(..., pause=True)``."""

    def applies_to(self, spec: JobSpec) -> bool:
        return bool(spec.options.get("pause"))

    def before_perform(self, spec: JobSpec, args: Sequence[Any]) -> None:
        if spec.queue is None:
            log.warning("@job(%r, pause=True) has no queue=...: resque-pause checks the class's "
                        "@queue, so there is nothing to check; give it queue=", spec.name)
            return
        store = client.default().store
        if not store.paused_queues([spec.queue])[0]:
            return
        gevent.sleep(float(spec.options.get("pause_check_interval", DEFAULT_CHECK_INTERVAL)))
        if not store.paused_queues([spec.queue])[0]:
            return
        class_name = spec.name[2:] if spec.name.startswith("::") else spec.name  # Ruby's Class#to_s
        store.push_back(spec.queue, codec.encode_job(class_name, list(args)))
        log.info("pushed %s back to the head of queue %s: it is paused", class_name, spec.queue)
        raise DontPerform(f"Queue {spec.queue} is paused!")


PLUGIN = hooks.add_plugin(PausePlugin())
