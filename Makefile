# Skybridge — build, test and run. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
FUZZTIME ?= 60s
# Packages whose tests also run compiled for other CPUs under QEMU.
CROSS_PKGS ?= ./impl/packet ./impl/env ./impl/topic ./impl/session ./impl/broker ./impl/retain
# GOARCH:qemu-binary pairs for cross-test.
CROSS_ARCHES ?= arm64:aarch64 arm:arm mips:mips mipsle:mipsel

.PHONY: help test unit lint vet fmt-check race trace fuzz bench cross-test run conformance conformance-mosquitto conformance-skybridge crash-soak

help:
	@echo "make run         start a standalone broker on 127.0.0.1:1883"
	@echo "make test        everything a contributor must pass (lint, unit, race, spec trace, cross-arch)"
	@echo "make lint        gofmt and go vet"
	@echo "make fuzz        each fuzz target for FUZZTIME (default 60s)"
	@echo "make bench       Go micro-benchmarks with allocations"
	@echo "make cross-test  $(CROSS_PKGS) under QEMU for arm64, armv7, mips, mipsle"
	@echo "make trace       spec statement coverage of the tests"
	@echo "make bench-scale 250,000 idle connections: RSS, connect rate, keep-alive CPU (not in make test)"
	@echo "make bench-fanout one publisher to 10,000 subscribers, QoS 0 and 1, vs mosquitto and nats-server"
	@echo "make conformance BROKER=host:port   run the conformance suite against any broker (a,b,c: a cluster's nodes in turn)"
	@echo "make crash-soak  the crash tests for minutes (store crash points, kill -9 rounds)"
	@echo "make demo-edge   a cloud and two edge nodes on this machine: deploy, cut, restart offline, converge"
	@echo "make edge-soak   the edge/cloud simulation for more seeds (EDGE_SEEDS=500)"
	@echo "make kv-sim      raftkv in the simulator: 200 seeds, planted bugs, determinism (also in test)"
	@echo "make kv-soak     raftkv in the simulator: SEEDS seeds (default 1000)"
	@echo "make bench-cluster cross-node throughput and p99: standalone vs same node vs across a 2-node cluster"
	@echo "make cluster     three broker nodes on loopback that route messages between them (1883, 1884, 1885)"
	@echo "make kv-demo     a 3-process raftkv cluster on loopback survives kill -9 of one node under load"
	@echo "make release     static binaries for linux amd64/arm64/armv7/mips/mipsle in dist/, with SHA256SUMS, units, install.sh"
	@echo "make cross-e2e   the edge agent's release binaries end to end under QEMU, all five targets"
	@echo "make footprint   measure the edge agent's RSS and CPU (idle, 100 Modbus devices), native and under QEMU"

test: lint unit timing race conformance-mosquitto conformance-skybridge conformance-restricted trace sim kv-sim cross-test-if-qemu

lint: fmt-check vet

fmt-check:
	@out=$$(gofmt -l .); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# Screenshots and other outputs of the tests (the console's browser tests).
export SKYBRIDGE_ARTIFACTS ?= $(CURDIR)/artifacts

# Every package but the conformance suite (run below against each broker)
# and the simulators (run below with their summaries).
unit:
	$(GO) test -count=1 -skip '$(TIMING_TESTS)' $$($(GO) list ./... | grep -v -e /conformance -e /sim$$ -e /sim/kvsim$$)

# Tests whose assertion is a latency run alone, after the others, so that
# another package's tests do not share the cores with them.
TIMING_TESTS = ^TestLegitimateConnectDuringPasswordStorm$$
.PHONY: timing
timing:
	set -o pipefail; $(GO) test -count=1 -run '$(TIMING_TESTS)' -v ./cmd/skybridge | grep -E '^(=== RUN|--- |ok|FAIL|PASS)|CONNACK|storm'

# Packages with concurrency run again under the race detector.
RACE_PKGS ?= ./impl/env/... ./impl/cluster/... ./impl/forward/... ./impl/topic/... ./impl/session/... ./impl/broker/... ./impl/server/... ./impl/auth/... ./impl/webhook/... ./impl/store/... ./impl/bridge/... ./impl/raftkv/... ./cloud/... ./edge/...
# Tests whose assertion is a latency or a browser's pace are left out of
# the race run (they run in unit): under the detector's 5-10x slowdown on
# two cores they measure the detector.
RACE_SKIP = ^(TestConsoleInTheBrowser|TestNoisyTenantLatency)$$
race:
	$(GO) test -count=1 -race -skip '$(RACE_SKIP)' $(RACE_PKGS)

