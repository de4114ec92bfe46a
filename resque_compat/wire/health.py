"""Which stored values Ruby Resque 3.0 and resque-web can read, as pure rules (WIRE §3.4, §5.2).

Each ``*_problem`` function returns None for a value Ruby accepts, else one sentence saying what
breaks. ``resque-py doctor`` applies them to what it reads with SCAN; the tests plant the exact
values WIRE lists as breaking.
"""
from __future__ import annotations

import re
from typing import Any, Optional, Union

from resque_compat.wire import codec
from resque_compat.wire.activejob_args import JOB_WRAPPER  # resque-web reads args[0] (§5.2)
from resque_compat.wire.records import ruby_split

#: A heartbeat or ``failed_at`` that is only digits: Ruby's ``Time.parse``/``DateTime.parse``
#: raise on an epoch string (WIRE §3.6, §5.2).
_EPOCH = re.compile(r"^\s*\d+(\.\d+)?\s*$")

Raw = Union[str, bytes]


def _text(raw: Raw) -> str:
    return raw.decode("utf-8", errors="replace") if isinstance(raw, (bytes, bytearray)) else raw


def worker_id_problem(wid: str) -> Optional[str]:
    """A ``workers`` member (or heartbeat field) that ``Worker.find`` or resque-web's plain
    ``split(':')`` cannot read (WIRE §3.4): under two colons, or an empty queue part."""
    limit3 = wid.split(":", 2)
    if len(limit3) < 3:
        return ("fewer than two ':' in the worker id: resque-web's worker pages return 500 "
                "(NoMethodError) and every Ruby worker that prunes dies at start-up")
    if not ruby_split(limit3[2], ","):
        return ("the worker id's queue part is empty: Worker.find raises NoQueueError, so "
                "resque-web's worker pages return 500 and Ruby pruners die at start-up")
    plain = ruby_split(wid, ":")
    if len(plain) < 3:
        return "resque-web's split(':') finds no queue field: its worker pages return 500"
    return None


def pid_problem(pid: str) -> Optional[str]:
    """Ruby's pruner compares the pid field with ``ps`` output as an exact string (WIRE §3.5):
    anything but plain decimal (``123+1``) is never found, so a same-host id is pruned."""
    if pid.isdigit() and str(int(pid)) == pid:
        return None
    return (f"the pid field {pid!r} is not a plain decimal pid: a Ruby worker on this host "
            "never finds it in ps and unregisters it while it runs")


def heartbeat_value_problem(value: str, parsed: Optional[float]) -> Optional[str]:
    """``parsed`` is the heartbeat reader's result (None: unreadable)."""
    if parsed is None or _EPOCH.match(value):
        return (f"heartbeat {value!r} is not a time Ruby's Time.parse reads: every Ruby worker "
                "that prunes dies at start-up (ArgumentError) and /workers/<id> returns 500")
    return None


def worker_record_problem(raw: Raw) -> Optional[str]:
    """A ``worker:<id>`` value resque-web's Working/Workers pages or Ruby's pruner cannot read
    (WIRE §5.2). ``{}`` is tolerated ("Waiting for a job...")."""
    text = _text(raw)
    if text == "":
        return "the worker record is empty: resque-web's Workers and /workers/<id> pages return 500"
    try:
        data = codec.decode(text)
    except codec.DecodeError:
        return ("the worker record is not valid JSON: resque-web's Overview, Working and Workers pages "
                "return 500 and a Ruby pruner dies on it")
    if not isinstance(data, dict):
        return "the worker record is not a JSON object: resque-web's Working pages return 500 (TypeError)"
    if "queue" in data and not isinstance(data.get("payload"), dict):
        return 'the worker record has "queue" but no "payload" object: resque-web\'s Working pages return 500'
    if _wrapper_problem(data.get("payload")):
        return ("an ActiveJob JobWrapper payload whose first argument is not an object: "
                "resque-web's Working pages return 500")
    return None


def _wrapper_problem(payload: Any) -> bool:
    """resque-web's job_class partial (Working and Failed pages) reads ``args.first['job_class']``
    of every ActiveJob JobWrapper payload."""
    if not isinstance(payload, dict) or payload.get("class") != JOB_WRAPPER:
        return False
    args = payload.get("args")
    return not isinstance(args, list) or not args or not isinstance(args[0], dict)


def failure_entry_problem(raw: Raw) -> Optional[str]:
    """A failure entry resque-web's Failed page cannot show (WIRE §5.2)."""
    try:
        data: Any = codec.decode(_text(raw))
    except codec.DecodeError:
        return "the failure entry is not valid JSON: resque-web's Failed page returns 500"
    if not isinstance(data, dict):
        return "the failure entry is not a JSON object: resque-web's Failed page returns 500"
    if not isinstance(data.get("worker"), str):
        return 'the failure entry has no "worker" string: resque-web\'s Failed page returns 500'
    failed_at = data.get("failed_at")
    if not isinstance(failed_at, str) or _EPOCH.match(failed_at):
        return 'the failure entry\'s "failed_at" is missing or not a date: /failed returns 500'
    if not isinstance(data.get("backtrace"), (list, type(None))):
        return 'the failure entry\'s "backtrace" is not an array: /failed returns 500'
    if isinstance(data.get("payload"), list):
        return 'the failure entry\'s "payload" is an array: /failed returns 500'
    if _wrapper_problem(data.get("payload")):
        return ('the failure entry\'s ActiveJob JobWrapper payload has no object as first argument: '
                '/failed returns 500')
    return None


def paused_value(value: Optional[str]) -> bool:
    """Core's ``pause-all-workers``: paused when the value, stripped and lower-cased, is
    ``true`` (WIRE §1.2)."""
    return value is not None and value.strip().lower() == "true"
