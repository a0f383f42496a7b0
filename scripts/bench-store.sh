#!/usr/bin/env bash
# Measures one pushd's throughput on PostgreSQL against SQLite (issue 10's
# bar: >= 0.9), with pushbench's pushd contender: ROUNDS pairs of runs,
# SQLite and PostgreSQL alternating (which goes first alternates too, so
# that warm-up and load drift favour neither), each PostgreSQL run on a
# fresh database. Prints each run's rate and CPU, and the median ratio.
#
#   scripts/bench-store.sh [ROUNDS=5] [N=100000]
#
# PUSHD_TEST_POSTGRES_URL is the server (default
# postgres://postgres@127.0.0.1:5432/postgres); RabbitMQ as for pushbench.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
n=${2:-100000}
server=${PUSHD_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
scripts/build.sh ./cmd/pushd ./cmd/pushsim ./cmd/pushbench
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

one() { # name round [pushbench args]
  local name=$1 round=$2; shift 2
  bin/pushbench -only pushd -rounds 1 -n "$n" -json "$@" >"$out/$name-$round.txt"
  # The JSON report is the last object printed; its median is this run.
  python3 - "$out/$name-$round.txt" "$name" "$round" <<'PY'
import json, sys
text = open(sys.argv[1]).read()
rep = json.loads(text[text.rindex('\n{') + 1:])
m = rep["median"]
print(f'{sys.argv[3]} {sys.argv[2]}: {m["pushd_per_second"]:.0f}/s, {m["pushd_cpu_seconds_per_100k"]:.2f} CPU s/100k, peak RSS {m["pushd_peak_rss_bytes"]/2**20:.1f} MB')
open(sys.argv[1] + ".rate", "w").write(str(m["pushd_per_second"]))
PY
}

for round in $(seq 1 "$rounds"); do
  db="pushbench_store_$$_$round"
  dsn="${server%/*}/$db"
  psql -q "$server" -c "CREATE DATABASE $db TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C.UTF-8'" >/dev/null
  if (( round % 2 )); then
    one sqlite "$round"; one postgres "$round" -store-dsn "$dsn"
  else
    one postgres "$round" -store-dsn "$dsn"; one sqlite "$round"
  fi
  psql -q "$server" -c "DROP DATABASE $db" >/dev/null
done

python3 - "$out" "$rounds" <<'PY'
import statistics, sys
d, rounds = sys.argv[1], int(sys.argv[2])
rate = lambda name, r: float(open(f"{d}/{name}-{r}.txt.rate").read())
ratios = [rate("postgres", r) / rate("sqlite", r) for r in range(1, rounds + 1)]
print("postgres/sqlite per round:", " ".join(f"{x:.3f}" for x in ratios))
print(f"median ratio {statistics.median(ratios):.3f} (bar 0.9)")
PY
