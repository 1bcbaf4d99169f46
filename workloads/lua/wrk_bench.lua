-- wrk script of the bench: requests drawn from a response-size mix, and one
-- JSON document on stdout at the end.
--
-- The runner prepends `CONFIG = {...}` and sampler.lua to this file:
--   CONFIG.classes   size classes with integer weights and object paths
--   CONFIG.seed      seed of the sampler (each thread adds its index)
--   CONFIG.headers   extra request headers ("Connection: close" for one
--                    connection per request; wrk then reconnects per request)
--   CONFIG.delay_ms  pause before each request on a connection (the probe)
--   CONFIG.role      "load" or "probe", echoed in the JSON
--   CONFIG.alternate (the re-route workload) header sets, added to the drawn
--                    request in turn; a thread's turns are its connection's
--                    when it has one connection (bench/reroute.py)
--
-- The latency histogram goes out whole (see histogram() below), so that the
-- analysis can merge repetitions instead of averaging their percentiles.
--
-- No response() callback: with one, wrk parses every header into Lua and
-- buffers bodies, which would make the load generator, not the system under
-- test, the bottleneck for 10 MB responses.  Status errors come from wrk's
-- own counter (responses with status > 399).

local threads = {}
local nthreads = 0

function setup(thread)
  nthreads = nthreads + 1
  thread:set("thread_index", nthreads)
  table.insert(threads, thread)
end

local function prepare(extra)
  local headers = {}
  for name, v in pairs(CONFIG.headers) do headers[name] = v end
  for name, v in pairs(extra) do headers[name] = v end
  local out = {}
  for ci, c in ipairs(CONFIG.classes) do
    out[ci] = {}
    for pi, p in ipairs(c.paths) do
      out[ci][pi] = wrk.format("GET", p, headers)
    end
  end
  return out
end

function init(args)
  S = sampler_new(CONFIG.classes, CONFIG.seed, thread_index)
  drawn = {}
  for ci in ipairs(CONFIG.classes) do drawn[ci] = 0 end
  turns = {}
  for k, extra in ipairs(CONFIG.alternate or { {} }) do turns[k] = prepare(extra) end
  turn = 0
end

function request()
  local ci, pi = sampler_draw(S)
  drawn[ci] = drawn[ci] + 1
  turn = turn % #turns + 1
  return turns[turn][ci][pi]
end

if CONFIG.delay_ms and CONFIG.delay_ms > 0 then
  function delay()
    return CONFIG.delay_ms
  end
end

local function encode(v)
  local t = type(v)
  if t == "table" then
    if #v > 0 or next(v) == nil then
      local out = {}
      for _, x in ipairs(v) do out[#out + 1] = encode(x) end
      return "[" .. table.concat(out, ",") .. "]"
    end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = tostring(k) end
    table.sort(keys)
    local out = {}
    for _, k in ipairs(keys) do out[#out + 1] = string.format("%q", k) .. ":" .. encode(v[k]) end
    return "{" .. table.concat(out, ",") .. "}"
  elseif t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return "null" end
    return string.format("%.17g", v)
  elseif t == "string" then
    return string.format("%q", v):gsub("\\\n", "\\n")
  elseif t == "boolean" then
    return tostring(v)
  end
  return "null"
end

-- wrk's latency histogram as wrk holds it when done() runs: the count of every
-- microsecond value, as a flat list {v1, c1, v2 - v1, c2, ...} (values that
-- occur, ascending, as deltas).  wrk's Lua API walks it with latency(i), which
-- scans from the minimum for every i: quadratic in the span of values, minutes
-- for a run with a long tail.  So the array is read once, directly, through
-- LuaJIT's FFI with wrk 4.1's layout of `stats` (src/stats.h: count, limit,
-- min, max, data[]), checked against the API's own min, max and count first.
-- From 0, not from min: wrk's correction (bench/wrk.py) adds counts below it.
local function histogram(latency)
  local ok, ffi = pcall(require, "ffi")
  if not ok then return nil, "LuaJIT FFI unavailable" end
  pcall(ffi.cdef, "typedef struct { uint64_t count, limit, min, max; uint64_t data[?]; } miresga_wrk_stats;")
  local s = ffi.cast("miresga_wrk_stats **", latency)[0]
  local lo, hi = tonumber(s.min), tonumber(s.max)
  if lo ~= latency.min or hi ~= latency.max or hi >= tonumber(s.limit) then
    return nil, "wrk's stats are not laid out as in wrk 4.1"
  end
  local out, total, prev = {}, 0, 0
  if lo <= hi then
    for v = 0, hi do
      local c = tonumber(s.data[v])
      if c > 0 then
        out[#out + 1] = v - prev
        out[#out + 1] = c
        prev = v
        total = total + c
      end
    end
  end
  if total ~= tonumber(s.count) then
    return nil, "wrk's stats are not laid out as in wrk 4.1 (counts do not add up)"
  end
  return out, nil
end

function done(summary, latency, requests)
  local drawn_by_class = {}
  for ci, c in ipairs(CONFIG.classes) do drawn_by_class[c.name] = 0 end
  for _, thread in ipairs(threads) do
    local d = thread:get("drawn")
    for ci, c in ipairs(CONFIG.classes) do
      drawn_by_class[c.name] = drawn_by_class[c.name] + ((d and d[ci]) or 0)
    end
  end
  local pct = {}
  for _, p in ipairs({ 50, 90, 99, 99.9, 99.99 }) do
    pct[tostring(p)] = latency:percentile(p)
  end
  -- A histogram that cannot be read costs the run its histogram, not its result.
  local read, hist, hist_error = pcall(histogram, latency)
  if not read then hist, hist_error = nil, tostring(hist) end
  local e = summary.errors
  local doc = {
    format = "miresga-bench-wrk",
    version = 1,
    role = CONFIG.role,
    threads = nthreads,
    duration_us = summary.duration,
    requests = summary.requests,
    bytes = summary.bytes,
    requests_per_s = summary.requests / (summary.duration / 1e6),
    bytes_per_s = summary.bytes / (summary.duration / 1e6),
    latency_us = {
      min = latency.min, max = latency.max, mean = latency.mean, stdev = latency.stdev,
      percentiles = pct,
    },
    latency_histogram_us = hist,
    latency_histogram_error = hist_error,
    errors = { connect = e.connect, read = e.read, write = e.write,
               status = e.status, timeout = e.timeout },
    drawn = drawn_by_class,
  }
  io.write("\n----BEGIN MIRESGA-BENCH JSON----\n", encode(doc), "\n----END MIRESGA-BENCH JSON----\n")
end
