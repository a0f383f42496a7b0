#!/usr/bin/env bash
# Runs each of pushd's fuzz targets for a short time, the way CI does. Go
# fuzzes one target per `go test` invocation, so each target gets its own,
# for FUZZTIME (default 10s; a count such as 20000x also works). Each run
# first replays the target's seeds (f.Add and testdata/fuzz/<target>/).
#
# A failing input is written to the package's testdata/fuzz/<target>/: once
# the bug is fixed, commit it there as a regression seed. All targets run;
# the script then names those that failed and exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZTIME=${FUZZTIME:-10s}
# Go minimizes every new interesting input for up to -fuzzminimizetime
# (default 60s), during which no fuzzing happens: in a 10s run that can be
# the whole run. Failing inputs are minimized within the same bound.
FUZZMINIMIZETIME=${FUZZMINIMIZETIME:-2s}

# package:target, every fuzz target in the repository.
targets=(
  ./admin:FuzzParseTokens
  ./admin:FuzzCheckKeys
  ./dispatcher:FuzzDecodeBatch
  ./queue:FuzzSealedHeaders
  ./push/apns:FuzzRender
  ./push/fcm:FuzzRender
  ./lists:FuzzReadCSV
  ./lists:FuzzSetAgainstMap
)

# A target added to a test file but not to the list above fails the run.
found=$(grep -rEo --include='*_test.go' '^func Fuzz[A-Za-z0-9_]+\(' . |
  sed -E 's#^(.*)/[^/]*:func (Fuzz[A-Za-z0-9_]+)\($#\1:\2#' | sort)
missing=$(comm -23 <(echo "$found") <(printf '%s\n' "${targets[@]}" | sort))
if [ -n "$missing" ]; then
  echo "fuzz: targets missing from scripts/fuzz.sh:" >&2
  echo "$missing" >&2
  exit 1
fi

# flake reports whether a failed run's log ($1) is only Go's own race at the
# end of a duration -fuzztime (go.dev/issue/75804, fixed in Go 1.27): the
# target fails with "context deadline exceeded", no seed failed and no
# failing input was written.
flake() {
  grep -qx '    context deadline exceeded' "$1" &&
    ! grep -q 'failure while testing seed corpus entry' "$1" &&
    ! grep -q 'Failing input written to' "$1"
}

log=$(mktemp)
trap 'rm -f "$log"' EXIT
failed=()
start=$SECONDS
for t in "${targets[@]}"; do
  pkg=${t%%:*}
  name=${t#*:}
  echo "fuzz: $name in $pkg for $FUZZTIME"
  if go test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" \
    -fuzzminimizetime "$FUZZMINIMIZETIME" "$pkg" 2>&1 | tee "$log"; then
    continue
  fi
  if flake "$log"; then
    echo "fuzz: $name in $pkg: \"context deadline exceeded\" with no failing input is Go's fuzztime race (go.dev/issue/75804), not a finding" >&2
    continue
  fi
  echo "fuzz: FAILED: $name in $pkg" >&2
  failed+=("$name in $pkg")
done

echo "fuzz: ${#targets[@]} targets in $((SECONDS - start))s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: failed targets:" >&2
  printf '  %s\n' "${failed[@]}" >&2
  exit 1
fi
