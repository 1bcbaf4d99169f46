-- The mix sampler: draws (size class, object) pairs from a response-size mix.
--
-- Used by wrk (workloads/lua/wrk_bench.lua) and, unchanged, by the test that
-- checks its proportions under plain LuaJIT (the same LuaJIT wrk links).
--
-- classes: { { name = "1KB", weight = 7000, paths = { "/obj/1KB/0.bin", ... } }, ... }
-- Weights are integers (1/100 of a percent); a draw is one integer in
-- [1, total] against the cumulative weights, then an object of the class
-- uniformly.  Each wrk thread seeds its own generator with (seed, stream), so
-- a run is reproducible and threads do not draw the same sequence.

function sampler_new(classes, seed, stream)
  local cum, total = {}, 0
  for i, c in ipairs(classes) do
    total = total + c.weight
    cum[i] = total
  end
  -- LuaJIT's math.random is a Tausworthe generator with per-state seed, so
  -- every wrk thread (one Lua state each) has its own stream.
  math.randomseed(seed * 65537 + stream)
  -- The first values after seeding are correlated with the seed: skip some.
  for _ = 1, 16 do math.random() end
  return { cum = cum, total = total, classes = classes, n = #classes }
end

function sampler_draw(s)
  local r = math.random(s.total)
  local ci = 1
  while r > s.cum[ci] do ci = ci + 1 end
  local paths = s.classes[ci].paths
  return ci, math.random(#paths)
end
