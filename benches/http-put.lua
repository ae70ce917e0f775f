-- wrk: PUT new records with ~200-byte JSON bodies, unique ids per connection.
local counter = 0
local thread_id = 0
setup = function(thread)
  thread:set("thread_id", thread_id)
  thread_id = thread_id + 1
end
request = function()
  counter = counter + 1
  local body = string.format('{"id":%d,"name":"user-%08d","email":"user%d@example.com","score":%.2f,"active":true,"tags":["alpha","echo"],"created":"2024-03-14T12:05:00Z","note":"abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz"}', counter, counter, counter, (counter % 10000) / 100)
  return wrk.format("PUT", string.format("/v1/bench/users/records/p%d-%d", thread_id, counter), {["Content-Type"] = "application/json"}, body)
end
