#!/usr/bin/env bash
# bench.sh runs the side-by-side benchmark of edgegw and Debian's mosquitto
# (scripts/bench, docs/benchmarks.md) with the binary `make build` builds.
#
# Environment:
#   ROUNDS=3     rounds of each scenario (each round: edgegw, then mosquitto)
#   QUICK=1      a short run (1 round, 1 s runs, smaller queues): about 1 minute
#   LOOP=0       do not put the brokers' data on a loop-mounted ext4 image; by
#                default, when run as root, a 2 GB image under $TMPDIR is
#                mounted so that disk bytes are counted at the block device
#                (nothing else writes to it); otherwise only /proc/<pid>/io
#                write_bytes is reported, which over-counts on kernels with
#                large page-cache folios
#   BIN          edgegw binary (default bin/edgegw)
#   BENCH_FLAGS  more flags for scripts/bench, e.g. "-only qos1,kill"
#
# It installs mosquitto if missing (scripts/test-deps.sh), stops by itself
# (scripts/bench -timeout), and kills and unmounts what it started on any exit.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/test-deps.sh

flags=(-bin "${BIN:-bin/edgegw}" -rounds "${ROUNDS:-3}")
if [[ ${QUICK:-0} == 1 ]]; then
	flags=(-bin "${BIN:-bin/edgegw}" -rounds "${ROUNDS:-1}" -duration 1s -queued 20000 -idle 300
		-restart-sessions 2000 -restart-messages 20000)
fi

tmp=${TMPDIR:-/tmp}
work=$(mktemp -d "$tmp/edgegw-bench-XXXXXX")
loopdev=""
cleanup() {
	if [[ -n $loopdev ]]; then
		umount "$work/mnt" 2>/dev/null || umount -l "$work/mnt" 2>/dev/null || true
		losetup -d "$loopdev" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

data=$work/data
mkdir -p "$data"
if [[ ${LOOP:-1} == 1 && $(id -u) -eq 0 ]] && command -v losetup >/dev/null && command -v mkfs.ext4 >/dev/null; then
	truncate -s 2G "$work/disk.img"
	mkfs.ext4 -q -F "$work/disk.img"
	mkdir -p "$work/mnt"
	if loopdev=$(losetup -f --show "$work/disk.img") && mount "$loopdev" "$work/mnt"; then
		data=$work/mnt
	else
		echo "bench: could not mount a loop device; disk bytes from /proc/<pid>/io only" >&2
		[[ -n $loopdev ]] && losetup -d "$loopdev"
		loopdev=""
	fi
fi

echo "# $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')); kernel $(uname -r); $(go version | cut -d' ' -f3-); $(free -m | awk '/^Mem:/{print $2" MB RAM"}'); load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# edgegw $(git describe --tags --always --dirty 2>/dev/null || echo '?'); go run ./scripts/bench ${flags[*]} ${BENCH_FLAGS:-}"
# shellcheck disable=SC2086
go run ./scripts/bench "${flags[@]}" -dir "$data" ${BENCH_FLAGS:-}
