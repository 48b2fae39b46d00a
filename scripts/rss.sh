#!/usr/bin/env bash
# rss.sh measures edgegw's memory with 100k messages queued for 200 offline
# persistent sessions, restart-to-serving time and drain time (scripts/rss).
# It runs bin/edgegw (`make rss` builds it first; scripts/rss builds it when
# missing). Arguments are passed to scripts/rss, e.g.:
#
#   scripts/rss.sh                      # the issue's scenario
#   scripts/rss.sh -drain-batch 50      # reconnect 50 sessions at a time
#   scripts/rss.sh -settle 130s -gctrace -keep
#
# The working directory is created under $TMPDIR (default /tmp); it must be on a
# disk, not tmpfs. Numbers vary between machines; see docs/store-measurements.md.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${TMPDIR:-/tmp}
echo "# $(go version | cut -d' ' -f3-); $(nproc) CPUs; $(free -m | awk '/^Mem:/{print $2" MB RAM"}'); $dir: $(df -PT "$dir" | awk 'NR==2{print $2" on "$1}')"
exec go run ./scripts/rss -bin "${BIN:-bin/edgegw}" "$@"
