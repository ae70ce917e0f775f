-- wrk: POST /get for 100 random ids of the preloaded 10,000 in one request.
math.randomseed(os.time())
request = function()
  local ids = {}
  for i = 1, 100 do
    ids[i] = string.format('"k%015d"', math.random(0, 9999))
  end
  local body = '{"ids":[' .. table.concat(ids, ",") .. ']}'
  return wrk.format("POST", "/v1/bench/users/get", {["Content-Type"] = "application/json"}, body)
end
