"""The Lua script behind ``Store.finish_and_reserve``: the worker's whole Redis hot path in one
atomic call, with the functions that build its KEYS/ARGV and read its reply right below it, so
the offsets the Lua indexes and the lists Python builds are checked side by side (store.py sends
it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from resque_compat.wire.keys import Keys
from resque_compat.wire.records import reserved_record

#: The hot path of every worker slot, in one atomic script call:
#:
#: 1. for each slot whose job ended: its failure entry if the job failed (Ruby's
#:    ``report_failed_job``: RPUSH to the failure list, unless MultipleWithRetrySuppression kept
#:    it out, and INCRBY stat:failed and stat:failed:<id>),
#:    then Ruby's ``done_working`` (DEL worker:<id>, INCRBY stat:processed and
#:    stat:processed:<id>), in Ruby's order (WIRE §6.7);
#: 2. unless ``pause-all-workers`` is set, pop at most one job per waiting slot in strict queue
#:    priority and write ``worker:<id>`` for each in the same step, so a job is always either in
#:    its queue or in exactly one ``worker:<id>``: never lost between LPOP and SET as in Ruby
#:    (WIRE §3.3), and nothing is popped that a free greenlet cannot start at once;
#: 3. resque-pause (fixtures/ruby-plugins/pause_*): a queue whose ``pause:queue:<q>`` exists is
#:    skipped, and nothing is taken while ``pause:all`` exists. Ruby's patched reserve sends
#:    ``MGET pause:queue:<q> pause:all`` per queue per poll; one MGET here serves every queue
#:    and every waiting slot of the trip, paused or not, so a paused queue costs no command per
#:    slot (it saves the LPOPs).
#:
#: The record is built by concatenation so the payload keeps its exact bytes (WIRE §9.6). A
#: payload that is not a strictly valid JSON object is stored as a JSON string, ASCII-escaped
#: byte by byte, so ``worker:<id>`` is always valid JSON: resque-web and Ruby's pruner crash on
#: anything else (WIRE §3.4, §5.2). "Strictly": cjson alone would let NaN, hex numbers, raw
#: control characters and invalid UTF-8 through (tests/test_hostile.py).
#:
#: KEYS: pause-all-workers, stat:processed, stat:failed, failed_queues,
#:       per done slot: worker:<id>, stat:processed:<id>, stat:failed:<id>, its failure list,
#:       per waiting slot: worker:<id>, per queue: queue:<q>,
#:       pause:all, per queue: pause:queue:<q>.
#: ARGV: n_done, n_free, n_queues,
#:       per done slot: failure entry ('' = none), failed_queues member ('' = none),
#:       '1' if the job failed (counted even when its entry is suppressed) else '',
#:       per queue: the record prefix ``{"queue":..,"run_at":..,"payload":``.
#: Returns {paused (0/1), then per job: queue index, raw bytes, 1 if embedded raw else 0};
#: the i-th job belongs to the i-th waiting slot.
RESERVE_SCRIPT = r"""
local n_done = tonumber(ARGV[1])
local n_free = tonumber(ARGV[2])
local n_queues = tonumber(ARGV[3])
local k = 5
local a = 4
local failures = 0
for i = 1, n_done do
  if ARGV[a] ~= '' then
    redis.call('RPUSH', KEYS[k + 3], ARGV[a])
    if ARGV[a + 1] ~= '' then
      redis.call('SADD', KEYS[4], ARGV[a + 1])
    end
  end
  if ARGV[a + 2] ~= '' then
    redis.call('INCRBY', KEYS[k + 2], 1)
    failures = failures + 1
  end
  redis.call('DEL', KEYS[k])
  redis.call('INCRBY', KEYS[k + 1], 1)
  k = k + 4
  a = a + 3
end
if failures > 0 then
  redis.call('INCRBY', KEYS[3], failures)
end
if n_done > 0 then
  redis.call('INCRBY', KEYS[2], n_done)
end
local out = {0}
if n_free == 0 then
  return out
end
local pause = redis.call('GET', KEYS[1])
if pause and string.lower(string.match(pause, '^%s*(.-)%s*$')) == 'true' then
  out[1] = 1
  return out
end
local free_first = k
local queue_first = k + n_free
local pause_first = queue_first + n_queues
local plugin_paused = redis.call('MGET', unpack(KEYS, pause_first, pause_first + n_queues))
if plugin_paused[1] then
  return out
end
local function as_json_string(s)
  return '"' .. (string.gsub(s, '[%z\1-\31"\\\127-\255]', function(c)
    return string.format('\\u%04x', string.byte(c))
  end)) .. '"'
end
-- Valid UTF-8 (no surrogates, no overlongs) in a string that has bytes >= 0x80.
local function utf8_ok(s)
  local i = string.find(s, '[\128-\255]')
  while i do
    local c = string.byte(s, i)
    local n, lo, hi = 2, 128, 191
    if c >= 194 and c <= 223 then n = 1
    elseif c == 224 then lo = 160
    elseif c == 237 then hi = 159
    elseif c >= 225 and c <= 239 then n = 2
    elseif c == 240 then n, lo = 3, 144
    elseif c >= 241 and c <= 243 then n = 3
    elseif c == 244 then n, hi = 3, 143
    else return false end
    for j = 1, n do
      local b = string.byte(s, i + j)
      if not b or b < (j == 1 and lo or 128) or b > (j == 1 and hi or 191) then return false end
    end
    i = string.find(s, '[\128-\255]', i + n + 1)
  end
  return true
