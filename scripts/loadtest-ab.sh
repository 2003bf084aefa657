#!/usr/bin/env bash
# Compares two load generators (two chorus binaries' `chorus loadtest`)
# against the same media node, alternating them: the one-node cluster of
# BENCHMARKS.md ("Load test and forwarding cost"), the media node alone on
# CPU 1 and from NEW_BIN, Redis, a master, the proxy and the generator on
# CPU 0. Each run prints the load test's summary line and the node's
# forwarded packets and bytes (chorus_media_forwarded_{packets,bytes}_total)
# over the run, from which the mean packet size follows. The roles restart
# for each run.
#
# Usage: scripts/loadtest-ab.sh OLD_BIN NEW_BIN busy|small [runs]
#   busy:  5 sessions 7-to-7 (210 subscriptions), 40 s held
#   small: 2 sessions 4-to-4 (24 subscriptions), 30 s held
# Needs redis-server, curl and taskset. Ports 46400-46403.
set -euo pipefail
cd "$(dirname "$0")/.."
old=$1 new=$2 scenario=$3 runs=${4:-2}
case $scenario in
busy) flags=(--participants 7 --sessions 5 --ramp 7 --duration 40s) ;;
small) flags=(--participants 4 --sessions 2 --ramp 4 --duration 30s) ;;
*) echo "scenario: busy or small" >&2; exit 2 ;;
esac
rport=46400 mport=46401 udp=46402 pport=46403
dir=$(mktemp -d)
pids=()
stop() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
trap 'stop; rm -rf "$dir"' EXIT

secret=S$RANDOM$RANDOM cluster=C$RANDOM$RANDOM
export CHORUS_REDIS_ADDRS=127.0.0.1:$rport CHORUS_SECRET=$secret CHORUS_CLUSTER_SECRET=$cluster CHORUS_LOG_LEVEL=warn

forwarded() {
  curl -s -H "Authorization: Bearer $cluster" "http://127.0.0.1:$mport/metrics" |
    awk '/^chorus_media_forwarded_(packets|bytes)_total/ { sub(/\{.*\}/, "", $1); printf "%s=%s ", $1, $2 }'
}

run() {
  local gen=$1 tag=$2
  taskset -c 0 redis-server --port $rport --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" >"$dir/redis.log" 2>&1 &
  pids+=($!)
  taskset -c 0 "$new" master --master-listen 127.0.0.1:$((pport + 10)) --master-public-url "ws://localhost:$pport" >"$dir/master.log" 2>&1 &
  pids+=($!)
  taskset -c 1 "$new" media --media-listen 127.0.0.1:$mport --media-udp-port $udp --media-bind-ip 127.0.0.1 >"$dir/media.log" 2>&1 &
  pids+=($!)
  taskset -c 0 "$new" proxy --proxy-listen 127.0.0.1:$pport >"$dir/proxy.log" 2>&1 &
  pids+=($!)
  sleep 4
  local before after
  before=$(forwarded)
  taskset -c 0 "$gen" loadtest --url "http://localhost:$pport" --secret "$secret" --loopback "${flags[@]}" >"$dir/$tag.txt" 2>&1 || true
  after=$(forwarded)
  echo "$tag: $(grep -E '^sessions' "$dir/$tag.txt" || tail -3 "$dir/$tag.txt")"
  echo "$tag: node counters before [$before] after [$after]"
  stop
  sleep 2
}

for i in $(seq "$runs"); do
  run "$old" "old$i"
  run "$new" "new$i"
done
