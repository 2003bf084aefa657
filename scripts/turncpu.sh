#!/usr/bin/env bash
# Measures the CPU a `chorus turn` process spends per relayed packet, beside
# the media node's CPU per forwarded packet (BENCHMARKS.md, "CPU per relayed
# packet"). A one-node cluster on loopback (Redis, a master, a media node, the
# proxy, one TURN server) whose load test participants use relayed candidates
# only (`chorus loadtest --relay`), so all their media crosses the TURN
# server. The TURN process runs alone on CPU 1, everything else on CPU 0. Its
# CPU time is utime+stime from /proc/<pid>/stat over the load test; its
# relayed packets are the counters it logs when it stops.
#
# Usage: scripts/turncpu.sh [chorus loadtest flags]
#   (default: --participants 4 --sessions 2 --ramp 4 --duration 30s)
# Needs bin/chorus (make build), redis-server and taskset. Ports 46390-46394.
set -euo pipefail
cd "$(dirname "$0")/.."
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--participants 4 --sessions 2 --ramp 4 --duration 30s)
rport=46390 mport=46391 udp=46392 pport=46393 tport=46394
dir=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT

secret=S$RANDOM$RANDOM
export CHORUS_REDIS_ADDRS=127.0.0.1:$rport CHORUS_SECRET=$secret CHORUS_LOG_LEVEL=warn \
  CHORUS_CLUSTER_SECRET=$(od -An -tx1 -N24 /dev/urandom | tr -d " \n") \
  CHORUS_TURN_SECRET=turn-$(od -An -tx1 -N12 /dev/urandom | tr -d " \n") \
  CHORUS_TURN_URLS="turn:127.0.0.1:$tport?transport=udp"
taskset -c 0 redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no >"$dir/redis.log" 2>&1 &
pids+=($!)
sleep 0.5
taskset -c 0 bin/chorus master --master-listen 127.0.0.1:$((pport + 10)) --master-public-url ws://localhost:$pport >"$dir/master.log" 2>&1 &
pids+=($!)
taskset -c 0 bin/chorus media --media-listen 127.0.0.1:$mport --media-udp-port $udp --media-tcp-port -1 \
  --media-bind-ip 127.0.0.1 >"$dir/media.log" 2>&1 &
pids+=($!)
taskset -c 0 bin/chorus proxy --proxy-listen 127.0.0.1:$pport >"$dir/proxy.log" 2>&1 &
pids+=($!)
CHORUS_LOG_LEVEL=info taskset -c 1 bin/chorus turn --turn-listen-ip 127.0.0.1 --turn-relay-ip 127.0.0.1 \
  --turn-port $tport --turn-relay-port-min 0 --turn-relay-port-max 0 >"$dir/turn.log" 2>&1 &
turn=$!
pids+=($turn)
ready=
for _ in $(seq 150); do
  if curl -fsu "OPENVIDUAPP:$secret" "http://127.0.0.1:$pport/openvidu/api/media-nodes" 2>/dev/null | grep -q '"status":"running"'; then
    ready=1
    break
  fi
  sleep 0.2
done
[ -n "$ready" ] || { echo "the cluster did not come up:"; tail -n 5 "$dir"/*.log; exit 1; }

ticks() { awk '{print $14 + $15}' "/proc/$turn/stat"; }
hz=$(getconf CLK_TCK)
before=$(ticks)
taskset -c 0 bin/chorus loadtest --url "http://localhost:$pport" --secret "$secret" --loopback --relay --quiet \
  --json "$dir/loadtest.json" "${args[@]}"
after=$(ticks)
kill -TERM "$turn"
wait "$turn" || true
relayed=$(grep -o 'relayed_packets=[0-9]*' "$dir/turn.log" | cut -d= -f2)
[ -n "$relayed" ] && [ "$relayed" -gt 0 ] || { echo "the TURN server relayed nothing:"; cat "$dir/turn.log"; exit 1; }
awk -v t=$((after - before)) -v hz="$hz" -v n="$relayed" 'BEGIN {
  printf "chorus turn: %.2f s CPU for %d relayed packets: %.2f us per relayed packet\n", t / hz, n, t / hz / n * 1e6 }'
grep -o '"media_node_cpu_us_per_forwarded_packet": *[0-9.]*\|"packet_loss_ratio": *[0-9.e-]*' "$dir/loadtest.json"
