# edgegw build and test entry points. `make run` and `make test` are the two
# commands a developer needs; see README.md.

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
CONFIG  ?= packaging/edgegw.yaml
LDFLAGS := -s -w -X main.version=$(VERSION)
GOBUILD := go build -trimpath -ldflags "$(LDFLAGS)"

.PHONY: all build run test cross clean

all: build

build:
	$(GOBUILD) -o bin/edgegw ./cmd/edgegw

run: build
	bin/edgegw run -c $(CONFIG)

test:
	scripts/test-deps.sh
	go vet ./...
	go -C packaging/mkdeb vet ./...
	@unformatted=$$(gofmt -l .); \
	if [ -n "$$unformatted" ]; then \
		echo "gofmt: these files need formatting (run gofmt -w):"; echo "$$unformatted"; exit 1; \
	fi
	go test -race -count=1 -timeout 15m ./...
	go -C packaging/mkdeb test -race -count=1 -timeout 15m ./...

# cross builds static binaries for the supported boards: Raspberry Pi Zero/1
# (ARMv6), Pi 2/3 on 32-bit OS (ARMv7), 64-bit ARM, and x86-64.
cross:
	CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=6 $(GOBUILD) -o bin/edgegw-linux-armv6 ./cmd/edgegw
	CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=7 $(GOBUILD) -o bin/edgegw-linux-armv7 ./cmd/edgegw
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GOBUILD) -o bin/edgegw-linux-arm64 ./cmd/edgegw
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GOBUILD) -o bin/edgegw-linux-amd64 ./cmd/edgegw
	@echo "sizes in bytes:"; wc -c bin/edgegw-linux-armv6 bin/edgegw-linux-armv7 bin/edgegw-linux-arm64 bin/edgegw-linux-amd64

clean:
	rm -rf bin

# bench runs the same load against edgegw and Debian's mosquitto, alternating
# them for ROUNDS rounds (default 3), and prints medians and edgegw/mosquitto
# ratios (docs/benchmarks.md). QUICK=1 is a one-minute smoke run. About 4 minutes.
.PHONY: bench
bench: build
	scripts/bench.sh

# bench-instructions prints the instructions one QoS 0 and one QoS 1 message
# cost the broker path (gateway's BenchmarkQoS0PathExact/QoS1PathExact under
# valgrind's callgrind): unlike time, the count does not depend on the machine's
# load, so it compares trees on a busy machine (TREE=other checkout; OUT=dir keeps
# the callgrind files for scripts/callgrind-diff.py). About 2 minutes.
.PHONY: bench-instructions
bench-instructions:
	scripts/bench-instructions.sh

# bench-bridge measures the bridge against a local mosquitto: outbox replay
# throughput and live forwarding latency next to a direct publish (docs/bridge.md).
.PHONY: bench-bridge
bench-bridge:
	scripts/bench-bridge.sh

# bench-store runs the session store benchmarks (strict/batch, 1/16 publishers,
# subscriber online and offline) and prints a table; BENCHTIME and COUNT tune it.
# See docs/store-measurements.md.
.PHONY: bench-store rss
bench-store:
	scripts/bench-store.sh

# bench-window measures the batch window on a slow disk: the real binary with
# every commit slowed by 300 ms (EDGEGW_TEST_COMMIT_DELAY) and without, under
# QoS 1 load from 8 connections x 16 in flight for 10 s each; prints throughput,
# commit durations and the worst acknowledged-unsynced age (docs/benchmarks.md).
.PHONY: bench-window
bench-window:
	EDGEGW_BENCH_WINDOW=1 go test -v -count=1 -run '^TestBatchWindowBench$$' -timeout 10m ./e2e/ | grep -E '^(bench-window|---|FAIL)'

# bench-deadband measures report by exception (docs/benchmarks.md): the real
# binary polls a slowly changing simulated meter on a PTY 600 times and forwards
# its readings over a bridge to a local mosquitto, without and with deadbands;
# prints messages forwarded, store bytes committed and log bytes. Time is
# compressed x100 (10ms polls, commit_interval and heartbeat scaled alike):
# about 30 s. INTERVAL=1s runs the 10 minutes in real time (twice); POLLS sets
# the number of polls.
.PHONY: bench-deadband
bench-deadband:
	bash -o pipefail -c "EDGEGW_BENCH_DEADBAND=1 EDGEGW_BENCH_DEADBAND_INTERVAL=$(INTERVAL) EDGEGW_BENCH_DEADBAND_POLLS=$(POLLS) \
		go test -v -count=1 -run '^TestDeadbandBench$$' -timeout 60m ./e2e/ | grep -E '^(bench-deadband|---|FAIL|ok)'"

