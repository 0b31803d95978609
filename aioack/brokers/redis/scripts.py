"""The Lua scripts of the Redis broker: every step that must be atomic.

Each settle and each lease renewal starts with the same fencing check: the
entry sits in the group's pending-entries list (PEL) *under this consumer's
name*. Redis runs a script without interleaving other commands, so between
that check and the XACK no other consumer can reclaim the entry: a worker
whose lease ran out can never settle what another worker now holds.

The keys of a queue are described in ``keys``.

A stream entry has the field ``body`` and optionally ``dc``: deliveries
counted before this copy was added. Streams cannot put an entry back, so
requeue/release add a copy and carry the count forward; the delivery count a
consumer sees is ``dc`` + the PEL count of the copy. The message id lives in
the body only: every field of an entry is parsed by every consumer read, and
an ``id`` field cost about 5 us of worker CPU per task (benchmarks/RESULTS.md).
Entries written by earlier versions carry an ``id`` field too; it is read
(RETRY) and copied (MOVE_BACK) but never needed.

A delayed token is ``<32 hex chars>:<message id>`` (the id part empty for a
retry of an entry without an ``id`` field): unique by its random part; the
id only tells a person reading the sorted set what waits there.

Scripts read the clock with TIME (Redis 7 replicates script effects, so this
is allowed): every due time is on the server's clock, never a client's.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

#: Shared helpers, prepended to every script.
_PRELUDE = """
local function owned_count(stream, group, consumer, id)
  -- This consumer's delivery count of `id`, or nil when it does not hold it.
  local p = redis.pcall('XPENDING', stream, group, id, id, 1, consumer)
  if type(p) ~= 'table' or p.err or p[1] == nil then return nil end
  return tonumber(p[1][4])
end

local function drop(stream, group, id)
  -- Acked entries are deleted at once: the stream only ever holds unacked
  -- work, so no trim can drop an unacked entry.
  redis.call('XACK', stream, group, id)
  redis.call('XDEL', stream, id)
end

local function pending_count(stream, group)
  -- Entries the group's consumers hold unacked (0 when there is no group yet).
  local p = redis.pcall('XPENDING', stream, group)
  if type(p) ~= 'table' or p.err then return 0 end
  return tonumber(p[1])
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function schedule(stream, delayed, bodies, body, delay_ms, token)
  if delay_ms <= 0 then
    redis.call('XADD', stream, '*', 'body', body)
  else
    redis.call('ZADD', delayed, string.format('%d', now_ms() + delay_ms), token)
    redis.call('HSET', bodies, token, body)
  end
