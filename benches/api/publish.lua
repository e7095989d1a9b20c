-- wrk script: POST /api/publish with a bearer key, one small JSON message
-- per request, over kept-alive connections (see benches/README.md).
--   wrk -t2 -c32 -d5s -s benches/api/publish.lua http://127.0.0.1:PORT/api/publish
-- The key comes from the environment: API_KEY (default "bench").
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("API_KEY") or "bench")
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"room": "bench:api", "data": {"n": 1, "text": "hello"}}'

done = function(summary, latency, requests)
  local bad = summary.errors.status
  io.write(string.format("non-2xx: %d\n", bad))
end
