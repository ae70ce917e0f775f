#!/usr/bin/env bash
# The HTTP contract: schemathesis runs all its checks against a live `stowage serve` (redb),
# using the OpenAPI document the server itself serves; any failure fails this script.
#   bash scripts/http-contract.sh              (SEED=1 EXAMPLES=20 by default)
# schemathesis is installed into target/schemathesis-venv (pinned) on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
SEED=${SEED:-1}
EXAMPLES=${EXAMPLES:-20}
SCHEMATHESIS_VERSION=4.32.5
root=$(pwd)
venv="$root/target/schemathesis-venv"
if ! "$venv/bin/schemathesis" --version 2> /dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  echo "== installing schemathesis $SCHEMATHESIS_VERSION into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
# The test build's binary (same profile and features as README's test command): in CI the
# suite has built it already, so this builds nothing.
cargo build -q --workspace --all-features --profile test --bin stowage
dir=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2> /dev/null; rm -rf "$dir"' EXIT
"$root/target/debug/stowage" serve --url "redb://$dir/contract.redb" --addr 127.0.0.1:0 > "$dir/out" 2> "$dir/log" &
pid=$!
for _ in $(seq 100); do grep -q serving "$dir/out" 2> /dev/null && break; sleep 0.1; done
base=$(sed -n 's/.* on //p' "$dir/out")
[ -n "$base" ] || { cat "$dir/out" "$dir/log"; echo "stowage serve did not start"; exit 1; }
# From the temporary directory, so that hypothesis's example database lands there.
cd "$dir"
timeout 1200 "$venv/bin/schemathesis" run --checks all "$base/openapi.json" \
  --max-examples "$EXAMPLES" --seed "$SEED" --no-color
