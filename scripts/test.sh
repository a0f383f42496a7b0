#!/usr/bin/env bash
# Runs pushd's whole test suite the way CI does: starts the services the
# integration tests need, checks formatting and static analysis, then runs
# every test with the race detector against the real RabbitMQ and the
# simulator, and a short run of every fuzz target. Integration tests fail
# (they do not skip) without RabbitMQ.
#
# The tests run in two steps, both required (plus the store package's
# tests once more on PostgreSQL, with PUSHD_TEST_STORE=postgres, between
# them):
#   1. every test but the fault tests, package after package (-p 1); in
#      cmd/pushd the end-to-end tests run in parallel with each other:
#        go test -race -count=1 -p 1 -skip "$FAULT_TESTS" ./...
#   2. the fault tests of cmd/pushd, one after the other, alone:
#        go test -race -count=1 -run "$FAULT_TESTS" ./cmd/pushd
# The fault tests are those named TestFault...: they disturb what the other
# tests share, so nothing may run beside them (RabbitMQ stopped or
# restarted, connections closed, a port given up for 30 s). A new test of
# that kind only needs the name, and must be in cmd/pushd: step 1 skips the
# name in every package, step 2 runs only cmd/pushd (checked below).
set -euo pipefail
cd "$(dirname "$0")/.."

FAULT_TESTS='^TestFault'
# CI has 20 minutes: each step says when it starts, in seconds from here.
step() { echo "test: $* (at ${SECONDS}s)"; }

scripts/services.sh

step "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:" >&2
  echo "$unformatted" >&2
  exit 1
fi

step "go vet"
go vet ./...

step "staticcheck (the version go.mod pins with its tool directive)"
go tool staticcheck ./...

step "deploy/check.sh (alert rules and their tests, dashboard, unit)"
deploy/check.sh

# Step 1 skips TestFault... everywhere, step 2 runs it in cmd/pushd only.
misplaced=$(grep -l --include='*_test.go' -r 'func TestFault' . | grep -v '^\./cmd/pushd/' || true)
if [ -n "$misplaced" ]; then
  echo "fault tests (TestFault...) outside cmd/pushd would never run:" >&2
  echo "$misplaced" >&2
  exit 1
fi

# The test binaries are built first on both cores (the tests then run one
# package at a time, and building is most of the time of the small ones).
step "go test -race: build every package's tests"
go test -race -count=1 -p 2 -run '^$' ./... >/dev/null

step "go test -race, all but the fault tests"
go test -race -count=1 -p 1 -timeout 18m -skip "$FAULT_TESTS" ./...

step "go test -race, the store package and its conformance suite again on PostgreSQL (a fresh database per test)"
PUSHD_TEST_STORE=postgres go test -race -count=1 -timeout 10m ./store/...

step "go test -race, the fault tests, alone"
go test -race -count=1 -timeout 10m -run "$FAULT_TESTS" ./cmd/pushd

step "a short fuzz run of each fuzz target (FUZZTIME, 5s each here; scripts/fuzz.sh alone: 10s)"
FUZZTIME=${FUZZTIME:-5s} scripts/fuzz.sh
step "done"
