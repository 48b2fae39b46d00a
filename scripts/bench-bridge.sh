#!/usr/bin/env bash
# bench-bridge.sh runs the bridge benchmarks (gateway/bridge_bench_test.go)
# against Debian's mosquitto on loopback as the cloud broker, and prints a summary:
#
#   BenchmarkBridgeReplay   outbox replay throughput: 100,000 QoS 1 messages of 200
#                           bytes queued while mosquitto is down, msgs/s from the
#                           bridge reconnecting to the last one at a cloud
#                           subscriber; bridge window 32 (default) and 256, and a
#                           direct publish to mosquitto with the same window.
#   BenchmarkBridgeLatency  live forwarding latency, one 200-byte QoS 1 message at
#                           a time, local publish -> cloud subscriber, p50/p99 in
#                           microseconds; direct publish to mosquitto, bridge
#                           (store batch), bridge with store.durability strict.
#
# Environment:
#   COUNT              go test -count (default 3)
#   REPLAY_BENCHTIME   -benchtime of the replay benchmark (default 1x: one replay
#                      of 100,000 messages per run)
#   LATENCY_BENCHTIME  -benchtime of the latency benchmark (default 5000x messages)
#   OUT                file for the raw go test output (default: a temporary file)
#
# The numbers depend on the machine; docs/bridge.md has a measured set.
set -uo pipefail
cd "$(dirname "$0")/.."

scripts/test-deps.sh || exit 1

COUNT=${COUNT:-3}
REPLAY_BENCHTIME=${REPLAY_BENCHTIME:-1x}
LATENCY_BENCHTIME=${LATENCY_BENCHTIME:-5000x}
out=${OUT:-}
if [[ -z $out ]]; then
	out=$(mktemp)
	trap 'rm -f "$out"' EXIT
fi

echo "# $(go version | cut -d' ' -f3-); $(nproc) CPUs ($(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)); $(free -m | awk '/^Mem:/{print $2" MB RAM"}')"
echo "# $(mosquitto -h 2>/dev/null | head -1); $(uname -srm)"
status=0
run() {
	echo "# go test -run '^\$' -bench '$1' -benchtime=$2 -count=$COUNT ./gateway/"
	go test -run '^$' -bench "$1" -benchtime="$2" -count="$COUNT" -timeout 30m ./gateway/ 2>&1 | tee -a "$out"
	local s=${PIPESTATUS[0]}
	if ((s != 0)); then status=$s; fi
}
run 'BenchmarkBridgeReplay$' "$REPLAY_BENCHTIME"
run 'BenchmarkBridgeLatency$' "$LATENCY_BENCHTIME"

echo
echo "# summary: mean (min-max) over $COUNT runs"
awk -v cols='msgs/s:%.0f p50-us:%.0f p99-us:%.0f' -v namewidth=46 -f scripts/bench-summary.awk "$out"
exit "$status"
