"""Queue selection exactly as Resque 3.0's ``Worker#queues`` (WIRE §3.2). Pure.

A static list is used as given. A list with any of ``* ? { } [ ]`` or any ``!name`` entry is
dynamic: on every poll it re-reads the ``queues`` set, expands each pattern with Ruby's
``File.fnmatch`` rules (no brace expansion), sorts each pattern's matches, joins them in pattern
order without duplicates and drops queues matching a ``!`` pattern.
"""
from __future__ import annotations

import fnmatch
import re
from functools import lru_cache
from typing import Iterable, List, Sequence, Tuple

_WILDCARDS = set("*?{}[]")


@lru_cache(maxsize=256)
def _pattern(glob: str) -> "re.Pattern[str]":
    # Braces are literal in File.fnmatch without FNM_EXTGLOB; fnmatch.translate keeps them so.
    # Ruby negates a class with [^...] as well as [!...]; Python only knows [!...].
    return re.compile(fnmatch.translate(glob.replace("[^", "[!")))


def fnmatch_ruby(glob: str, name: str) -> bool:
    """Ruby's ``File.fnmatch?(glob, name)`` with no flags: a wildcard never matches a leading
    ``.`` (FNM_DOTMATCH is off), ``/`` is an ordinary character (FNM_PATHNAME is off)."""
    if name.startswith(".") and not glob.startswith("."):
        return False
    return _pattern(glob).match(name) is not None


class QueueList:
    """The configured queue list of one worker process."""

    def __init__(self, raw: Sequence[str]) -> None:
        entries = [q.strip() for q in raw if q.strip()]
        self.include: Tuple[str, ...] = tuple(q for q in entries if not q.startswith("!"))
        self.exclude: Tuple[str, ...] = tuple(q[1:] for q in entries if q.startswith("!"))
        self.dynamic = bool(self.exclude) or any(c in _WILDCARDS for q in self.include for c in q)

    @property
    def id_field(self) -> str:
        """The queue part of the worker id: the list as configured, without ``!`` entries."""
        return ",".join(self.include)

    @property
    def has_star(self) -> bool:
        """Ruby's pruner checks ``@queues.include?("*")`` literally (WIRE §3.5)."""
        return "*" in self.include

    def __bool__(self) -> bool:
        return bool(self.include)

    def expand(self, known: Iterable[str] = ()) -> List[str]:
        """The queues to poll, in priority order. ``known`` is the ``queues`` set (dynamic only)."""
        if not self.dynamic:
            return list(self.include)
        known = list(known)
        out: List[str] = []
        seen = set()
        for glob in self.include:
            for name in sorted(q for q in known if fnmatch_ruby(glob, q)):
                if name in seen or any(fnmatch_ruby(skip, name) for skip in self.exclude):
                    continue
                seen.add(name)
                out.append(name)
        return out
