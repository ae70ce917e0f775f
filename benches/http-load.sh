#!/usr/bin/env bash
# Load on `stowage serve` (redb, durable) next to redis-benchmark on the machine's Redis, in
# one run: GET, PUT and PATCH of one hot record at 64 connections, requests/s with p50 and p99.
#   bash benches/http-load.sh            (needs wrk and redis-benchmark: apt-get install wrk redis-tools)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
cargo build --release -q -p stowage-cli
dir=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
./target/release/stowage serve --url "redb://$dir/load.redb" --addr 127.0.0.1:0 > "$dir/out" 2>/dev/null &
pid=$!
for _ in $(seq 50); do grep -q serving "$dir/out" 2>/dev/null && break; sleep 0.1; done
base=$(sed -n 's/.* on //p' "$dir/out")
curl -sf -X PUT "$base/v1/bench/collections/users" -d '{"indexes":[{"name":"score","path":"/score","type":"float"}]}' > /dev/null
# Preload 10,000 records in batches of 100.
python3 - "$base" <<'PY'
import json, sys, urllib.request
base = sys.argv[1]
for b in range(100):
    ops = [{"op": "upsert", "collection": "users", "id": "k%015d" % i,
            "body": {"id": i, "name": "user-%08d" % i, "email": "user%d@example.com" % i, "score": (i * 37 % 10000) / 100,
                     "active": i % 2 == 0, "tags": ["alpha", "echo"], "created": "2024-03-14T12:05:00Z", "note": "x" * 60}}
           for i in range(b * 100, b * 100 + 100)]
    req = urllib.request.Request(base + "/v1/bench/batch", data=json.dumps({"ops": ops}).encode(), method="POST")
    urllib.request.urlopen(req).read()
PY
row() { # name, wrk output
  local rps p50 p99
  rps=$(grep "Requests/sec" <<<"$2" | awk '{print $2}')
  p50=$(grep -E "^ +50%" <<<"$2" | awk '{print $2}')
  p99=$(grep -E "^ +99%" <<<"$2" | awk '{print $2}')
  echo "| $1 | $rps | $p50 | $p99 |"
}
get=$(wrk -t2 -c64 -d"$DURATION" --latency -s benches/http-get.lua "$base")
# 100 ids per request: one engine call per request (records/s is 100x requests/s).
get_many=$(wrk -t2 -c64 -d"$DURATION" --latency -s benches/http-get-many.lua "$base")
# One SSE watcher on the collection during the PUT load: events/s, and the time from each
# write's updated_at (the server's clock) to the event's arrival here (same machine).
python3 - "$base" > "$dir/sse" <<'PY' &
import datetime, http.client, json, sys, time, urllib.parse
url = urllib.parse.urlparse(sys.argv[1])
conn = http.client.HTTPConnection(url.hostname, url.port)
conn.request("GET", "/v1/bench/users/watch")
resp = conn.getresponse()
lags, gaps, first, last = [], 0, None, None
resp.fp.raw._sock.settimeout(3)  # the stream is idle 3 s after the load: done
try:
    for line in resp.fp:
        if not line.startswith(b"data:"):
            continue
        now = time.time()
        e = json.loads(line[5:])
        if e["op"] == "gap":
            gaps += 1
            continue
        at = datetime.datetime.fromisoformat(e["at"].replace("Z", "+00:00")).timestamp()
        lags.append(now - at)
        first = first or now
        last = now
except (TimeoutError, OSError):
    pass
lags.sort()
pct = lambda p: "%.2fms" % (1000 * lags[min(len(lags) - 1, int(p * len(lags)))]) if lags else "-"
rate = len(lags) / (last - first) if lags and last > first else 0
print("| stowage serve, SSE watcher during the PUT load (events/s; latency from updated_at) | %.2f | %s | %s |" % (rate, pct(0.5), pct(0.99)))
print("events %d, gaps %d" % (len(lags), gaps))
PY
sse_pid=$!
sleep 0.5
put=$(wrk -t2 -c64 -d"$DURATION" --latency -s benches/http-put.lua "$base")
wait $sse_pid || true
# Mutations: every connection adds 1 to one record; the count afterwards must be exact.
curl -sf -X PUT "$base/v1/bench/collections/counters" -d '{}' > /dev/null
patch=$(wrk -t2 -c64 -d"$DURATION" --latency -s benches/http-patch.lua "$base")
patched=$(grep -E "requests in" <<<"$patch" | awk '{print $1}')
counted=$(curl -sf "$base/v1/bench/counters/records/hot" | python3 -c 'import json,sys; print(json.load(sys.stdin)["n"])')
errors=$(grep -E "Non-2xx|Socket errors" <<<"$get$get_many$put$patch" || true)
echo
echo "| load, 64 connections | requests/s | p50 | p99 |"
echo "|---|---|---|---|"
row "stowage serve, GET (redb)" "$get"
row "stowage serve, bulk get of 100 ids, POST /get (redb; records/s = 100x)" "$get_many"
row "stowage serve, PUT (redb, durable)" "$put"
row "stowage serve, PATCH one hot record, add 1 (redb, durable)" "$patch"
head -1 "$dir/sse"
if command -v redis-benchmark > /dev/null; then
  # A database of its own (15), emptied afterwards: the machine's Redis is shared.
  redis-benchmark -h 127.0.0.1 -p 6379 --dbnum 15 -c 64 -n 200000 -t get,set -d 200 -r 10000 --csv 2>/dev/null \
    | tr -d '"' | awk -F, 'NR>1 {printf "| redis-benchmark %s (for scale) | %s | %s ms | %s ms |\n", $1, $2, $5, $7}'
  # MGET of 100 of the keys the SET run wrote: the bulk read's peer.
  # shellcheck disable=SC2046
  redis-benchmark -h 127.0.0.1 -p 6379 --dbnum 15 -c 64 -n 50000 -r 10000 -d 200 --csv \
    MGET $(for _ in $(seq 100); do printf 'key:__rand_int__ '; done) 2>/dev/null \
    | tr -d '"' | awk -F, 'NR>1 {printf "| redis-benchmark MGET of 100 keys (for scale) | %s | %s ms | %s ms |\n", $2, $5, $7}'
  redis-cli -n 15 flushdb > /dev/null
fi
[ -n "$errors" ] && echo "wrk: $errors"
puts=$(grep -E "requests in" <<<"$put" | awk '{print $1}')
echo "SSE: $(tail -1 "$dir/sse") for $puts PUTs"
echo "PATCH: the counter holds $counted after $patched requests (wrk counts requests still in flight when it stops)"
echo
echo "command: bash benches/http-load.sh (DURATION=$DURATION, wrk -t2 -c64, 10,000 preloaded records)"
