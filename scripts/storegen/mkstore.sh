#!/bin/sh
# mkstore.sh regenerates session/store/testdata/store-v1.db: the store file that
# edgegw at REV (the last release with store format version 1) writes for the
# sessions, queued messages, retained messages and bridge outbox of fill.py.
# See session/store/testdata/README.md. Needs git, go, /usr/bin/python3 with
# paho-mqtt (scripts/test-deps.sh).
#
#   scripts/storegen/mkstore.sh [REV] [OUT]
set -eu
REV=${1:-7654253aad6836bf60d304a3d00ddf25dfe7b391}
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
OUT=${2:-$top/session/store/testdata/store-v1.db}

tmp=$(mktemp -d)
pid=""
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null || true
	git -C "$top" worktree remove --force "$tmp/src" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

git -C "$top" worktree add --detach "$tmp/src" "$REV" >/dev/null
(cd "$tmp/src" && go build -o "$tmp/edgegw" ./cmd/edgegw)

port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
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
bridges:
  - name: cloud
    address: mqtt://127.0.0.1:1
    client_id: edgegw-test
    backoff_min: 1m
    backoff_max: 1m
    forward:
      - local: up/#
        remote: site/up/#
        qos: 1
YAML
"$tmp/edgegw" run -c "$tmp/edgegw.yaml" 2>"$tmp/log" &
pid=$!
for _ in $(seq 100); do
	grep -q "listening\|serving" "$tmp/log" 2>/dev/null && break
	sleep 0.1
done
/usr/bin/python3 "$here/fill.py" 127.0.0.1 "$port"
kill -TERM "$pid"
wait "$pid" || { cat "$tmp/log"; exit 1; }
pid=""
mkdir -p "$(dirname "$OUT")"
cp "$tmp/data/edgegw.db" "$OUT"
echo "wrote $OUT (edgegw $REV)"