end
"""

# KEYS[1] stream; ARGV group, consumer, id... -> a string of '1' (acked) and
# '0' (not owned), one per id: one bulk reply is far cheaper to parse than N
# integers, and one XACK/XDEL for all owned ids is cheaper than one per id.
ACK = """
local flags, owned = {}, {}
for i = 3, #ARGV do
  if owned_count(KEYS[1], ARGV[1], ARGV[2], ARGV[i]) then
    owned[#owned + 1] = ARGV[i]
    flags[#flags + 1] = '1'
  else
    flags[#flags + 1] = '0'
  end
end
for i = 1, #owned, 1000 do
  local chunk = {unpack(owned, i, math.min(i + 999, #owned))}
  redis.call('XACK', KEYS[1], ARGV[1], unpack(chunk))
  redis.call('XDEL', KEYS[1], unpack(chunk))
end
return table.concat(flags)
"""

# KEYS[1] stream; ARGV group, consumer, id, uncount -> 1 moved | 0 not owned.
# Requeue (uncount 0) and release (uncount 1: that receipt never started, so it
# is not an attempt): append a copy carrying the count, drop the original.
MOVE_BACK = """
local count = owned_count(KEYS[1], ARGV[1], ARGV[2], ARGV[3])
if not count then return 0 end
local entry = redis.call('XRANGE', KEYS[1], ARGV[3], ARGV[3])
if entry[1] then
  local fields, prior = {}, 0
  local f = entry[1][2]
  for i = 1, #f, 2 do
    if f[i] == 'dc' then
      prior = tonumber(f[i + 1]) or 0
    else
      fields[#fields + 1] = f[i]
      fields[#fields + 1] = f[i + 1]
    end
  end
  local carried = math.max(prior + count - tonumber(ARGV[4]), 0)
  fields[#fields + 1] = 'dc'
  fields[#fields + 1] = string.format('%d', carried)
  redis.call('XADD', KEYS[1], '*', unpack(fields))
end
drop(KEYS[1], ARGV[1], ARGV[3])
return 1
"""

# KEYS stream, delayed, bodies; ARGV group, consumer, id, body, delay_ms, nonce
# -> 1 | 0 not owned. Adding the copy and acking the original are one step, so
# a crash can neither lose nor double it. (The token names the original's
# message id when its entry, written by an earlier version, has an id field.)
RETRY = """
if not owned_count(KEYS[1], ARGV[1], ARGV[2], ARGV[3]) then return 0 end
local mid = ''
local entry = redis.call('XRANGE', KEYS[1], ARGV[3], ARGV[3])
if entry[1] then
  local f = entry[1][2]
  for i = 1, #f, 2 do
    if f[i] == 'id' then mid = f[i + 1] end
  end
end
schedule(KEYS[1], KEYS[2], KEYS[3], ARGV[4], tonumber(ARGV[5]), ARGV[6] .. ':' .. mid)
drop(KEYS[1], ARGV[1], ARGV[3])
return 1
"""

# KEYS stream, delayed, bodies; ARGV body, message id, delay_ms, token.
PUBLISH_DELAYED = """
schedule(KEYS[1], KEYS[2], KEYS[3], ARGV[1], tonumber(ARGV[3]), ARGV[4])
return 1
"""

# KEYS stream, delayed, bodies; ARGV group, max_length, delay_ms, then body,
# message id, token for each message -> 1 added | 0 full (nothing added).
# Waiting = ready + delayed as stats counts them: stream length minus the PEL
# (acked entries are deleted, so the stream holds ready and unacked only),
# plus the delayed set. Counted and added in one step: no publish in between.
PUBLISH_BOUNDED = """
local waiting = redis.call('XLEN', KEYS[1]) - pending_count(KEYS[1], ARGV[1])
  + redis.call('ZCARD', KEYS[2])
if waiting + (#ARGV - 3) / 3 > tonumber(ARGV[2]) then return 0 end
for i = 4, #ARGV, 3 do
  schedule(KEYS[1], KEYS[2], KEYS[3], ARGV[i], tonumber(ARGV[3]), ARGV[i + 2])
end
return 1
"""

# KEYS stream, dead; ARGV group, consumer, id, maxlen (0: unbounded), field,
# value, ... -> 1 | 0 not owned.
DEAD_LETTER = """
if not owned_count(KEYS[1], ARGV[1], ARGV[2], ARGV[3]) then return 0 end
local args = {KEYS[2]}
if tonumber(ARGV[4]) > 0 then
  args[#args + 1] = 'MAXLEN'
  args[#args + 1] = '~'
  args[#args + 1] = ARGV[4]
end
args[#args + 1] = '*'
for i = 5, #ARGV do args[#args + 1] = ARGV[i] end
redis.call('XADD', unpack(args))
drop(KEYS[1], ARGV[1], ARGV[3])
return 1
"""

# KEYS[1] stream; ARGV group, consumer, renew (1|0), id... -> {1 held | 0 lost}.
# XCLAIM with min-idle 0 would take the entry from anyone, hence the check
# first; JUSTID resets the idle time without counting a delivery.
EXTEND = """
local out = {}
for i = 4, #ARGV do
  if owned_count(KEYS[1], ARGV[1], ARGV[2], ARGV[i]) then
    if ARGV[3] == '1' then
      redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    end
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
"""

# KEYS[1] stream; ARGV group, consumer, min_idle_ms, cursor, count
# -> {next cursor, {{id, fields, delivery count}, ...}}.
RECLAIM = """
local r = redis.pcall('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4],
                      'COUNT', ARGV[5])
if type(r) ~= 'table' or r.err then return {'0-0', {}} end
local out = {}
for _, e in ipairs(r[2]) do
  if type(e) == 'table' and e[2] then
    local p = redis.call('XPENDING', KEYS[1], ARGV[1], e[1], e[1], 1)
    local count = 1
    if p[1] then count = p[1][4] end
    out[#out + 1] = {e[1], e[2], count}
  end
end
return {r[1], out}
"""

# KEYS stream, delayed, bodies; ARGV limit -> {moved, ms to the next due or -1}.
PROMOTE = """
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, token in ipairs(due) do
  local body = redis.call('HGET', KEYS[3], token)
  if body then
    redis.call('XADD', KEYS[1], '*', 'body', body)
  end
  redis.call('ZREM', KEYS[2], token)
  redis.call('HDEL', KEYS[3], token)
end
local nxt = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local wait = -1
if nxt[2] then wait = math.max(tonumber(nxt[2]) - now, 0) end
return {#due, wait}
"""

# KEYS streams in priority order; ARGV group, consumer, count, then optionally one
# ceiling per stream (max_unacked; 0: none)
# -> {{stream, entries}, ...}, never more than count entries in all, in stream
# order. When every entry read from a stream holds only its body (the usual
# case), its entries are one string, "<id> <body length> <body>" after one
# another: one reply element to parse in Python for the whole batch, where
# XREADGROUP's reply has 5 per entry (reading was the worker's largest cost
# per task). Otherwise {id, fields, id, fields, ...}.
# (One XREADGROUP over several streams applies COUNT to each stream.) A stream
# with a ceiling gives only what keeps its PEL, all consumers together, at or
# below it: counted and read in one step, so no other consumer reads in between.
FETCH = """
local left = tonumber(ARGV[3])
local out = {}
for i, key in ipairs(KEYS) do
  if left <= 0 then break end
  local want = left
  local ceiling = tonumber(ARGV[3 + i] or '0')
  if ceiling > 0 then
    want = math.min(want, ceiling - pending_count(key, ARGV[1]))
  end
  if want > 0 then
    local r = redis.pcall('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', want,
                          'STREAMS', key, '>')
    if type(r) == 'table' and r.err then
      redis.call('XGROUP', 'CREATE', key, ARGV[1], '0', 'MKSTREAM')
      r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', want,
                     'STREAMS', key, '>')
    end
    if r and r[1] then
      local entries, packed = r[1][2], true
      for _, e in ipairs(entries) do
        if not (#e[2] == 2 and e[2][1] == 'body') then packed = false end
      end
      local reply = {}
      for _, e in ipairs(entries) do
        if packed then
          reply[#reply + 1] = e[1] .. ' ' .. #e[2][2] .. ' '
          reply[#reply + 1] = e[2][2]
        else
          reply[#reply + 1] = e[1]
          reply[#reply + 1] = e[2]
        end
      end
      if packed then reply = table.concat(reply) end
      out[#out + 1] = {key, reply}
      left = left - #r[1][2]
    end
  end
end
return out
"""

# KEYS[1] stream; ARGV group, consumer (or '' for none), min idle ms.
# Deletes the named consumer, and consumers idle longer than min idle, but only
# when they hold nothing: XGROUP DELCONSUMER drops a consumer's pending entries,
# which would lose them.
FORGET_CONSUMERS = """
local info = redis.pcall('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if type(info) ~= 'table' or info.err then return 0 end
local removed = 0
for _, c in ipairs(info) do
  local name, pending, idle
  for i = 1, #c, 2 do
    if c[i] == 'name' then name = c[i + 1]
    elseif c[i] == 'pending' then pending = tonumber(c[i + 1])
    elseif c[i] == 'idle' then idle = tonumber(c[i + 1]) end
  end
  if pending == 0 and (name == ARGV[2] or idle > tonumber(ARGV[3])) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)
    removed = removed + 1
  end
end
return removed
"""

# KEYS stream, dead, delayed; ARGV group, max_length (0: unbounded), then
# entry id, body for each letter -> {letters moved, 1 full | 0}.
# A replay: each letter still there becomes a fresh entry of the stream (no
# ``dc``: its deliveries are counted from 1) and leaves the dead stream, in
# one atomic step. A letter gone already (another replay or purge took it)
# gets no copy. A copy is new work: the queue's max_length holds for it as
# for PUBLISH_BOUNDED (waiting counted the same way), copy by copy; the first
# copy without room stops the script, its letter and the rest left as they are.
REPLAY_LETTERS = """
local bound = tonumber(ARGV[2])
local waiting = 0
if bound > 0 then
  waiting = redis.call('XLEN', KEYS[1]) - pending_count(KEYS[1], ARGV[1])
    + redis.call('ZCARD', KEYS[3])
end
local moved = 0
for i = 3, #ARGV, 2 do
  if #redis.call('XRANGE', KEYS[2], ARGV[i], ARGV[i]) > 0 then
    if bound > 0 and waiting >= bound then return {moved, 1} end
    redis.call('XADD', KEYS[1], '*', 'body', ARGV[i + 1])
    redis.call('XDEL', KEYS[2], ARGV[i])
    moved = moved + 1
    waiting = waiting + 1
  end
end
return {moved, 0}
"""

# KEYS stream, delayed, dead; ARGV group -> {length, pending, delayed, dead}.
STATS = """
local pending = 0
local p = redis.pcall('XPENDING', KEYS[1], ARGV[1])
if type(p) == 'table' and not p.err then pending = p[1] end
return {redis.call('XLEN', KEYS[1]), pending, redis.call('ZCARD', KEYS[2]),
        redis.call('XLEN', KEYS[3])}
"""


@dataclass(frozen=True, slots=True)
class Script:
    """A script's full source and its SHA1, computed here so EVALSHA needs no load first."""

    name: str
    source: str
    sha: str


def _script(name: str, body: str) -> Script:
    source = _PRELUDE + body
    return Script(name, source, hashlib.sha1(source.encode()).hexdigest())


SCRIPTS: dict[str, Script] = {
    name: _script(name, body)
    for name, body in {
        "ack": ACK,
        "move_back": MOVE_BACK,
        "retry": RETRY,
        "publish_delayed": PUBLISH_DELAYED,
        "publish_bounded": PUBLISH_BOUNDED,
        "dead_letter": DEAD_LETTER,
        "extend": EXTEND,
        "reclaim": RECLAIM,
        "promote": PROMOTE,
        "fetch": FETCH,
        "forget_consumers": FORGET_CONSUMERS,
        "stats": STATS,
        "replay_letters": REPLAY_LETTERS,
    }.items()
}
