-- wrk script: POST a distinct event per request (ids from thread id + counter).
-- Needs TOKEN and TENANT in the environment.
local counter = 0
local thread_id = 0
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  thread_id = tid or 0
end

local payload = "eyJpZCI6ImMtMSIsImVtYWlsIjoiYUBleGFtcGxlLmNvbSIsImZpcnN0TmFtZSI6IkFkYSJ9"
local run = tostring(os.time())

request = function()
  counter = counter + 1
  local id = "bench-" .. run .. "-" .. thread_id .. "-" .. counter
  local body = '{"id":"' .. id .. '","entity_id":"o-' .. counter ..
    '","event_type":"ORDER","event_source":"CONNECTOR","event_payload":{"operation":"CREATE",' ..
    '"key_attributes":{"correlationId":"' .. id .. '"},"base64_encoded_payload_json":"' ..
    payload .. '"}}'
  return wrk.format("POST", "/api/v1/events", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. os.getenv("TOKEN"),
    ["X-TWC-Tenant"] = os.getenv("TENANT"),
  }, body)
end
