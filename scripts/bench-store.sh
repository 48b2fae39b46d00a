#!/usr/bin/env bash
# bench-store.sh runs the session store benchmarks (gateway/bench_test.go):
# 200-byte QoS 1 messages to one persistent subscriber, store.durability strict
# and batch, 1 and 16 publishers, subscriber online (BenchmarkStore) and offline
# (BenchmarkStoreOffline), and prints a summary table.
#
# Environment:
#   BENCHTIME         go test -benchtime (default 2s; e.g. 20000x for a fixed count)
#   COUNT             go test -count (default 3)
#   BENCH             benchmark regexp (default BenchmarkStore, which matches both)
#   SKIP              go test -skip regexp, e.g. BenchmarkStore/strict/16 (default none)
#   EDGEGW_BENCH_DIR  directory for the data_dir (default: the Go temp dir, $GOTMPDIR
#                     or /tmp); it must be on the disk to measure, not on tmpfs
#   EDGEGW_BENCH_DEVSTAT=1  also report dev-B/msg, the sectors written to the data_dir's
#                     block device; only when nothing else writes to it (loop device,
#                     dedicated SD card)
#   BENCHSTAT         benchstat command; "none" prints the plain table only. Default:
#                     benchstat from PATH, else `go run golang.org/x/perf/cmd/benchstat@latest`
#   OUT               file for the raw go test output (default: a temporary file)
#
# Numbers vary between machines and disks; see docs/store-measurements.md.
set -uo pipefail
cd "$(dirname "$0")/.."

BENCHTIME=${BENCHTIME:-2s}
COUNT=${COUNT:-3}
BENCH=${BENCH:-BenchmarkStore}
SKIP=${SKIP:-}
dir=${EDGEGW_BENCH_DIR:-${GOTMPDIR:-${TMPDIR:-/tmp}}}
out=${OUT:-}
if [[ -z $out ]]; then
	out=$(mktemp)
	trap 'rm -f "$out"' EXIT
fi

echo "# $(go version | cut -d' ' -f3-); $(nproc) CPUs; $(free -m | awk '/^Mem:/{print $2" MB RAM"}')"
echo "# data_dir under $dir: $(df -PT "$dir" | awk 'NR==2{print $2" on "$1}')"
echo "# go test -run '^\$' -bench '$BENCH' ${SKIP:+-skip '$SKIP' }-benchtime=$BENCHTIME -count=$COUNT ./gateway/"
go test -run '^$' -bench "$BENCH" ${SKIP:+-skip "$SKIP"} -benchtime="$BENCHTIME" -count="$COUNT" -timeout 60m ./gateway/ 2>&1 | tee "$out"
status=${PIPESTATUS[0]}

echo
echo "# summary: mean (min-max) over $COUNT runs"
awk -v cols='msgs/s:%.0f write-B/msg:%.0f commits/msg:%.4f written/msg:%.3f skipped/msg:%.3f db-B/msg:%.0f dev-B/msg:%.0f' -v namewidth=32 -f scripts/bench-summary.awk "$out"

bs=${BENCHSTAT:-}
if [[ -z $bs ]]; then
	if command -v benchstat >/dev/null 2>&1; then
		bs=benchstat
	else
		bs="go run golang.org/x/perf/cmd/benchstat@latest"
	fi
fi
if [[ $bs != none ]]; then
	echo
	echo "# benchstat"
	$bs "$out" 2>/dev/null || echo "(benchstat not available; set BENCHSTAT=none to skip it)"
fi
exit "$status"
