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
	chromium:chromium                # the status page and browser dashboard tests (DevTools protocol)
	mosquitto_pub:mosquitto-clients  # interop tests with mosquitto_pub/sub
	node:nodejs                      # MQTT.js and aedes (scripts/node)
	npm:npm
	faketime:faketime                # the wall-clock jump test of the real binary
	promtool:prometheus              # /metrics exposition check, docs/prometheus/alerts.yml rules tests
)

# PYDEPS are Python modules the tests import with Debian's /usr/bin/python3 (not a
# python3 earlier on PATH, such as pyenv's): "module:debian-package" pairs.
PYDEPS=(
	paho.mqtt.client:python3-paho-mqtt # interop tests with paho-mqtt for Python
	pymodbus:python3-pymodbus          # Modbus TCP and RTU-over-TCP servers for the meter tests
	serial_asyncio:python3-serial-asyncio # pymodbus.server imports it (and pyserial) even for TCP; only Recommended by python3-pymodbus
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

for dep in ${PYDEPS[@]+"${PYDEPS[@]}"}; do
	mod=${dep%%:*}
	pkg=${dep#*:}
	if ! /usr/bin/python3 -c "import $mod" >/dev/null 2>&1; then
		missing+=("$pkg")
	fi
done

# npm_ci installs scripts/node's packages (MQTT.js, aedes) exactly as its lock file
# pins them, again only when the lock file changed since the last install.
npm_ci() {
	local dir stamp
	dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/node" && pwd)
	stamp=$dir/node_modules/.package-lock.json
	if [[ -f $stamp && ! $dir/package-lock.json -nt $stamp ]]; then
		return 0
	fi
	echo "test-deps: npm ci in $dir" >&2
	npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error >&2
}

if ((${#missing[@]} == 0)); then
	npm_ci
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
npm_ci
