#!/usr/bin/env bash
# bench-instructions prints the instructions the broker path executes per
# message (QoS 0 and QoS 1, gateway's BenchmarkQoS0PathExact and
# BenchmarkQoS1PathExact), counted by valgrind's callgrind. Unlike time, an
# instruction count does not depend on what else the machine runs, so two trees
# can be compared on a busy machine (docs/benchmarks.md, "Fifth round").
#
# Each benchmark runs twice under callgrind, with N1 and N2 messages; the
# difference of the two totals divided by N2 - N1 is the cost of one message,
# without start-up and shut-down. What one message costs covers the whole
# process: the broker, the test's raw MQTT clients (the same code in every tree
# that has these benchmarks), the garbage collector and the scheduler. The
# figures move by about 1 % between runs (goroutine scheduling differs).
#
#   scripts/bench-instructions.sh            # the tree this script is in
#   TREE=/path/to/other/checkout scripts/bench-instructions.sh
#   OUT=/tmp/cg scripts/bench-instructions.sh  # keep the callgrind files
#   scripts/callgrind-diff.py /tmp/cg-old /tmp/cg QoS0PathExact   # per function
#
# N1, N2 (default 5000, 25000) set the two message counts. About 2-3 minutes on
# 2 cores (the two benchmarks run in parallel, each on one core). The process
# runs with GOMAXPROCS=1 unless GOMAXPROCS is set: valgrind runs one thread at
# a time anyway, and with two Ps the scheduler's idle spinning and work
# stealing varied by several per cent between runs. What the collector and
# the scheduler do still varies a little, so one figure can be off by a per
# cent or two: REPEAT=3 repeats the pair and prints each figure and the median
# (for comparing trees, use it). Needs
# valgrind. GODEBUG: callgrind fails on Go's asynchronous preemption signals,
# and valgrind 3.19 does not know the RDTSCP instruction.
set -euo pipefail

tree=${TREE:-$(cd "$(dirname "$0")/.." && pwd)}
n1=${N1:-5000}
n2=${N2:-25000}
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
command -v valgrind >/dev/null || { echo "bench-instructions: valgrind is not installed" >&2; exit 1; }
(( n2 > n1 )) || { echo "bench-instructions: N2 ($n2) must be above N1 ($n1)" >&2; exit 1; }

bin=$out/gateway.test
(cd "$tree" && go test -c -o "$bin" ./gateway/)

# count BENCH N: total instructions of one run. callgrind now and then fails
# an assertion on a signal Go's runtime handles (valgrind 3.19): tried again,
# up to 3 times.
count() {
	local file=$out/$1-$2 try
	for try in 1 2 3; do
		if GOMAXPROCS=${GOMAXPROCS:-1} GODEBUG=asyncpreemptoff=1,cpu.rdtscp=off valgrind --tool=callgrind \
			--callgrind-out-file="$file.out" "$bin" -test.run '^$' -test.bench "^Benchmark$1\$" \
			-test.benchtime "$2x" >"$file.log" 2>&1; then
			grep -E '^==[0-9]+== (I +refs|Collected) *:' "$file.log" | tail -1 | awk '{gsub(",", "", $NF); print $NF}' >"$file.ir"
			return 0
		fi
	done
	echo "bench-instructions: $1 with $2 messages failed 3 times (see $file.log)" >&2
	return 1
}

per() { # BENCH: count N1 and N2 one after the other, REPEAT times; print the differences per message
	local r a b all=()
	for ((r = 1; r <= ${REPEAT:-1}; r++)); do
		count "$1" "$n1" && count "$1" "$n2" || return 1
		a=$(cat "$out/$1-$n1.ir")
		b=$(cat "$out/$1-$n2.ir")
		all+=($(((b - a) / (n2 - n1))))
	done
	local median
	median=$(printf '%s\n' "${all[@]}" | sort -n | sed -n "$(((${#all[@]} + 1) / 2))p")
	printf '%-16s %8d instructions/message  (runs: %s; %d and %d messages)\n' \
		"$1" "$median" "${all[*]}" "$n1" "$n2" >"$out/$1.txt"
}

per QoS0PathExact &
p0=$!
per QoS1PathExact &
p1=$!
rc=0
wait "$p0" || rc=1
wait "$p1" || rc=1
echo "tree $tree ($(git -C "$tree" rev-parse --short HEAD)$(git -C "$tree" diff --quiet HEAD -- . 2>/dev/null || echo ', modified'))"
cat "$out"/QoS0PathExact.txt "$out"/QoS1PathExact.txt 2>/dev/null || true
[[ -n ${OUT:-} ]] && echo "callgrind files in $out" || rm -rf "$out"
exit $rc
