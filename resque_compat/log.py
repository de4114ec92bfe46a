"""Resque's verbosity levels on stdlib logging.

Ruby's formatters: quiet (nothing), VERBOSE (``*** message``) and VVERBOSE
(``** [HH:MM:SS YYYY-MM-DD] pid: message``). We are quiet but not silent by default: start, stop,
warnings and errors still print, since a worker that dies silently helps nobody.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Optional

#: Per-job lines ("done: (critical) Archive"), shown with VERBOSE/LOGGING.
VERBOSE = 15
logging.addLevelName(VERBOSE, "VERBOSE")

logger = logging.getLogger("resque_compat")

_LEVELS = {"quiet": logging.INFO, "verbose": VERBOSE, "vverbose": logging.DEBUG}


class RubyFormatter(logging.Formatter):
    """``*** message`` (Resque's VerboseFormatter) or, for debug, the VeryVerbose form."""

    def __init__(self, very_verbose: bool) -> None:
        super().__init__()
        self.very_verbose = very_verbose

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        if self.very_verbose:
            stamp = time.strftime("%H:%M:%S %Y-%m-%d", time.localtime(record.created))
            return f"** [{stamp}] {os.getpid()}: {message}"
        return f"*** {message}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "pid": os.getpid(),
            "message": record.getMessage(),
        }
        for key in ("worker", "queue", "job_class", "seconds"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, separators=(",", ":"))


def setup(level: str = "quiet", fmt: str = "text", stream: Optional[object] = None) -> None:
    """Configure the ``resque_compat`` logger once, for the CLI. Libraries never call this."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else RubyFormatter(level == "vverbose"))
    logger.handlers[:] = [handler]
    logger.setLevel(_LEVELS[level])
    logger.propagate = False
