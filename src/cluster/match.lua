-- The cluster's matchmaking, run atomically by Redis (EVALSHA): see
-- src/cluster/script.rs for the keys, the operations and their replies.
-- KEYS[1] = "{NAME}" (the hash tag every key starts with); ARGV[1] = op.
local P = KEYS[1]
local op = ARGV[1]
local MAX_SCAN = 1003 -- 3 + MAX_BLOCKED_SKIPS, as the local matchmaker

local function tk(id) return P .. ':tk:' .. id end

-- The queue order and the pair counter start from the clock (microseconds)
-- when Redis has none: a restarted, empty Redis never hands out a pair id
-- or a place in line that an earlier one gave (re-joined clients keep
-- their places ahead of newcomers).
local function counter(key)
  if redis.call('EXISTS', key) == 0 then
    local t = redis.call('TIME')
    redis.call('SET', key, tonumber(t[1]) * 1000000 + tonumber(t[2]))
  end
  return redis.call('INCR', key)
end

-- Node liveness, asked once per node per call.
local alive_cache = {}
local function alive(node)
  local a = alive_cache[node]
  if a == nil then
    a = redis.call('EXISTS', P .. ':node:' .. node) == 1
    alive_cache[node] = a
  end
  return a
end

local function load(id)
  local h = redis.call('HGETALL', tk(id))
  if #h == 0 then return nil end
  local t = {id = id}
  for i = 1, #h, 2 do t[h[i]] = h[i + 1] end
  t.tags_json = t.tags or '[]'
  t.tags = cjson.decode(t.tags_json)
  t.seq = tonumber(t.seq)
  return t
end

local function remove(t)
  redis.call('ZREM', P .. ':q', t.id)
  redis.call('ZREM', P .. ':open', t.id)
  for _, tag in ipairs(t.tags) do redis.call('ZREM', P .. ':t:' .. tag, t.id) end
  redis.call('DEL', tk(t.id))
end

local function blocked(a, b)
  if a == '' or b == '' then return false end
  local k = a < b and (a .. '|' .. b) or (b .. '|' .. a)
  return redis.call('EXISTS', P .. ':blk:' .. k) == 1
end

-- x: the searcher (table); x_queued: whether x's ticket is in the queue.
local function find(x, x_queued)
  local count = redis.call('ZCARD', P .. ':q')
  if not x_queued then count = count + 1 end
  local third = count >= 3
  -- The first acceptable ticket of a set, in score order, looking at no
  -- more than MAX_SCAN: a page of 4 first (the answer is almost always
  -- there), then pages of 100, by score, so that tickets removed on the
  -- way (dead nodes) do not shift the pages.
  local function first(key)
    local scanned, from, size = 0, '-inf', 4
    while scanned < MAX_SCAN do
      local n = math.min(size, MAX_SCAN - scanned)
      local page = redis.call('ZRANGEBYSCORE', key, from, '+inf', 'WITHSCORES',
        'LIMIT', 0, n)
      for i = 1, #page, 2 do
        local id = page[i]
        from = '(' .. page[i + 1]
        scanned = scanned + 1
        if id ~= x.id then
          local y = load(id)
          if y == nil then
            redis.call('ZREM', key, id)
          elseif not alive(y.node) then
            remove(y)
          elseif not (third and x.prev == y.id and y.prev == x.id)
              and not blocked(x.addr, y.addr) then
            return y
          end
        end
      end
      if #page < 2 * n then return nil end
      size = 100
    end
    return nil
  end
  local best = nil
  for _, tag in ipairs(x.tags) do
    local y = first(P .. ':t:' .. tag)
    if y ~= nil and (best == nil or y.seq < best.seq) then best = y end
  end
  if best == nil and x.open == '1' then best = first(P .. ':open') end
  return best
end

-- Down to two queued: the re-pair rule no longer keeps them apart, so the
-- older one's node is asked to search again (as `finish_turn` does).
local function nudge_if_two()
  if redis.call('ZCARD', P .. ':q') == 2 then
    local ids = redis.call('ZRANGE', P .. ':q', 0, 0)
    local y = ids[1] and load(ids[1])
    if y ~= nil then
      redis.call('PUBLISH', P .. ':n:' .. y.node,
        'N' .. cjson.encode({serial = y.serial, gid = y.gid}))
    end
  end
