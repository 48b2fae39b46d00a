#!/usr/bin/env bash
# test-deps.sh makes sure the programs the tests need are installed.
#
# DEPS lists them as "command:debian-package" pairs. When a command is missing,
# the script installs the packages with apt-get if it runs as root (one
# `apt-get update`, one `apt-get install`), and otherwise prints the command to
# run and fails. It prints nothing when everything is present.
#
# Go itself is not in DEPS: Debian's golang-go is older than go.mod needs.
set -euo pipefail

DEPS=(
	mosquitto:mosquitto
	systemd-analyze:systemd          # verifies edgegw.service (packaging tests)
	dpkg-deb:dpkg                    # package tests: contents, dpkg --root install
	unshare:util-linux               # package tests: throw-away root (packaging/sandbox)
	ip:iproute2                      # package tests: loopback in a network namespace
	lintian:lintian                  # make lint-packages
	qemu-arm-static:qemu-user-static # make test-arm (ARMv6)
	qemu-aarch64-static:qemu-user-static
	chromium:chromium                # the status page test (headless, DevTools protocol)
)

if ! command -v go >/dev/null 2>&1; then
	echo "test-deps: go is not on PATH; install the version go.mod names from https://go.dev/dl/" >&2
	exit 1
fi

missing=()
for dep in ${DEPS[@]+"${DEPS[@]}"}; do
	cmd=${dep%%:*}
	pkg=${dep#*:}
	if ! command -v "$cmd" >/dev/null 2>&1; then
		case " ${missing[*]-} " in
		*" $pkg "*) ;;
		*) missing+=("$pkg") ;;
		esac
	fi
done

if ((${#missing[@]} == 0)); then
	exit 0
fi

if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
	echo "test-deps: missing packages: ${missing[*]}" >&2
	echo "test-deps: run: sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
	exit 1
fi

echo "test-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
