/**
 * Lua scripts: each keeps one step atomic on one Cluster slot.
 * Time is Redis server time (TIME), so every producer and consumer agrees on it.
 */
import { Script } from './client.js';

/** Bodies per push payload: large batches are published in pieces of about this size. */
export const PUBLISH_CHUNK = 256 * 1024;

const HELPERS = `
local function s(n) return string.format('%d', n) end
local function nowMs()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function offOf(id) return tonumber(string.match(id, '^(%d+)')) end
local function fieldT(f)
  for j = 1, #f, 2 do if f[j] == 't' then return tonumber(f[j + 1]) end end
  return nil
end
local function tsAt(log, off)
  local e = redis.call('XRANGE', log, s(off) .. '-1', s(off) .. '-1')
  if #e == 0 then return nil end
  return fieldT(e[1][2])
end
-- first offset whose time is >= ts (binary search; times rise with offsets), nil if the log is empty
local function firstAtOrAfter(log, ts)
  local first = redis.call('XRANGE', log, '-', '+', 'COUNT', 1)
  if #first == 0 then return nil end
  local last = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)
  local lo, hi = offOf(first[1][1]), offOf(last[1][1])
  while lo <= hi do
    local mid = math.floor((lo + hi) / 2)
    local t = tsAt(log, mid)
    if t == nil or t < ts then lo = mid + 1 else hi = mid - 1 end
  end
  return lo
end
-- the last-delivered id a group needs to read 'from' next
local function startId(log, meta, mode, value)
  if mode == 'earliest' then return '0' end
  if mode == 'latest' then return '$' end
  if mode == 'offset' then return s(tonumber(value)) .. '-0' end
  local off = firstAtOrAfter(log, tonumber(value))
  if off == nil then off = tonumber(redis.call('HGET', meta, 'next') or '0') end
  return s(off) .. '-0'
end
`;

/**
 * KEYS: log, meta, keyBuckets. ARGV: channel, durable ('1'/'0'), maxLen (0 = none),
 * maxAgeMs (0 = skip the age check this time), then (bucket or '', body) per message.
 * Offsets come from meta.next in the same script as the XADDs, so they are
 * contiguous and the batch is all or nothing (the first write is the counter:
 * if Redis refuses it, e.g. OOM, nothing is written).
 * Push: one PUBLISH per PUBLISH_CHUNK bytes of bodies, not one per message
 * (codec.ts, push payload). Returns {firstOffset or -1, time}.
 */
export const PRODUCE = new Script(
  HELPERS +
    `
local now = nowMs()
local sNow = s(now)
local n = (#ARGV - 4) / 2
local durable = ARGV[2] == '1'
local first
if durable then
  first = redis.call('HINCRBY', KEYS[2], 'next', n) - n
else
  first = redis.call('HINCRBY', KEYS[2], 'pseq', n) - n
end
local chunkFirst, chunkCount, chunkBytes, parts = first, 0, 0, {}
local function publish()
  if chunkCount == 0 then return end
  local off = ''
  if durable then off = s(chunkFirst) end
  redis.call('PUBLISH', ARGV[1], off .. ',' .. sNow .. ',' .. s(chunkFirst) .. ',' .. chunkCount .. ',' .. table.concat(parts))
  chunkFirst, chunkCount, chunkBytes, parts = chunkFirst + chunkCount, 0, 0, {}
end
local bytes = 0
for i = 0, n - 1 do
  local body = ARGV[6 + i * 2]
  if durable then
    local off = first + i
    local bucket = ARGV[5 + i * 2]
    local id = s(off) .. '-1'
    local prev = nil
    if bucket ~= '' then
      prev = redis.call('HGET', KEYS[3], bucket)
      redis.call('HSET', KEYS[3], bucket, s(off))
    end
    if prev then
      redis.call('XADD', KEYS[1], id, 't', sNow, 'm', body, 'p', prev)
    else
      redis.call('XADD', KEYS[1], id, 't', sNow, 'm', body)
    end
    bytes = bytes + #body
  end
  parts[#parts + 1] = #body .. ','
  parts[#parts + 1] = body
  chunkCount = chunkCount + 1
  chunkBytes = chunkBytes + #body
  if chunkBytes >= ${PUBLISH_CHUNK} then publish() end
end
publish()
if not durable then return {-1, now} end
redis.call('HINCRBY', KEYS[2], 'bytes', bytes)
redis.call('HINCRBY', KEYS[2], 'count', n)
if ARGV[3] ~= '0' then redis.call('XTRIM', KEYS[1], 'MAXLEN', ARGV[3]) end
local maxAge = tonumber(ARGV[4])
if maxAge > 0 then
  local cutoff = now - maxAge
  local oldest = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
  if #oldest > 0 then
    local t0 = fieldT(oldest[1][2])
    -- cheap check first: search only when the oldest message has expired
    if t0 and t0 < cutoff then
      local cut = firstAtOrAfter(KEYS[1], cutoff)
      redis.call('XTRIM', KEYS[1], 'MINID', s(cut) .. '-0')
    end
  end
end
return {first, now}
`,
);

