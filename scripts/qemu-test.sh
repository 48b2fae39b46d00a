#!/usr/bin/env bash
# qemu-test.sh runs the unit tests of every package compiled for 32-bit ARMv6
# (GOARCH=arm GOARM=6, Raspberry Pi Zero/1) and for arm64, each test binary
# under Debian's user-mode emulators qemu-arm-static and qemu-aarch64-static.
# It catches what amd64 cannot show: misaligned 64-bit atomics on 32-bit ARM,
# bbolt's mmap sizes on a 32-bit address space, word-size assumptions.
#
# Usage: scripts/qemu-test.sh [arm|arm64]...   (default: both)
#
# Every package of the root module with tests runs, except those in SKIP below,
# which build the host binary (go build) and test that rather than ARM code (the
# packaging tool packaging/mkdeb is its own module and not listed by ./...);
# the ARMv6 binary itself is exercised end to end by scripts/qemu-smoke.sh.
# Tests that start programs (mosquitto for the bridge tests) run them natively:
# qemu-user passes exec of a host binary to the host kernel.
#
# Environment: QEMU_TEST_TIMEOUT (-test.timeout of each package, default 5m; the
# slowest package, gateway, takes about 15 s under qemu),
# QEMU_TEST_RUN (-test.run pattern, default all).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Packages not run under emulation, and why.
declare -A SKIP=(
	[edgegw/cmd/edgegw]="builds the host binary with go build and runs it (ARM binary: scripts/qemu-smoke.sh)"
	[edgegw/e2e]="builds the host binary with go build and runs it (ARM binary: scripts/qemu-smoke.sh)"
)

arches=("$@")
if ((${#arches[@]} == 0)); then
	arches=(arm arm64)
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

mapfile -t pkgs < <(go list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}} {{.Dir}}{{end}}' ./...)

failed=()
for arch in "${arches[@]}"; do
	case $arch in
	arm) emu=qemu-arm-static goenv=(GOARCH=arm GOARM=6) ;;
	arm64) emu=qemu-aarch64-static goenv=(GOARCH=arm64) ;;
	*)
		echo "qemu-test: unknown architecture $arch (arm or arm64)" >&2
		exit 2
		;;
	esac
	if ! command -v "$emu" >/dev/null; then
		echo "qemu-test: $emu is missing: run scripts/test-deps.sh (package qemu-user-static)" >&2
		exit 1
	fi
	for line in "${pkgs[@]}"; do
		pkg=${line%% *} dir=${line#* }
		if [[ -n ${SKIP[$pkg]-} ]]; then
			echo "--- SKIP $pkg ($arch): ${SKIP[$pkg]}"
			continue
		fi
		bin="$tmp/$arch-${pkg//\//_}.test"
		env CGO_ENABLED=0 GOOS=linux "${goenv[@]}" go test -c -o "$bin" "$pkg"
		start=$SECONDS
		# go test runs a test binary in its package's directory: testdata and
		# relative paths resolve the same way here.
		if (cd "$dir" && "$emu" "$bin" -test.count=1 -test.timeout="${QEMU_TEST_TIMEOUT:-5m}" \
			${QEMU_TEST_RUN:+-test.run="$QEMU_TEST_RUN"}); then
			echo "ok   $pkg ($arch under $emu) $((SECONDS - start))s"
		else
			echo "FAIL $pkg ($arch under $emu) $((SECONDS - start))s"
			failed+=("$pkg ($arch)")
		fi
	done
done

if ((${#failed[@]} > 0)); then
	echo "qemu-test: failed: ${failed[*]}" >&2
	exit 1
fi
