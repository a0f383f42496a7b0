#!/usr/bin/env bash
# Builds pushd's commands into bin/ as they are shipped and measured:
#
#   scripts/build.sh [packages...]      (default: ./cmd/...)
#
# -tags disable_grpc_modules (cmd/internal/buildtag.Shipped, which pushd and
# pushbench check against) is cloud.google.com/go/storage's documented
# switch (see its package doc) that leaves out its gRPC direct-path modules
# (grpc/xds, grpc/balancer/rls and envoy's go-control-plane). pushd reaches
# that package only because the firebase app imports its storage client;
# it never uses it. Without the tag the binary carries 20 MB more (about 5
# MB more code), and pushd's resident memory is about 9 MB higher, idle
# and under load (docs/benchmarks.md, "Memory").
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bin
if [ $# -eq 0 ]; then set -- ./cmd/...; fi
exec go build -tags "${PUSHD_BUILD_TAGS:-disable_grpc_modules}" -o bin/ "$@"
