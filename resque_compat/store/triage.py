"""Compare-and-act on one failure entry: retry or remove it only if the list still holds the
exact bytes we read at that index. One Lua call each, so a failure pushed, removed or
retried by anyone else in between makes the call refuse instead of hitting the wrong entry."""
from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, Iterator, List, Sequence, Tuple

from resque_compat.wire.keys import Keys

if TYPE_CHECKING:
    import redis

#: ``locate(key, at, window, expected)``: ``at`` if the entry there is ``expected``, else the
#: nearest index up to ``window`` places below holding it (others' removals only shift entries
#: down), else nil.
_LOCATE = """
local function locate(key, at, window, expected)
  if redis.call('LINDEX', key, at) == expected then return at end
  local low = math.max(0, at - window)
  local page = redis.call('LRANGE', key, low, at)
  for j = #page, 1, -1 do
    if page[j] == expected then return low + j - 1 end
  end
  return nil
end
"""

#: KEYS: failure list, ``queues``, ``queue:<q>``. ARGV: index, window, expected bytes, new entry
#: (with retried_at), job queue ('' = nothing to push: Ruby's NoQueueError after writing
#: retried_at), job JSON. Returns 1 done, 0 the entry is gone or changed.
RETRY_SCRIPT = _LOCATE + """
local at = locate(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3])
if at == nil then return 0 end
redis.call('LSET', KEYS[1], at, ARGV[4])
if ARGV[5] ~= '' then
  redis.call('SADD', KEYS[2], ARGV[5])
  redis.call('RPUSH', KEYS[3], ARGV[6])
end
return 1
"""

#: Ruby's remove is LSET "" + LREM 1 "" (WIRE §4.5), one LREM scan per entry. This removes a
#: page of entries in one atomic call: each found entry is LSET to a placeholder unique to the
#: call, then one LREM takes them all, from the end nearer to them; no reader ever sees a
#: placeholder. KEYS: failure list. ARGV: window, placeholder, then index/expected pairs.
#: Returns one 1 (removed) or 0 (gone or changed) per pair.
REMOVE_SCRIPT = _LOCATE + """
local window, mark = tonumber(ARGV[1]), ARGV[2]
local out, count, lowest, highest = {}, 0, nil, nil
for k = 3, #ARGV, 2 do
  local at = locate(KEYS[1], tonumber(ARGV[k]), window, ARGV[k + 1])
  if at == nil then
    out[#out + 1] = 0
  else
    redis.call('LSET', KEYS[1], at, mark)
    out[#out + 1] = 1
    count = count + 1
    if lowest == nil or at < lowest then lowest = at end
    if highest == nil or at > highest then highest = at end
  end
end
if count > 0 then
  if redis.call('LLEN', KEYS[1]) - lowest < highest then count = -count end
  redis.call('LREM', KEYS[1], count, mark)
end
return out
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

    def remove_many(self, key: str, entries: Sequence[Tuple[int, Any]]) -> List[bool]:
        """Remove each (index, expected bytes) of one list in one atomic call."""
        if not entries:
            return []
        args: List[Any] = [WINDOW, "resque-py:removing:" + uuid.uuid4().hex]
        for index, expected in entries:
            args += [index, expected]
        return [bool(int(x)) for x in self._remove(keys=[key], args=args)]
