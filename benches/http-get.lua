-- wrk: GET random records of the preloaded 10,000.
math.randomseed(os.time())
request = function()
  return wrk.format("GET", string.format("/v1/bench/users/records/k%015d", math.random(0, 9999)))
end
