#!/usr/bin/env bash
# Load on `stowage serve` (redb, durable) next to redis-benchmark on the machine's Redis, in
# one run: GET and PUT at 64 connections, requests/s with p50 and p99.
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
put=$(wrk -t2 -c64 -d"$DURATION" --latency -s benches/http-put.lua "$base")
errors=$(grep -E "Non-2xx|Socket errors" <<<"$get$put" || true)
echo
echo "| load, 64 connections | requests/s | p50 | p99 |"
echo "|---|---|---|---|"
row "stowage serve, GET (redb)" "$get"
row "stowage serve, PUT (redb, durable)" "$put"
if command -v redis-benchmark > /dev/null; then
  # A database of its own (15), emptied afterwards: the machine's Redis is shared.
  redis-benchmark -h 127.0.0.1 -p 6379 --dbnum 15 -c 64 -n 200000 -t get,set -d 200 -r 10000 --csv 2>/dev/null \
    | tr -d '"' | awk -F, 'NR>1 {printf "| redis-benchmark %s (for scale) | %s | %s ms | %s ms |\n", $1, $2, $5, $7}'
  redis-cli -n 15 flushdb > /dev/null
fi
[ -n "$errors" ] && echo "wrk: $errors"
echo
echo "command: bash benches/http-load.sh (DURATION=$DURATION, wrk -t2 -c64, 10,000 preloaded records)"
