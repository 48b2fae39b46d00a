#!/bin/sh
# mkstore.sh writes session/store/testdata/store-78ac58e.db: the store file that
# edgegw at REV (78ac58e, the release before issue 16's restructuring; store
# format version 1) writes for the state fill.py creates: persistent sessions
# with subscriptions and queued messages, a shared group's queue, retained
# messages, the outbox of a bridge whose upstream (a local mosquitto) went away,
# and command queues of a line meter and a Modbus meter on pseudo-terminals
# (meterpty.py). See session/store/testdata/README.md. Needs git, go, mosquitto,
# /usr/bin/python3 with paho-mqtt (scripts/test-deps.sh).
#
#   scripts/storegen/mkstore.sh [REV] [OUT]
#
# EDGEGW=path uses that binary (built from REV) instead of building REV;
# KEEP=1 keeps the temporary directory (logs, configuration) for a look.
set -eu
REV=${1:-78ac58e6caf51db284cd0b261fac174a4371b188}
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
OUT=${2:-$top/session/store/testdata/store-78ac58e.db}

tmp=$(mktemp -d)
pid="" mqpid="" ptypid=""
cleanup() {
	for p in $pid $mqpid $ptypid; do kill "$p" 2>/dev/null || true; done
	git -C "$top" worktree remove --force "$tmp/src" 2>/dev/null || true
	if [ -n "${KEEP:-}" ]; then echo "kept $tmp (edgegw's log: $tmp/log)"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

if [ -n "${EDGEGW:-}" ]; then
	cp "$EDGEGW" "$tmp/edgegw"
else
	git -C "$top" worktree add --detach "$tmp/src" "$REV" >/dev/null
	(cd "$tmp/src" && go build -o "$tmp/edgegw" ./cmd/edgegw)
fi

freeport() {
	/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
port=$(freeport)
mqport=$(freeport)

printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$mqport" >"$tmp/mosquitto.conf"
mosquitto -c "$tmp/mosquitto.conf" 2>"$tmp/mosquitto.log" &
mqpid=$!
/usr/bin/python3 "$here/meterpty.py" "$tmp" &
ptypid=$!
for _ in $(seq 100); do
	[ -e "$tmp/ready" ] && grep -q "running" "$tmp/mosquitto.log" 2>/dev/null && break
	sleep 0.1
done

cat >"$tmp/edgegw.yaml" <<YAML
data_dir: $tmp/data
listeners:
  - name: local
    address: 127.0.0.1:$port
sessions:
  max_expiry: 4294967295s
store:
  durability: strict
admin:
  socket: ""
auth:
  acl:
    - name: commander
      client_id: commander
      publish: ["#"]
      subscribe: ["#"]
      commands: ["meters/+/cmd"]
bridges:
  - name: cloud
    address: mqtt://127.0.0.1:$mqport
    client_id: edgegw-test
    backoff_min: 1m
    backoff_max: 1m
    forward:
      - local: up/#
        remote: site/up/#
        qos: 1
meters:
  types:
    - name: water
      fields:
        - {name: volume, unit: m3, scale: 0.001}
    - name: mains
      registers:
        - {name: energy, register: 0, function: 4, type: uint16, unit: kWh}
  ports:
    - name: lora
      device: $tmp/ttyLINE
      baud: 115200
      protocol: line
      line:
        format: json
        checksum: none
      meters:
        - {id: water-17, type: water}
    - name: rs485
      device: $tmp/ttyMODBUS
      baud: 115200
      protocol: modbus
      modbus:
        timeout: 100ms
        retries: 0
        offline_after: 2
      meters:
        - {id: mains-1, type: mains, slave: 1, interval: 1s}
YAML
"$tmp/edgegw" run -c "$tmp/edgegw.yaml" 2>"$tmp/log" &
pid=$!
for _ in $(seq 100); do
	grep -q "listening\|serving" "$tmp/log" 2>/dev/null && break
	sleep 0.1
done
/usr/bin/python3 "$here/fill.py" 127.0.0.1 "$port" bridge "$mqport"
kill -TERM "$mqpid"
wait "$mqpid" || true
mqpid=""
/usr/bin/python3 "$here/fill.py" 127.0.0.1 "$port" clients
/usr/bin/python3 "$here/fill.py" 127.0.0.1 "$port" meters
kill -TERM "$pid"
wait "$pid" || { cat "$tmp/log"; exit 1; }
pid=""
mkdir -p "$(dirname "$OUT")"
cp "$tmp/data/edgegw.db" "$OUT"
echo "wrote $OUT (edgegw $REV)"
