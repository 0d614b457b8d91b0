-- wrk script: POST batches of BATCH_SIZE (default 500) distinct ORDER events to
-- /api/v1/events/batch. Environment as post_event.lua (TOKEN, TENANT, RUN).
local counter = 0
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

local thread_id = 0
function init(args)
  thread_id = tid or 0
end

local payload = "eyJpZCI6ImMtMSIsImVtYWlsIjoiYUBleGFtcGxlLmNvbSIsImZpcnN0TmFtZSI6IkFkYSJ9"
local run = os.getenv("RUN") or tostring(os.time())
local size = tonumber(os.getenv("BATCH_SIZE") or "500")
local headers = {
  ["Content-Type"] = "application/json",
  ["Authorization"] = "Bearer " .. (os.getenv("TOKEN") or ""),
  ["X-TWC-Tenant"] = os.getenv("TENANT") or "",
}

request = function()
  local items = {}
  for i = 1, size do
    counter = counter + 1
    local id = "batch-" .. run .. "-" .. thread_id .. "-" .. counter
    items[i] = '{"id":"' .. id .. '","entity_id":"o-' .. counter ..
      '","event_type":"ORDER","event_source":"CONNECTOR","event_payload":{"operation":"CREATE",' ..
      '"key_attributes":{"correlationId":"' .. id .. '"},"base64_encoded_payload_json":"' ..
      payload .. '"}}'
  end
  return wrk.format("POST", "/api/v1/events/batch", headers, "[" .. table.concat(items, ",") .. "]")
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"duration_us":%d,"requests":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"mean":%.1f,"max":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d}}\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
end
