"""Compare-and-act on one failure entry: retry or remove it only if the list still holds the
exact bytes we read at that index. One Lua call each, so a failure pushed, removed or
retried by anyone else in between makes the call refuse instead of hitting the wrong entry."""
from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, Iterator, List, Sequence, Tuple

from resque_compat.wire.keys import Keys

if TYPE_CHECKING:
    import redis

#: Find the expected bytes at ARGV[1], or up to ARGV[2] places below it (others' removals only
#: shift entries down); sets ``at`` to that index, or returns 0 from the script if absent.
_LOCATE = """
local at = tonumber(ARGV[1])
if redis.call('LINDEX', KEYS[1], at) ~= ARGV[3] then
  local low = math.max(0, at - tonumber(ARGV[2]))
  local page = redis.call('LRANGE', KEYS[1], low, at)
  at = nil
  for j = #page, 1, -1 do
    if page[j] == ARGV[3] then at = low + j - 1; break end
  end
  if at == nil then return 0 end
end
"""

#: KEYS: failure list, ``queues``, ``queue:<q>``. ARGV: index, window, expected bytes, new entry
#: (with retried_at), job queue ('' = nothing to push: Ruby's NoQueueError after writing
#: retried_at), job JSON. Returns 1 done, 0 the entry is gone or changed.
RETRY_SCRIPT = _LOCATE + """
redis.call('LSET', KEYS[1], at, ARGV[4])
if ARGV[5] ~= '' then
  redis.call('SADD', KEYS[2], ARGV[5])
  redis.call('RPUSH', KEYS[3], ARGV[6])
end
return 1
"""

#: Ruby's remove is LSET "" + LREM 1 "" (WIRE §4.5). A unique placeholder instead of "" means
#: we remove our entry and no one else's, and LREM searches from the nearer end of the list.
#: KEYS: failure list. ARGV: index, window, expected bytes, placeholder.
REMOVE_SCRIPT = _LOCATE + """
redis.call('LSET', KEYS[1], at, ARGV[4])
local from = 1
if at * 2 >= redis.call('LLEN', KEYS[1]) then from = -1 end
redis.call('LREM', KEYS[1], from, ARGV[4])
return 1
"""

#: How far below its index the scripts look for an entry that others' removals moved.
WINDOW = 1000
#: Entries read per LRANGE while scanning, and actions sent per pipeline.
PAGE = 1000


class FailureStore:
    """The Redis side of triage for one namespace."""

    def __init__(self, client: "redis.Redis", keys: Keys) -> None:
        self.redis = client
        self.keys = keys
        self._retry = client.register_script(RETRY_SCRIPT)
        self._remove = client.register_script(REMOVE_SCRIPT)

    def length(self, key: str) -> int:
        return int(self.redis.llen(key))

    def at(self, key: str, index: int) -> Any:
        return self.redis.lindex(key, index)

    def pages_backwards(self, key: str, top: int) -> Iterator[Tuple[int, List[Any]]]:
        """(first index, entries) pages from index ``top`` down to 0, newest page first."""
        while top >= 0:
            low = max(0, top - PAGE + 1)
            yield low, self.redis.lrange(key, low, top)
            top = low - 1

    def pages_forwards(self, key: str, start: int = 0) -> Iterator[Tuple[int, List[Any]]]:
        while True:
            page = self.redis.lrange(key, start, start + PAGE - 1)
            if not page:
                return
            yield start, page
            if len(page) < PAGE:
                return
            start += PAGE

    def retry_many(self, actions: Sequence[Tuple[str, int, Any, str, str, str]]) -> List[bool]:
        """Each action: (list key, index, expected bytes, new entry, job queue or '', job JSON)."""
        pipe = self.redis.pipeline(transaction=False)
        for key, index, expected, entry, queue, job in actions:
            # With no queue nothing is pushed; KEYS[3] must still name a key of this namespace.
            self._retry(keys=[key, self.keys.queues, self.keys.queue(queue or "-")],
                        args=[index, WINDOW, expected, entry, queue, job], client=pipe)
        return [bool(int(x)) for x in pipe.execute()]

    def remove_many(self, actions: Sequence[Tuple[str, int, Any]]) -> List[bool]:
        """Each action: (list key, index, expected bytes); give them from the highest index
        down, so earlier removals do not move later ones."""
        pipe = self.redis.pipeline(transaction=False)
        for key, index, expected in actions:
            self._remove(keys=[key], args=[index, WINDOW, expected, "resque-py:removing:" + uuid.uuid4().hex],
                         client=pipe)
        return [bool(int(x)) for x in pipe.execute()]
