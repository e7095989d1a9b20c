//! The Lua scripts: each touches the keys of one room only (one hash tag),
//! so the same scripts run on a single Redis and on a Redis Cluster.

/// Publish. KEYS: meta, stream, idempotency key, channel. ARGV: deadline
/// (Unix ms), epoch suffix, body, history_size, history_ttl (ms, 0 = no
/// age limit), key window (s, 0 = no key), the publish command, meta ttl (ms).
///
/// Refuses once the deadline passed (Redis `TIME`): a 4013 stays final.
/// Answers `{'late'}`, `{'dup', epoch, offset}` or `{'ok', epoch, offset}`.
pub(super) const PUBLISH: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now > tonumber(ARGV[1]) then return {'late'} end
local window = tonumber(ARGV[6])
if window > 0 then
  local seen = redis.call('GET', KEYS[3])
  if seen then
    local sp = string.find(seen, ' ', 1, true)
    return {'dup', string.sub(seen, 1, sp - 1), tonumber(string.sub(seen, sp + 1))}
  end
end
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  epoch = string.format('%08x', tonumber(t[1])) .. ARGV[2]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'e', epoch, 'o', 0)
end
local offset = redis.call('HINCRBY', KEYS[1], 'o', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[8])
local size = tonumber(ARGV[4])
if size > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', size, offset .. '-1', 't', now, 'b', ARGV[3])
  local ttl = tonumber(ARGV[5])
  if ttl > 0 then
    redis.call('PEXPIRE', KEYS[2], ttl)
    local old = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 32)
    for _, e in ipairs(old) do
      if tonumber(e[2][2]) + ttl < now then
        redis.call('XDEL', KEYS[2], e[1])
      else
        break
      end
    end
  end
end
if window > 0 then
  redis.call('SET', KEYS[3], epoch .. ' ' .. offset, 'EX', window)
end
redis.call(ARGV[7], KEYS[4], 'm' .. epoch .. ' ' .. offset .. ' ' .. ARGV[3])
return {'ok', epoch, offset}
"#;

/// Read. KEYS: meta, stream. ARGV: epoch suffix, after (-1 = the latest),
/// limit, meta ttl (ms). A room that Redis does not know gets its epoch now
/// (so that a subscriber's position is kept). Answers
/// `{epoch, offset, offset1, body1, offset2, body2, ...}`, oldest first.
pub(super) const READ: &str = r#"
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  local t = redis.call('TIME')
  epoch = string.format('%08x', tonumber(t[1])) .. ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'e', epoch, 'o', 0)
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
local offset = tonumber(redis.call('HGET', KEYS[1], 'o'))
local out = {epoch, offset}
local limit = tonumber(ARGV[3])
if limit > 0 then
  local after = tonumber(ARGV[2])
  local entries
  if after >= 0 then
    entries = redis.call('XRANGE', KEYS[2], '(' .. after .. '-1', '+', 'COUNT', limit)
  else
    entries = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', limit)
    local n = #entries
    for i = 1, math.floor(n / 2) do
      entries[i], entries[n - i + 1] = entries[n - i + 1], entries[i]
    end
  end
  for _, e in ipairs(entries) do
    local id = e[1]
    out[#out + 1] = tonumber(string.sub(id, 1, string.find(id, '-', 1, true) - 1))
    local f = e[2]
    for i = 1, #f, 2 do
      if f[i] == 'b' then out[#out + 1] = f[i + 1] end
    end
  end
end
return out
"#;

/// Join. KEYS: presence zset, member hash, channel. ARGV: client, member
/// record, ttl (ms), the publish command.
pub(super) const JOIN: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ttl * 2)
redis.call('PEXPIRE', KEYS[2], ttl * 2)
redis.call(ARGV[4], KEYS[3], 'j' .. ARGV[2])
return 1
"#;

/// Leave. KEYS: presence zset, member hash, channel. ARGV: client, the
/// publish command. Announces the leave only if the member was there.
pub(super) const LEAVE: &str = r#"
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  local m = redis.call('HGET', KEYS[2], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  if m then redis.call(ARGV[2], KEYS[3], 'l' .. m) end
end
return 1
"#;

/// The presence tick of one room, run by each node that listens to it every
/// third of the ttl. KEYS: presence zset, member hash, channel. ARGV: ttl
/// (ms), the publish command, then pairs (client, member record) of this
/// node's members. Refreshes them, then removes every member whose expiry
/// passed (a node that died stopped refreshing them) and announces its
/// leave: the `ZREM` makes exactly one node announce each.
pub(super) const TICK: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
for i = 3, #ARGV, 2 do
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[i])
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
end
if #ARGV > 2 then
  redis.call('PEXPIRE', KEYS[1], ttl * 2)
  redis.call('PEXPIRE', KEYS[2], ttl * 2)
end
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for _, c in ipairs(gone) do
  if redis.call('ZREM', KEYS[1], c) == 1 then
    local m = redis.call('HGET', KEYS[2], c)
    redis.call('HDEL', KEYS[2], c)
    if m then redis.call(ARGV[2], KEYS[3], 'l' .. m) end
  end
end
return #gone
"#;

/// Presence read. KEYS: presence zset, member hash. Answers the member
/// records of the members whose expiry has not passed.
pub(super) const MEMBERS: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local live = redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')
if #live == 0 then return {} end
local out = {}
local records = redis.call('HMGET', KEYS[2], unpack(live))
for _, m in ipairs(records) do
  if m then out[#out + 1] = m end
end
return out
"#;

/// Lease: take it if free, renew it if held by ARGV[1]. KEYS: the lease.
/// ARGV: holder, ttl (ms). Answers 1 when the holder holds it.
pub(super) const LEASE: &str = r#"
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"#;

/// Release a lease held by ARGV[1]. KEYS: the lease.
pub(super) const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"#;

/// Register a node in the node registry (the server API's `info`).
/// KEYS: the registry hash. ARGV: node, ttl (ms), connections, rooms.
/// The entry is `EXPIRY CONNECTIONS ROOMS`, the expiry read from Redis
/// `TIME` (Unix ms), so that the nodes' clocks do not matter.
pub(super) const REGISTER: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[1], (now + tonumber(ARGV[2])) .. ' ' .. ARGV[3] .. ' ' .. ARGV[4])
return 1
"#;

/// The live nodes of the registry, as a flat list `node, connections,
/// rooms, ...`; entries whose expiry passed are removed. KEYS: the registry.
pub(super) const NODES: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local all = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #all, 2 do
  local exp, conns, rooms = string.match(all[i + 1], '^(%d+) (%d+) (%d+)$')
  if exp and tonumber(exp) >= now then
    table.insert(out, all[i])
    table.insert(out, conns)
    table.insert(out, rooms)
  else
    redis.call('HDEL', KEYS[1], all[i])
  end
end
return out
"#;
