#!/usr/bin/env bash
# Runs pushd's whole test suite the way CI does: starts the services the
# integration tests need, checks formatting and static analysis, then runs
# every test with the race detector against the real RabbitMQ and the
# simulator, and a short run of every fuzz target. Integration tests fail
# (they do not skip) without RabbitMQ.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh

echo "test: gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:" >&2
  echo "$unformatted" >&2
  exit 1
fi

echo "test: go vet"
go vet ./...

echo "test: staticcheck (the version go.mod pins with its tool directive)"
go tool staticcheck ./...

echo "test: deploy/check.sh (alert rules and their tests, dashboard, unit)"
deploy/check.sh

echo "test: go test -race"
go test -race -count=1 -p 1 -timeout 18m ./...

echo "test: a short fuzz run of each fuzz target (FUZZTIME, default 10s each)"
scripts/fuzz.sh
