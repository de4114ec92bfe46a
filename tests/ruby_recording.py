"""Normalising what real Ruby did (fixtures/ruby-interop/scheduler.json) and what our code does
today the same way, so a test compares them byte for byte except for times and host:pid.

Used by fixtures/ruby-interop/scheduler_capture.py (which records) and the tests (which
compare); the suite needs no Ruby.
"""
from __future__ import annotations

import re
from typing import Any, Dict, Iterable, List, Optional, Set

TIME_TO_S = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}")
#: a lock value (Socket.gethostname:Process.pid); "resque:..." keys are not
HOST_PID = re.compile(r"(?<![\w.:-])(?!resque:)[A-Za-z][A-Za-z0-9._-]*:\d+(?![\w:])")
EPOCH = re.compile(r"^\d{10}$")
SHA = re.compile(r"^[0-9a-f]{40}$")


def normal_text(text: str) -> str:
    """Time#to_s and host:pid in free text replaced by placeholders."""
    return HOST_PID.sub("<host:pid>", TIME_TO_S.sub("<Time#to_s>", text))


def normal_keys(keys: Dict[str, Any]) -> Dict[str, Any]:
    """A tests.keyspace.dump with Time#to_s values and the lock's host:pid replaced, and each
    list as its distinct items (how many times the scheduler pushed them depends on how long it
    ran; the count is kept as ``length`` beside)."""
    out: Dict[str, Any] = {}
    for key, entry in keys.items():
        value = entry["value"]
        if entry["type"] == "string":
            value = normal_text(value)
        elif entry["type"] == "hash":
            value = {k: normal_text(v) for k, v in value.items()}
        elif entry["type"] == "list":
            out[key] = {"type": "list", "value": list(dict.fromkeys(value)), "length": len(value)}
            continue
        out[key] = {"type": entry["type"], "value": value}
    return out


# -- MONITOR -------------------------------------------------------------------------------------

_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_LINE = re.compile(r"^\+?\d+\.\d+ \[(\d+) ([^\]]+)\] (.*)$")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "a": "\a", "b": "\b"}


def _unescape(text: str) -> str:
    return re.sub(r"\\x([0-9a-fA-F]{2})|\\(.)",
                  lambda m: chr(int(m.group(1), 16)) if m.group(1) else _ESCAPES.get(m.group(2), m.group(2)),
                  text)


def monitor_commands(lines: Iterable[str], db: int, clients: Optional[Set[str]] = None) -> List[List[str]]:
    """MONITOR lines of one DB as ``[origin, COMMAND, args...]`` (origin ``client`` or ``lua``),
    in order; a Lua script's own commands belong to the client whose EVAL/EVALSHA came just
    before them. With ``clients`` (``ip:port`` addresses), only their commands."""
    out: List[List[str]] = []
    last = None
    for line in lines:
        m = _LINE.match(line)
        if not m or int(m.group(1)) != db:
            continue
        lua = m.group(2) == "lua"
        if not lua:
            last = m.group(2)
        if clients is not None and last not in clients:
            continue
        words = [_unescape(w) for w in _QUOTED.findall(m.group(3))]
        out.append(["lua" if lua else "client", words[0].upper(), *words[1:]])
    return out


def shape(command: List[str]) -> List[str]:
    """A command with what varies between runs replaced: Time#to_s, host:pid, epoch seconds,
    script SHA1s, and the lock timeout (the last word of EXPIRE)."""
    out = [normal_text(w) for w in command]
    out = ["<epoch>" if EPOCH.match(w) else "<sha>" if SHA.match(w) else w for w in out]
    if out[1] == "EXPIRE":
        out[-1] = "<lock timeout>"
    return out


# -- the doctor's states (fixtures/ruby-interop/doctor.json) ---------------------------------------

#: a pid made up for the doctor's own host (tests.doctor_states.HOST), in ids and lock values
DOCTOR_PID = re.compile(r"(?<![\w.-])doctorhost:\d+")
#: a pid the doctor names in its output ("pid 123 is dead", "the pid field '123+1'")
PID_WORD = re.compile(r"\bpid (field ')?\d+")


def normal_state(value: Any) -> Any:
    """A dump, a Ruby probe's report or a line of output with times (tests.keyspace's patterns)
    and the pids made up for ``doctorhost`` replaced by placeholders; keys too."""
    from tests.keyspace import TIME_PATTERNS, map_strings

    def fix(text: str) -> str:
        text = PID_WORD.sub(lambda m: f"pid {m.group(1) or ''}<pid>", DOCTOR_PID.sub("doctorhost:<pid>", text))
        for pattern, placeholder in TIME_PATTERNS:
            text = pattern.sub(placeholder, text)
        return text

    return map_strings(value, fix)


def write_record(path: str, record: Dict[str, Any]) -> None:
    """A capture's JSON, as the fixtures keep it (one space indent, UTF-8, final newline)."""
    import json

    with open(path, "w", encoding="utf-8") as fh:
        json.dump(record, fh, ensure_ascii=False, indent=1)
        fh.write("\n")
    print(f"wrote {path}")
