"""The shapes of Resque's wire records: job, worker id, ``worker:<id>`` value, failure entry.

The one home of the ``worker:<id>`` value: built here (also the bytes the reserve script
writes), and read back here (the fetcher after a lost reply, the pruner, ``remove-worker``).

Pure: builds and parses strings with :mod:`codec`, never talks to Redis. Byte layouts follow
WIRE §3.1, §4.1 and §4.4 and are checked against ``fixtures/`` in ``tests/test_records.py``.
"""
from __future__ import annotations

import os
import re
import traceback
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, List, Optional, Sequence, Tuple

from resque_compat.wire import codec

#: Characters allowed in a slot token: nothing Ruby or resque-web splits ids on (WIRE §3.8).
SLOT_TOKEN = re.compile(r"^[A-Za-z0-9_]+$")

#: The resque_compat package (this file is in its wire/ subpackage): backtraces drop its frames.
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- worker ids ---------------------------------------------------------------------------------

def id_queue_list(queues: Sequence[str]) -> str:
    """The queue field of a worker id: the configured list without ``!`` exclusions (WIRE §3.1)."""
    return ",".join(q for q in queues if not q.startswith("!"))


def worker_id(hostname: str, pid: int, queues: Sequence[str], slot: Optional[str] = None) -> str:
    """``host:pid:q1,q2[:slot]``, the em-resque layout Ruby 3.0 parses and prunes correctly.

    Raises ValueError for anything that would break Ruby's ``split(':')`` parsing (§3.4): a
    hostname with ``:``, an empty queue field, a slot with separators in it.
    """
    if not hostname or ":" in hostname:
        raise ValueError(f"hostname {hostname!r} is empty or contains ':'; Ruby could not parse the worker id")
    field3 = id_queue_list(queues)
    if not field3:
        raise ValueError("a worker id needs at least one queue that is not an '!' exclusion")
    if ":" in field3:
        raise ValueError(f"queue names may not contain ':' ({field3!r}): Ruby splits worker ids on ':'")
    wid = f"{hostname}:{int(pid)}:{field3}"
    if slot is not None:
        if not SLOT_TOKEN.match(slot):
            raise ValueError(f"slot token {slot!r} must match [A-Za-z0-9_]+")
        wid += ":" + slot
    return wid


@dataclass(frozen=True)
class ParsedWorkerId:
    """An id as Ruby's pruner and resque-web read it: ``split(':')``, fields 1-3 (WIRE §3.4)."""

    host: str
    pid: str
    queues: tuple

    @classmethod
    def parse(cls, wid: str) -> Optional["ParsedWorkerId"]:
        """None where Ruby itself would crash (fewer than three fields after its split)."""
        parts = ruby_split(wid, ":")
        if len(parts) < 3:
            return None
        return cls(parts[0], parts[1], tuple(ruby_split(parts[2], ",")))


def ruby_split(text: str, sep: str) -> List[str]:
    """Ruby's ``String#split(sep)``: like Python's, but trailing empty fields are dropped."""
    parts = text.split(sep)
    while parts and parts[-1] == "":
        parts.pop()
    return parts


# -- jobs ---------------------------------------------------------------------------------------

@dataclass
class Job:
    """One queue item as popped: the raw text plus what it decodes to.

    ``problem`` is None for a runnable job, else a sentence saying what is wrong with the payload
    (the worker records it as a failure that keeps ``raw``).
    """

    queue: str
    raw: str
    payload: Any = None
    class_name: Optional[str] = None
    args: List[Any] = field(default_factory=list)
    problem: Optional[str] = None
    #: The ``worker:<id>`` value written when the job was reserved (b"" outside a worker).
    record: bytes = b""

    @property
    def display_class(self) -> str:
        """The class name for titles and logs (``No Name`` as Ruby's procline says)."""
        return self.class_name or "No Name"

    def payload_json(self) -> str:
        """The failure entry's ``payload`` value (WIRE §4.4).

        A JSON object is re-encoded as Ruby re-encodes the decoded job (extra keys kept). Text
        that is not a JSON object is kept as a JSON string holding the raw text, the shape Ruby
        itself writes for a string payload (§2.5); an array there would break resque-web (§5.2).
        """
        if isinstance(self.payload, dict):
            try:
                return codec.encode(self.payload)
            except codec.EncodeError:
                pass
        return codec.encode(self.raw)

    def __str__(self) -> str:
        return f"({self.queue}) {self.display_class}"


def parse_job(queue: str, raw: "str | bytes", record: bytes = b"") -> Job:
    """Decode a queue item tolerantly: never raises, returns a Job whose ``problem`` says why."""
    if isinstance(raw, (bytes, bytearray)):
        text = bytes(raw).decode("utf-8", errors="replace")
    else:
        text = raw
    try:
        payload = codec.decode(raw)
    except codec.DecodeError as exc:
        return Job(queue, text, problem=f"the payload is not valid JSON ({exc})", record=record)
    job = Job(queue, text, payload=payload, record=record)
    if not isinstance(payload, dict):
        job.problem = f"the payload is a JSON {_json_type(payload)}, not an object with \"class\" and \"args\""
        return job
    class_name = payload.get("class")
    if not isinstance(class_name, str) or not class_name:
        job.problem = 'the payload has no "class" string naming the job to run'
        return job
    job.class_name = class_name
    args = payload.get("args")
    if args is None:
        args = []
    if not isinstance(args, list):
        job.problem = f'the payload\'s "args" is a JSON {_json_type(args)}, not an array'
        return job
    job.args = args
    return job


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


# -- worker:<id> ----------------------------------------------------------------------------------

