#!/usr/bin/env bash
# qemu-smoke.sh runs the ARMv6 edgegw binary (bin/edgegw-linux-armv6, built by
# `make cross`) end to end under qemu: `edgegw version` must report linux/arm,
# then TestGracefulStop (cmd/edgegw/stop_test.go) drives it from the host: start
# it with a temporary configuration, connect MQTT clients, persist a session and
# queue QoS 1 messages for it, stop it with SIGTERM, start it again and resume
# the session with every acknowledged message delivered, in strict and in batch
# durability.
#
# edgegw re-executes itself at start-up (`edgegw store check` in a child
# process), so calling qemu-arm-static on the binary is not enough: the child's
# exec of an ARM file would fail. The script therefore runs in a new user and
# mount namespace with its own binfmt_misc instance (Linux 6.7 or later), where
# Debian's qemu-user-static registration (/usr/lib/binfmt.d) makes the kernel
# run every ARM executable under qemu, as on a real Raspberry Pi. The host's
# binfmt_misc is not touched.
#
# Usage: scripts/qemu-smoke.sh [BINARY [ARCH]]
#   (default: bin/edgegw-linux-armv6 arm; for arm64:
#    scripts/qemu-smoke.sh bin/edgegw-linux-arm64 aarch64)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bin=$(realpath "${1:-bin/edgegw-linux-armv6}")
arch=${2:-arm}
conf=/usr/lib/binfmt.d/qemu-$arch.conf
if [[ ! -x $bin ]]; then
	echo "qemu-smoke: $bin is missing: run make cross" >&2
	exit 1
fi
if [[ ! -r $conf ]]; then
	echo "qemu-smoke: $conf is missing: run scripts/test-deps.sh (package qemu-user-static)" >&2
	exit 1
fi

export QEMU_SMOKE_BIN=$bin QEMU_SMOKE_CONF=$conf
exec unshare --user --map-root-user --mount bash -euo pipefail -c '
if ! mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null; then
	echo "qemu-smoke: cannot mount binfmt_misc in a user namespace (needs Linux 6.7 or later; this is $(uname -r))" >&2
	exit 1
fi
cat "$QEMU_SMOKE_CONF" >/proc/sys/fs/binfmt_misc/register
version=$("$QEMU_SMOKE_BIN" version)
echo "qemu-smoke: $version"
case $version in
*" linux/arm)" | *" linux/arm64)") ;;
*)
	echo "qemu-smoke: $QEMU_SMOKE_BIN is not an ARM binary" >&2
	exit 1
	;;
esac
EDGEGW_TEST_BINARY=$QEMU_SMOKE_BIN go test -count=1 -v -run "^TestGracefulStop\$" ./cmd/edgegw
'