end

-- x and y are paired: y's ticket (and x's, if queued) is gone; y's node
-- gets the offer in the same atomic step.
local function matched(x, y)
  remove(y)
  local counter = counter(P .. ':pairs')
  local x_init = (x.seq ~= nil and x.seq < y.seq) and 1 or 0
  if y.node ~= x.node then
    -- Numbers as decimal strings: cjson would round them to 14 digits.
    redis.call('PUBLISH', P .. ':n:' .. y.node, 'O' .. cjson.encode({
      pair = string.format('%d', counter), y_init = 1 - x_init,
      x = {node = x.node, serial = x.serial, gid = x.gid, addr = x.addr,
           thread = x.thread, conn = x.conn, tags = x.tags_json},
      y = {serial = y.serial, gid = y.gid}}))
  end
  nudge_if_two()
  return {1, counter, x_init, y.node, y.serial, y.gid, y.addr,
          y.tags_json, y.thread, y.conn}
end

local function add(x)
  redis.call('HSET', tk(x.id), 'node', x.node, 'serial', x.serial,
    'gid', x.gid, 'tags', x.tags_json, 'prev', x.prev,
    'addr', x.addr, 'seq', string.format('%d', x.seq), 'open', x.open, 'thread', x.thread,
    'conn', x.conn)
  redis.call('ZADD', P .. ':q', x.seq, x.id)
  if x.open == '1' then redis.call('ZADD', P .. ':open', x.seq, x.id) end
  for _, tag in ipairs(x.tags) do
    redis.call('ZADD', P .. ':t:' .. tag, x.seq, x.id)
  end
end

if op == 'join' then
  -- ARGV: op node serial gid prev addr open keep_seq tags_json thread conn
  local x = {node = ARGV[2], serial = ARGV[3], gid = ARGV[4], prev = ARGV[5],
             addr = ARGV[6], open = ARGV[7], tags_json = ARGV[9],
             tags = cjson.decode(ARGV[9]), thread = ARGV[10], conn = ARGV[11]}
  x.id = x.node .. ':' .. x.serial
  if ARGV[8] ~= '' then x.seq = tonumber(ARGV[8]) end
  local y = find(x, false)
  if y ~= nil then return matched(x, y) end
  if x.seq == nil then x.seq = counter(P .. ':seq') end
  add(x)
  return {0, x.seq}
elseif op == 'search' then
  -- ARGV: op node serial open
  local x = load(ARGV[2] .. ':' .. ARGV[3])
  if x == nil then return {2} end
  if ARGV[4] == '1' and x.open ~= '1' then
    x.open = '1'
    redis.call('HSET', tk(x.id), 'open', '1')
    redis.call('ZADD', P .. ':open', x.seq, x.id)
  end
  local y = find(x, true)
  if y == nil then return {0, x.seq} end
  remove(x)
  return matched(x, y)
elseif op == 'leave' then
  -- ARGV: op node serial
  local x = load(ARGV[2] .. ':' .. ARGV[3])
  if x ~= nil then remove(x) end
  nudge_if_two()
  return {0}
elseif op == 'beat' then
  -- ARGV: op node counts ttl_ms. Refreshes this node's key, returns every
  -- live node's counts (and forgets the dead).
  redis.call('SET', P .. ':node:' .. ARGV[2], ARGV[3], 'PX', ARGV[4])
  redis.call('SADD', P .. ':nodes', ARGV[2])
  local out = {}
  for _, id in ipairs(redis.call('SMEMBERS', P .. ':nodes')) do
    local v = redis.call('GET', P .. ':node:' .. id)
    if v then
      out[#out + 1] = id
      out[#out + 1] = v
    else
      redis.call('SREM', P .. ':nodes', id)
    end
  end
  return out
end
return redis.error_reply('unknown op')
