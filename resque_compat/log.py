"""Resque's verbosity levels on stdlib logging, for our lines and the jobs' own loggers.

Ruby's formatters: quiet (nothing), VERBOSE (``*** message``) and VVERBOSE
(``** [HH:MM:SS YYYY-MM-DD] pid: message``). We are quiet but not silent by default: start, stop,
warnings and errors still print, since a worker that dies silently helps nobody.

:func:`setup` puts one handler on the root logger, so ``logging.getLogger(__name__)`` in a job
module works with no setup of its own: WARNING and up always, INFO with VERBOSE, DEBUG with
VVERBOSE, every line in the same format (text or JSON). Lines go to stdout, as Ruby's
``Resque.logger`` does. A job module that configures logging itself (``dictConfig``,
``basicConfig(force=True)``) replaces our handler and its config wins.
"""
from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
import time
from contextlib import contextmanager
from typing import Any, Dict, Iterator, Optional, TextIO

#: Per-job lines ("done: (critical) Archive"), shown with VERBOSE/LOGGING.
VERBOSE = 15
logging.addLevelName(VERBOSE, "VERBOSE")

logger = logging.getLogger("resque_compat")

#: Our own logger's level, and every other logger's (the root's), per verbosity.
_LEVELS = {"quiet": logging.INFO, "verbose": VERBOSE, "vverbose": logging.DEBUG}
_ROOT_LEVELS = {"quiet": logging.WARNING, "verbose": logging.INFO, "vverbose": logging.DEBUG}

#: The job the current greenlet runs (worker id, queue, class), attached to every log record
#: emitted while it runs; greenlets each have their own contextvars context.
_job: "contextvars.ContextVar[Optional[Dict[str, Any]]]" = contextvars.ContextVar("resque_job", default=None)


@contextmanager
def job_context(worker: str, queue: Optional[str], job_class: Optional[str]) -> Iterator[None]:
    """Tag the log records of the code run inside (a job's perform) with its worker and job."""
    token = _job.set({"worker": worker, "queue": queue, "job_class": job_class})
    try:
        yield
    finally:
        _job.reset(token)


class _JobFilter(logging.Filter):
    """Adds worker, queue and job_class to records that do not carry them already."""

    def filter(self, record: logging.LogRecord) -> bool:
        current = _job.get()
        if current is not None:
            for key, value in current.items():
                if not hasattr(record, key):
                    setattr(record, key, value)
        return True


def _ours(record: logging.LogRecord) -> bool:
    """One of our own routine lines, printed in Ruby's exact format (log readers parse it)."""
    return record.levelno < logging.WARNING and (
        record.name == "resque_compat" or record.name.startswith("resque_compat."))


class RubyFormatter(logging.Formatter):
    """Resque's formatters: ``*** message`` (VerboseFormatter) or, at VVERBOSE,
    ``** [HH:MM:SS YYYY-MM-DD] pid: message`` (VeryVerboseFormatter).

    A line that is not one of our routine ones (a warning, an error, a job's own logger) also
    names its level and logger, and gets a time even without VVERBOSE.
    """

    def __init__(self, very_verbose: bool) -> None:
        super().__init__()
        self.very_verbose = very_verbose

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        ours = _ours(record)
        if not ours:
            message = f"{record.levelname} {record.name}: {message}"
        if self.very_verbose:
            stamp = time.strftime("%H:%M:%S %Y-%m-%d", time.localtime(record.created))
            return f"** [{stamp}] {os.getpid()}: {message}"
        if ours:
            return f"*** {message}"
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
        return f"*** [{stamp}] {message}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": os.getpid(),
            "message": record.getMessage(),
        }
        for key in ("worker", "queue", "job_class", "seconds"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, separators=(",", ":"), default=str)


class _Handler(logging.StreamHandler):
    """Our handler on the root logger (a class of its own, so setup() replaces only its own)."""


def setup(level: str = "quiet", fmt: str = "text", stream: Optional[TextIO] = None) -> None:
    """Configure logging once, for the CLI: one handler on the root logger (stdout unless
    ``stream``), so our lines and every job module's logger share its format and levels.
    Libraries never call this."""
    handler = _Handler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter() if fmt == "json" else RubyFormatter(level == "vverbose"))
    handler.addFilter(_JobFilter())
    root = logging.getLogger()
    # Only our previous handler is replaced: others (pytest's capture, a user's) stay.
    root.handlers[:] = [h for h in root.handlers if not isinstance(h, _Handler)] + [handler]
    root.setLevel(_ROOT_LEVELS[level])
    logger.handlers[:] = []
    logger.setLevel(_LEVELS[level])
    logger.propagate = True