/** KEYS: log, meta. ARGV: group, mode, value. Creates the group if new (1), leaves an existing one alone (0). */
export const CREATE_GROUP = new Script(
  HELPERS +
    `
local id = startId(KEYS[1], KEYS[2], ARGV[2], ARGV[3])
local ok, err = pcall(redis.call, 'XGROUP', 'CREATE', KEYS[1], ARGV[1], id, 'MKSTREAM')
if ok then return 1 end
if string.find(tostring(err), 'BUSYGROUP') then return 0 end
return redis.error_reply(tostring(err))
`,
);

/**
 * KEYS: log, meta. ARGV: group, mode, value. Moves (or creates) the group and
 * acks everything it had pending, so it starts over exactly at the new position.
 */
export const RESET_GROUP = new Script(
  HELPERS +
    `
local id = startId(KEYS[1], KEYS[2], ARGV[2], ARGV[3])
local ok = pcall(redis.call, 'XGROUP', 'CREATE', KEYS[1], ARGV[1], id, 'MKSTREAM')
if ok then return 1 end
while true do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1000)
  if #p == 0 then break end
  local ids = {}
  for i = 1, #p do ids[i] = p[i][1] end
  redis.call('XACK', KEYS[1], ARGV[1], unpack(ids))
end
redis.call('XGROUP', 'SETID', KEYS[1], ARGV[1], id)
return 0
`,
);

/**
 * KEYS: log, group members zset. ARGV: group, me, max count.
 * Takes over the pending messages of every group consumer that is not live
 * (no unexpired heartbeat), and forgets consumers with nothing pending. One
 * atomic step: liveness and claims are seen together, so a member that just
 * joined is never mistaken for a dead one, and two members sweeping at once
 * never both get a message. Returns {entries, delivery counts before}.
 */
export const SWEEP = new Script(
  HELPERS +
    `
local now = nowMs()
local budget = tonumber(ARGV[3])
local entries, counts = {}, {}
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local name, pending = nil, 0
  for j = 1, #c, 2 do
    if c[j] == 'name' then name = c[j + 1] elseif c[j] == 'pending' then pending = tonumber(c[j + 1]) end
  end
  local score = redis.call('ZSCORE', KEYS[2], name)
  if name ~= ARGV[2] and (not score or tonumber(score) < now) then
    if pending == 0 then
      redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)
    elseif budget > 0 then
      local p = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', budget, name)
      local ids, seen = {}, {}
      for i = 1, #p do
        ids[i] = p[i][1]
        seen[p[i][1]] = p[i][4]
      end
      for _, e in ipairs(redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, unpack(ids))) do
        entries[#entries + 1] = e
        counts[#counts + 1] = seen[e[1]] or 0
      end
      budget = budget - #p
      if #p == pending then redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name) end
    end
  end
end
return {entries, counts}
`,
);

/** KEYS: log, meta. ARGV: timestamp. First offset at or after the time, or the next offset. */
export const OFFSET_FOR_TIME = new Script(
  HELPERS +
    `
local off = firstAtOrAfter(KEYS[1], tonumber(ARGV[1]))
if off == nil then off = tonumber(redis.call('HGET', KEYS[2], 'next') or '0') end
return off
`,
);

/**
 * KEYS: a membership zset. ARGV: member, ttlMs, '1' to leave.
 * Renews (or removes) the member, forgets expired ones, returns the live members sorted.
 */
export const HEARTBEAT = new Script(
  HELPERS +
    `
local now = nowMs()
if ARGV[3] == '1' then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 10)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGE', KEYS[1], 0, -1)
`,
);

/**
 * KEYS: the pattern's request list. ARGV: alive channel, max queued, expire ms, requests….
 * 0 when no responder is subscribed to the alive channel (NO_RESPONDERS), else queued: 1.
 * On Cluster responders SSUBSCRIBE the alive channel (same slot as the list), so it counts SHARDNUMSUB.
 */
const rpcRequest = (numsub: 'NUMSUB' | 'SHARDNUMSUB') =>
  new Script(`
local live = redis.call('PUBSUB', '${numsub}', ARGV[1])[2]
if tonumber(live) == 0 then return 0 end
redis.call('LPUSH', KEYS[1], unpack(ARGV, 4))
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[2]) - 1)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
`);
export const RPC_REQUEST = rpcRequest('NUMSUB');
export const RPC_REQUEST_SHARDED = rpcRequest('SHARDNUMSUB');
