-- wrk: PATCH one hot record, adding 1 to its counter: every connection on the same record.
request = function()
  return wrk.format("PATCH", "/v1/bench/counters/records/hot", {["Content-Type"] = "application/json"},
    '{"mutations":[{"op":"add","path":"/n","value":1}]}')
end