def worker_record_prefix(queue: str, run_at: str) -> str:
    """``{"queue":..,"run_at":..,"payload":`` : the payload's bytes and ``}`` follow (WIRE §4.1).

    Building the record by concatenation keeps the payload's original bytes, which is what lets
    the reserve script write it in the same atomic step as the pop.
    """
    return '{"queue":' + codec.encode(queue) + ',"run_at":' + codec.encode(run_at) + ',"payload":'


def payload_bytes_from_record(record: bytes, data: dict) -> Optional[bytes]:
    """The payload's exact bytes inside a ``worker:<id>`` value whose decoded form is ``data``.

    Works for records written by our reserve script and by Ruby (same layout); None if the
    record does not have that layout.
    """
    try:
        prefix = worker_record_prefix(data["queue"], data["run_at"]).encode("utf-8")
    except (KeyError, TypeError, codec.EncodeError):
        return None
    if not (record.startswith(prefix) and record.endswith(b"}")):
        return None
    return record[len(prefix):-1]


def worker_record(queue: str, run_at: str, payload_json: str) -> str:
    return worker_record_prefix(queue, run_at) + payload_json + "}"


_NEEDS_ESCAPE = re.compile(rb'[\x00-\x1f"\\\x7f-\xff]')


def escaped_json_string(raw: bytes) -> bytes:
    """What the reserve script stores for a payload that is not a JSON object: a JSON string
    with every control, quote, backslash and non-ASCII byte written as ``\\u00XX`` (lossless,
    byte by byte). The Lua twin is ``as_json_string`` in store/scripts.py."""
    return b'"' + _NEEDS_ESCAPE.sub(lambda m: b"\\u%04x" % m.group(0)[0], raw) + b'"'


def reserved_record(prefix: str, raw: bytes, embedded: bool) -> bytes:
    """The exact ``worker:<id>`` bytes the reserve script wrote for a job it popped: ``prefix``
    (:func:`worker_record_prefix`), the payload as popped (or, if the script found it was not a
    strict JSON object, :func:`escaped_json_string` of it), and ``}``."""
    body = raw if embedded else escaped_json_string(raw)
    return prefix.encode("utf-8") + body + b"}"


def held_job(raw: Optional[bytes]) -> Optional[dict]:
    """The decoded ``worker:<id>`` value: the job a worker holds; None when idle or unreadable."""
    if not raw:
        return None
    try:
        record = codec.decode(raw)
    except codec.DecodeError:
        return None
    return record if isinstance(record, dict) and record else None


def raw_from_record(record: bytes) -> Optional[Tuple[str, bytes]]:
    """(queue, the popped item's exact bytes) from a ``worker:<id>`` value the reserve script
    wrote; None if it does not have the script's layout."""
    try:
        data = codec.decode(record)
        queue = data["queue"]
    except (codec.DecodeError, KeyError, TypeError):
        return None
    body = payload_bytes_from_record(record, data)
    if body is None:
        return None
    if isinstance(data.get("payload"), dict):  # embedded as popped, leading whitespace and all
        return queue, body
    # The script escaped a payload that is not a strict JSON object byte by byte (\u00XX).
    return queue, str(data.get("payload")).encode("latin-1", errors="replace")


def job_from_record(record: bytes) -> Optional[Job]:
    """Rebuild the Job from a ``worker:<id>`` value the reserve script wrote (raw bytes
    included); None if it does not have the script's layout."""
    found = raw_from_record(record)
    return None if found is None else parse_job(found[0], found[1], record)


# -- failure entries -----------------------------------------------------------------------------

def failure_entry(
    *,
    failed_at: str,
    payload_json: str,
    exception: str,
    error: str,
    backtrace: Sequence[str],
    worker: str,
    queue: Optional[str],
) -> str:
    """One ``failed`` list entry, fields in Ruby's order (WIRE §4.4, fixture 04)."""
    parts = [
        '{"failed_at":', codec.encode(failed_at),
        ',"payload":', payload_json,
        ',"exception":', codec.encode(_valid_text(exception)),
        ',"error":', codec.encode(_valid_text(error)),
        ',"backtrace":', codec.encode([_valid_text(line) for line in backtrace]),
        ',"worker":', codec.encode(worker),
        ',"queue":', codec.encode(queue),
        "}",
    ]
    return "".join(parts)


def dirty_exit_entry(record: dict, exc: BaseException, worker_id: str, when: float) -> str:
    """The failure Ruby's ``unregister_worker`` writes for a job a worker still held (``record``
    is its decoded ``worker:<id>`` value; the backtrace is ``[]``)."""
    return failure_entry(
        failed_at=codec.failed_at(when),
        payload_json=codec.encode(record.get("payload")),
        exception=exception_name(exc),
        error=str(exc),
        backtrace=[],
        worker=worker_id,
        queue=record.get("queue"),
    )


def _valid_text(text: Any) -> str:
    """Ruby replaces invalid UTF-8 in error text with ``?``; lone surrogates are our equivalent."""
    return str(text).encode("utf-8", errors="replace").decode("utf-8")


def exception_name(exc: BaseException) -> str:
    """The ``exception`` field: Ruby's name for our Resque errors, else the Python class name."""
    return getattr(exc, "ruby_name", "") or type(exc).__name__


def backtrace_lines(tb: Optional[TracebackType]) -> List[str]:
    """A Python traceback as Ruby-style lines, innermost first, without our own frames.

    Ruby cuts the backtrace at Resque's own ``lib/resque/job.rb`` frame so only the job's frames
    remain (WIRE §4.4); we drop the frames that live inside the resque_compat package.
    """
    lines = []
    for frame in traceback.extract_tb(tb):
        if os.path.abspath(frame.filename).startswith(_PACKAGE_DIR + os.sep):
            continue
        lines.append(f"{frame.filename}:{frame.lineno}:in `{frame.name}'")
    lines.reverse()
    return lines
