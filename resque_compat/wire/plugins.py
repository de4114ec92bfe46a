"""Bytes the Ruby plugins derive from a job, rebuilt exactly (fixtures/ruby-plugins/).

Pure: no Redis, no I/O. Key names themselves are spelled in :mod:`keys`.
"""
from __future__ import annotations

import hashlib
from typing import Any, Sequence

from resque_compat.wire import codec


def loner_digest_input(class_name: str, args: Sequence[Any]) -> str:
    """What resque-loner's ``redis_key`` hashes: the payload after a JSON round trip, with each
    **top-level** Hash argument replaced by its key-sorted ``[[key, value], ...]`` pairs (Ruby's
    ``Hash#sort``, bytewise on the string keys); nested Hashes keep their order (loner_01)."""
    round_trip = codec.decode(codec.encode(list(args)))
    shaped = [[[k, v] for k, v in sorted(arg.items(), key=lambda kv: kv[0].encode("utf-8"))]
              if isinstance(arg, dict) else arg for arg in round_trip]
    return codec.encode_job(class_name, shaped)


def loner_digest(class_name: str, args: Sequence[Any]) -> str:
    """The md5 hex at the end of ``loners:queue:<queue>:job:<md5>``."""
    return hashlib.md5(loner_digest_input(class_name, args).encode("utf-8")).hexdigest()