end
-- cjson accepts what Ruby's parser and resque-web reject (NaN, Infinity, 0x10, 01, 1., +1, raw
-- control characters and invalid UTF-8 in strings); such a payload must not be embedded.
local function strict_object(raw)
  if not (string.find(raw, '^[ \t\n\r]*{') and pcall(cjson.decode, raw)) then
    return false
  end
  local ok = true
  local bare = string.gsub(string.gsub(raw, '\\.', ''), '"([^"]*)"', function(s)
    if string.find(s, '[%z\1-\31]') or (string.find(s, '[\128-\255]') and not utf8_ok(s)) then
      ok = false
    end
    return '""'
  end)
  if not ok then return false end
  bare = string.gsub(string.gsub(string.gsub(bare, 'true', ''), 'false', ''), 'null', '')
  if string.find(bare, '[^%d \t\n\r%[%]{}:,.eE+%-"]') then return false end
  for n in string.gmatch(bare, '[-+%d.eE]+') do
    local int, rest = string.match(n, '^%-?(%d+)(.*)$')
    if not int or (#int > 1 and string.sub(int, 1, 1) == '0') then return false end
    rest = string.match(rest, '^%.%d+(.*)$') or rest
    if rest ~= '' and not string.find(rest, '^[eE][-+]?%d+$') then return false end
  end
  return true
end
local slot = 0
local q = 1
while slot < n_free and q <= n_queues do
  local raw = false
  if not plugin_paused[q + 1] then
    raw = redis.call('LPOP', KEYS[queue_first + q - 1])
  end
  if raw then
    local body = raw
    local embedded = 1
    if not strict_object(raw) then
      body = as_json_string(raw)
      embedded = 0
    end
    redis.call('SET', KEYS[free_first + slot], ARGV[a + q - 1] .. body .. '}')
    out[#out + 1] = q
    out[#out + 1] = raw
    out[#out + 1] = embedded
    slot = slot + 1
  else
    q = q + 1
  end
end
return out
"""

@dataclass(frozen=True)
class Done:
    """A slot whose job ended, with the failure entry to write first if the job failed."""

    worker_id: str
    failure: Optional[str] = None
    queue: Optional[str] = None
    #: A failure counted in ``stat:failed`` but not listed (MultipleWithRetrySuppression kept
    #: it out of ``failed`` because the job is being retried); ``failure`` is then None.
    suppressed: bool = False
    #: False for a listed failure Ruby does not count in ``stat:failed`` (a DirtyExit).
    counted: bool = True


@dataclass(frozen=True)
class Reserved:
    """One popped job: which free slot got it, from which queue, its raw bytes, and the exact
    ``worker:<id>`` value the script wrote (to recognise it after a lost reply)."""

    slot_index: int
    queue: str
    raw: bytes
    record: bytes


def reserve_call(keys: Keys, failure_backend: str, done: Sequence[Done], free_ids: Sequence[str],
                 queues: Sequence[str], record_prefixes: Sequence[str]) -> Tuple[List[str], List[object]]:
    """KEYS and ARGV for :data:`RESERVE_SCRIPT`, in the order its comment lists them."""
    script_keys = [keys.pause_all_workers, keys.processed, keys.failed_count, keys.failed_queues]
    args: List[object] = [len(done), len(free_ids), len(queues)]
    for d in done:  # KEYS[k..k+3] and ARGV[a..a+2] of the script's first loop
        script_keys += [keys.worker(d.worker_id), keys.worker_processed(d.worker_id),
                        keys.worker_failed(d.worker_id), keys.failure_list(d.queue, failure_backend)]
        member = keys.failed_queues_member(d.queue, failure_backend) if d.failure else None
        args += [d.failure or "", member or "", "1" if (d.failure and d.counted) or d.suppressed else ""]
    script_keys.extend(keys.worker(wid) for wid in free_ids)   # free_first
    script_keys.extend(keys.queue(q) for q in queues)           # queue_first
    script_keys.append(keys.pause_all)                          # pause_first: resque-pause,
    script_keys.extend(keys.pause_queue(q) for q in queues)     # read in one MGET
    args.extend(record_prefixes)                                # ARGV[a + q - 1]
    return script_keys, args


def read_reserve_reply(reply: Sequence, queues: Sequence[str],
                       record_prefixes: Sequence[str]) -> Tuple[bool, List[Reserved]]:
    """(paused, jobs) from :data:`RESERVE_SCRIPT`'s reply ``{paused, (q index, raw, embedded)*}``."""
    jobs = []
    for i in range((len(reply) - 1) // 3):
        q_index, raw, embedded = reply[1 + 3 * i: 4 + 3 * i]
        q_index = int(q_index) - 1  # Lua counts from 1
        jobs.append(Reserved(i, queues[q_index], raw,
                             reserved_record(record_prefixes[q_index], raw, bool(int(embedded)))))
    return bool(int(reply[0])), jobs
