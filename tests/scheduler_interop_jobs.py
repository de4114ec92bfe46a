"""Python twins of the classes in fixtures/ruby-interop/scheduler_schedule.yml (``-r
tests/scheduler_interop_jobs.py``): the scheduler infers ``InteropPython``'s queue from its
``@job``, and the worker runs every item resque-web's "Queue now" pushed. Each run is appended
to :data:`RAN` as ``(class, args)``."""
from __future__ import annotations

from typing import Any, List, Tuple

from resque_compat import job

RAN: List[Tuple[str, List[Any]]] = []


def _recorder(name: str, queue: str) -> None:
    @job(name, queue=queue)
    def run(*args: Any) -> None:
        RAN.append((name, list(args)))


for _name, _queue in (("InteropReport", "interop_reports"), ("InteropTick", "interop_tick"),
                      ("InteropCustom", "interop_custom"), ("InteropPersisted", "interop_persisted"),
                      ("InteropImplicit", "interop_implicit"), ("InteropPython", "interop_python")):
    _recorder(_name, _queue)