# The conformance suite proven on the reference broker (known deviations
# skip with their reason; see conformance/PEERS.md) ...
conformance-mosquitto:
	$(GO) test -count=1 ./conformance -target=mosquitto

# ... and passed by Skybridge, in-process, under the race detector.
conformance-skybridge:
	$(GO) test -count=1 -race ./conformance -target=skybridge

# Both again with QoS 2 and retained messages switched off (Skybridge also
# without shared and identified subscriptions): the statements about a
# broker declining a feature.
.PHONY: conformance-restricted
conformance-restricted:
	$(GO) test -count=1 ./conformance -target=mosquitto -restricted
	$(GO) test -count=1 ./conformance -target=skybridge -restricted

# make conformance BROKER=host:port [ARGS="-username u -password p"]
conformance:
	@if [ -z "$(BROKER)" ]; then echo "usage: make conformance BROKER=host:port"; exit 2; fi
	$(GO) test -count=1 -v ./conformance -broker=$(BROKER) $(ARGS)



# The deterministic simulator: every test of ./sim (100 one-minute seeds of
# the durable broker with every fault including power loss, 30 of the
# in-memory one, the regression seeds, the planted bugs, the mutants of
# sim/mutants.go built with go build -overlay, determinism, raft), with a
# summary and, for a failure, the command that replays it.
.PHONY: sim sim-soak
sim:
	set -o pipefail; $(GO) test -count=1 -timeout 30m -v ./sim | grep -E '^ *(--- |ok|FAIL)|seeds in|seeds twice|caught at|survived|mutants: |seeds \[|seed [0-9]+|replay: '

# Long runs on demand: make sim-soak SEEDS=2000 DURATION=5m
SEEDS ?= 1000
DURATION ?= 2m
sim-soak:
	$(GO) run ./cmd/skybridge-sim sweep --seeds $(SEEDS) --duration $(DURATION) --faults network,crash,disk

# raftkv in the simulator (sim/kvsim): 200 seeds (half on 3 nodes, half on 5)
# with every fault, each planted bug caught, determinism; a failure prints
# the command that replays it. kv-soak runs SEEDS seeds of the same.
.PHONY: kv-sim kv-soak kv-demo
kv-sim:
	set -o pipefail; $(GO) test -count=1 -v -timeout 20m ./sim/kvsim -kv.seeds 200 | grep -E '^ *(--- |ok|FAIL)|seeds in|caught at|not caught|twice|failed:|replay: |^ +[a-z-]+: '
kv-soak:
	$(GO) run ./cmd/skybridge-kv sim --seeds $(SEEDS)

# The cluster's membership core on the simulator, more seeds (docs/CLUSTER.md).
.PHONY: cluster-soak
cluster-soak:
	$(GO) test -count=1 -timeout 60m -run TestMembership -v ./sim/clustersim -clustersim.seeds $(SEEDS)

# A 3-process raftkv cluster on loopback (mutual TLS between nodes) under a
# write load; one node is killed with SIGKILL and restarted; every
# acknowledged write is read back.
kv-demo:
	$(GO) run ./cmd/skybridge-kv demo

# Coverage of the spec statements that bind a server, per version.
trace:
	$(GO) run ./spec/cmd/trace -root . -min-v5 85 -min-v311 85

fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for target in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/func //'); do \
	    echo "== $$pkg $$target ($(FUZZTIME))"; \
	    $(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

# Micro-benchmarks of the hot paths (BenchmarkForwardQoS1 of impl/bridge
# starts mosquitto: it runs here too when mosquitto is installed).
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

cross-test:
	@for pair in $(CROSS_ARCHES); do \
	  arch=$${pair%%:*}; qemu=qemu-$${pair##*:}-static; \
	  command -v $$qemu >/dev/null || { echo "$$qemu not found: apt-get install qemu-user-static"; exit 1; }; \
	  echo "== GOARCH=$$arch under $$qemu"; \
	  CGO_ENABLED=0 GOARCH=$$arch GOARM=7 GOMIPS=softfloat $(GO) test -count=1 -exec $$qemu $(CROSS_PKGS) || exit 1; \
	done

.PHONY: cross-test-if-qemu
cross-test-if-qemu:
	@if command -v qemu-aarch64-static >/dev/null; then $(MAKE) --no-print-directory cross-test; \
	else echo "qemu-user-static not installed: skipping cross-test (CI installs it)"; fi

# Longer crash tests: many random crash points of the store, many SIGKILL
# rounds of the real binary (minutes).
crash-soak:
	SKYBRIDGE_CRASH_SEEDS=500 $(GO) test -count=1 -run 'TestCrash' -timeout 30m ./impl/broker ./impl/store
	SKYBRIDGE_KILL9_ROUNDS=20 $(GO) test -count=1 -run 'TestKill9' -timeout 30m -v ./cmd/skybridge

# A standalone broker on 127.0.0.1:1883 (WebSocket :8083, admin :8081).
run:
	$(GO) run ./cmd/skybridge serve --config skybridge.yaml

# Three nodes of one cluster on loopback (examples/cluster, docs/CLUSTER.md).
.PHONY: cluster bench-cluster
cluster:
	./scripts/cluster.sh

# Cross-node throughput and latency against the same on one node (docs/CLUSTER.md).
bench-cluster:
	./scripts/bench-cluster.sh

# Benchmark harness (bench/README.md): Skybridge vs mosquitto vs nats-server,
# PROFILE=quick (under 3 minutes) or full (under 20); the smoke run is also in `unit`.
PROFILE ?= quick
.PHONY: bench-compare bench-smoke bench-storage bench-scale bench-fanout
# Persistent QoS 1 on Pebble (on disk) against the in-memory store, alternating (docs/STORAGE.md).
bench-storage:
	bench/storage.sh

bench-compare:
	$(GO) run ./cmd/skybridge-bench compare --profile $(PROFILE)

# 250,000 idle connections from 127.0.0.1-127.0.0.16 against Skybridge and
# mosquitto: RSS per connection, connect rate, keep-alive CPU (one round,
# about 6 minutes; bench/README.md "At scale" says what the machine needs).
# Not part of `make test`.
# SCALE_SCENARIOS=idle-19500-ka60,idle-19500-ka60-pi5 runs others instead
# (a machine whose open-file hard limit is below 250,000).
SCALE_SCENARIOS ?=
bench-scale:
	$(GO) run ./cmd/skybridge-bench compare --profile scale --progress $(if $(SCALE_SCENARIOS),--scenarios $(SCALE_SCENARIOS))

# One publisher to 10,000 subscribers, QoS 0 and 1, against all three brokers.
bench-fanout:
	$(GO) run ./cmd/skybridge-bench compare --profile fanout

bench-smoke:
	$(GO) test -count=1 -run 'TestSmokeScenarios|TestBrokerFailures' ./cmd/skybridge-bench

# Edge and cloud (docs/EDGE.md). The simulation's seeds and the end-to-end
# test of the binaries run in `unit`; these are for people.
EDGE_SEEDS ?= 500
.PHONY: demo-edge edge-soak
demo-edge:
	edge/demo/demo.sh

edge-soak:
	set -o pipefail; SKYBRIDGE_EDGESIM_SEEDS=$(EDGE_SEEDS) $(GO) test -count=1 -timeout 120m -v -run 'TestOutage|TestMass' ./sim/edgesim | grep -E '^ *(--- FAIL|ok|FAIL)|outage:|mass seed|seed [0-9]+: |replay: '

# Release binaries (docs/EDGE.md, "Install"): static, stripped, for every
# target, with SHA256SUMS, the systemd units and install.sh.
DIST ?= dist
RELEASE_ARCHES ?= amd64 arm64 armv7 mips mipsle
.PHONY: release cross-e2e footprint
release:
	RELEASE_ARCHES="$(RELEASE_ARCHES)" GO=$(GO) edge/deploy/release.sh $(DIST)

# The edge agent of the release, every target under qemu-user against a
# cloud on this machine (make test runs armv7 and mips, built on the spot).
cross-e2e: release
	SKYBRIDGE_RELEASE_DIR=$(CURDIR)/$(DIST) SKYBRIDGE_CROSS_ARCHES="$(RELEASE_ARCHES)" SKYBRIDGE_REQUIRE_QEMU=1 \
	  $(GO) test -count=1 -timeout 30m -v -run 'TestCrossEndToEnd' ./cmd/skybridge-edge

# Figures of docs/EDGE.md ("Footprint"): a few minutes.
FOOTPRINT_TARGETS ?= native armv7 mips
footprint:
	SKYBRIDGE_FOOTPRINT="$(FOOTPRINT_TARGETS)" $(GO) test -count=1 -timeout 30m -v -run 'TestFootprint' ./cmd/skybridge-edge