# rss measures RSS with 100k messages queued for 200 offline sessions,
# restart-to-serving time and drain time, with the binary `make build` builds.
rss: build
	scripts/rss.sh

# killtest runs the kill -9 test long: ROUNDS kills (default 200) of the real
# binary under QoS 1 load in strict durability. `make test` runs it short (20).
.PHONY: killtest
killtest:
	scripts/killtest.sh $(ROUNDS)

# packages builds the Debian packages bin/edgegw_<version>_<arch>.deb for armhf
# (the ARMv6 binary: every Raspberry Pi), arm64 and amd64 from the `make cross`
# binaries, with nfpm as a library (packaging/mkdeb): no Docker, no dpkg-dev.
# The Debian version comes from git describe; file times from the last commit.
# mkdeb is its own Go module (packaging/mkdeb/go.mod) so that nfpm's dependencies
# stay out of the root go.mod; `go -C` runs it there, hence the absolute paths.
DEB_MAINTAINER ?= edgegw maintainers <edgegw@example.com>
.PHONY: packages lint-packages test-arm
packages: cross
	rm -f bin/edgegw_*.deb
	SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct 2>/dev/null || date +%s) go -C packaging/mkdeb run . \
		-describe "$(VERSION)" -commits "$$(git rev-list --count HEAD 2>/dev/null || echo 0)" \
		-maintainer "$(DEB_MAINTAINER)" -doc $(CURDIR)/docs/install.md -out $(CURDIR)/bin \
		armhf=$(CURDIR)/bin/edgegw-linux-armv6 arm64=$(CURDIR)/bin/edgegw-linux-arm64 amd64=$(CURDIR)/bin/edgegw-linux-amd64

# lint-packages runs lintian on the packages; errors fail, warnings are shown.
lint-packages: packages
	scripts/test-deps.sh
	scripts/lint-deb.sh

# test-arm runs every package's unit tests compiled for ARMv6 (GOARM=6) and arm64
# under qemu-user-static, then the end-to-end smoke test of the ARMv6 binary
# (start, persist a session, SIGTERM, restart, resume) under qemu-arm-static.
test-arm: cross
	scripts/test-deps.sh
	scripts/qemu-test.sh
	scripts/qemu-smoke.sh

# bench-meters runs the Modbus benchmarks (codec, polling over a PTY, added
# delay at 9600 baud); see docs/meters.md.
.PHONY: bench-meters fuzz-meters
bench-meters:
	go test -run '^$$' -bench . -benchtime 2s ./hardware/modbus/

# fuzz-meters fuzzes every meter frame parser for FUZZTIME each (default 30s).
# Their seed corpora (hardware/*/testdata/fuzz) run with every `make test`.
FUZZTIME ?= 30s
fuzz-meters:
	go test -run '^$$' -fuzz '^FuzzModbusFrame$$' -fuzztime $(FUZZTIME) ./hardware/modbus/
	go test -run '^$$' -fuzz '^FuzzModbusTCPFrame$$' -fuzztime $(FUZZTIME) ./hardware/modbus/
	go test -run '^$$' -fuzz '^FuzzModbusCommand$$' -fuzztime $(FUZZTIME) ./hardware/modbus/
	go test -run '^$$' -fuzz '^FuzzLineFrame$$' -fuzztime $(FUZZTIME) ./hardware/line/

# bench-logs: bytes of log that 10,000 malformed packets make edgegw and
# mosquitto write (docs/benchmarks.md). A few seconds.
.PHONY: bench-logs
bench-logs:
	go test -run '^$$' -bench '^BenchmarkLogVolumeMalformed$$' -benchtime 1x ./e2e/

# fuzz-mqtt fuzzes mochi's packet decoders behind the listener's pre-check
# (internal/mqttcheck) for FUZZTIME; its seed corpus runs with every `make test`.
.PHONY: fuzz-mqtt
fuzz-mqtt:
	go test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./internal/mqttcheck/

# bench-subs measures large subscription sets against mosquitto: 10,000
# SUBSCRIBEs on one persistent session, and QoS 2 publishing from a session
# holding 2,000 and 10,000 subscriptions (docs/benchmarks.md, "Large
# subscription sets"). About 2 minutes; BENCH_FLAGS adds flags, e.g.
# "-brokers edgegw -duration 2s".
.PHONY: bench-subs
bench-subs: build
	scripts/test-deps.sh
	go run ./scripts/bench-subs -bin bin/edgegw $(BENCH_FLAGS)
