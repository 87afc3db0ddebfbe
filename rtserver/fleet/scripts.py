"""The Lua scripts behind the Redis store: each is one atomic step on one session's keys.

Every key of a session shares the hash tag ``{sid}`` (``rt:{sid}:s`` its state, ``:t`` its turns, ``:f`` its
frame stream, ``:c`` its sharded channel), so a script touches one slot and the same deployment runs on a single
Redis or a cluster. Every write of an owner carries its generation (the fencing token) and is refused when the
session's ``gen`` has moved on: a node that lost its lease can never overwrite the new owner's state.
"""

from __future__ import annotations

# KEYS: s f. ARGV: me, owner-as-seen, now, a new epoch. A session is taken when nobody owns it (it was parked
# cleanly: its epoch, seq and frames carry on) or when its owner is dead (a crash: the frames the dead owner may
# have sent but never wrote cannot be trusted, so a new epoch starts and the stream goes).
ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, ''} end
local owner = redis.call('HGET', KEYS[1], 'owner') or ''
if owner == ARGV[1] then return {tonumber(redis.call('HGET', KEYS[1], 'gen')), 'mine'} end
if owner ~= ARGV[2] then return {-2, owner} end
local gen = redis.call('HINCRBY', KEYS[1], 'gen', 1)
local how = 'clean'
if owner ~= '' or redis.call('HGET', KEYS[1], 'clean') ~= '1' then
  how = 'takeover'
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', ARGV[4], 'seq', 0)
end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'clean', '0', 'used', ARGV[3])
return {gen, how}
"""

# KEYS: s t f. ARGV: gen, ttl_ms, n (field pairs for s), s pairs..., t pairs... Fenced writes of state and turns.
WRITE = """
if redis.call('HGET', KEYS[1], 'gen') ~= ARGV[1] then return -1 end
local n = tonumber(ARGV[3])
if n > 0 then redis.call('HSET', KEYS[1], unpack(ARGV, 4, 3 + 2 * n)) end
if #ARGV > 3 + 2 * n then redis.call('HSET', KEYS[2], unpack(ARGV, 4 + 2 * n, #ARGV)) end
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
return 1
"""

# KEYS: s t f. ARGV: gen. The owner deletes the session.
DELETE = """
if redis.call('HGET', KEYS[1], 'gen') ~= ARGV[1] then return -1 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
return 1
"""

# KEYS: s f c. ARGV: gen, epoch, first seq, maxlen, frames ttl_ms, at, message, running, frame... Appends a
# batch of a session's frames to its stream (stream id = seq) and relays them on its channel as one message;
# ``running`` (when not empty) records the turn that started, so a takeover can say it was lost.
APPEND = """
if redis.call('HGET', KEYS[1], 'gen') ~= ARGV[1] then return -1 end
if ARGV[8] ~= '' then redis.call('HSET', KEYS[1], 'running', ARGV[8]) end
local seq = tonumber(ARGV[3])
local maxlen = ARGV[4]
for i = 9, #ARGV do
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', maxlen, seq .. '-0', 'd', ARGV[i])
  seq = seq + 1
end
redis.call('HSET', KEYS[1], 'epoch', ARGV[2], 'seq', seq - 1, 'at', ARGV[6])
local ttl = tonumber(ARGV[5])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
redis.call('SPUBLISH', KEYS[3], ARGV[7])
return 1
"""

# KEYS: s. ARGV: gen, pairs... The session leaves its owner's memory: nobody owns it, its frames stay.
RELEASE = """
if redis.call('HGET', KEYS[1], 'gen') ~= ARGV[1] then return -1 end
redis.call('HSET', KEYS[1], 'owner', '', 'clean', '1', unpack(ARGV, 2, #ARGV))
return 1
"""
