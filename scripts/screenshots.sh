#!/usr/bin/env bash
# Regenerates the console's screenshots in docs/screenshots: runs the
# browser test (real pushd, RabbitMQ, the simulator and headless Chromium)
# with PUSHD_SCREENSHOTS=1, which saves a PNG of each page it visits.
#
#   scripts/screenshots.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh
PUSHD_SCREENSHOTS=1 go test -count=1 -timeout 10m -run '^TestConsoleInBrowser$' ./cmd/pushd/
ls -l docs/screenshots
