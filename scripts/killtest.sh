#!/usr/bin/env bash
# killtest.sh runs the kill -9 end-to-end test in its long form: the real edgegw
# binary in strict durability, QoS 1 publishers and two persistent subscribers,
# SIGKILL at random moments ROUNDS times (default 200), then a check that every
# acknowledged message reached both subscribers in order. `make test` runs the
# same test with 20 rounds.
#
# usage: scripts/killtest.sh [ROUNDS] [go test flags...]
#   EDGEGW_KILL_SEED=N replays the random kill times of an earlier run (the seed
#   is in the test log).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-200}
shift || true
EDGEGW_KILL_ROUNDS=$rounds exec go test -run 'TestKill$' -count=1 -timeout 60m -v "$@" ./e2e/
