#!/usr/bin/env bash
# Checks what deploy/ ships, and exits non-zero if anything is wrong:
#   - the Prometheus rules: promtool check rules, then the unit tests in
#     prometheus/pushd.rules.test.yml (promtool test rules);
#   - every alert has a quiet check in the tests' healthy case and a firing
#     one in another case, a runbook_url to its own heading, and that
#     heading ("### <alert>") in docs/operations.md;
#   - the Grafana dashboard: valid JSON, the datasource and instance
#     variables, every query on ${datasource}, unique panel ids, panels
#     within 24 columns and not overlapping;
#   - every pushd_/pushsim_ metric the rules, their tests, the dashboard and
#     docs/operations.md name is one that metrics/metrics.go (or
#     push/sim/stats.go) defines;
#   - every key of pushd.yaml and pushd-cluster.yaml exists in
#     configs/pushd.example.yaml;
#   - the systemd unit, with systemd-analyze verify when it is available.
#
# promtool comes from the Debian package "prometheus", installed with
# apt-get when missing (as root, or with sudo). It writes nothing but a
# temporary directory; safe to run any number of times, from any directory.
# A second or two once promtool is installed.
#
#   deploy/check.sh
set -euo pipefail

deploy=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$deploy")
rules=$deploy/prometheus/pushd.rules.yml
tests=$deploy/prometheus/pushd.rules.test.yml
dashboard=$deploy/grafana/pushd-dashboard.json
unit=$deploy/systemd/pushd.service
config=$deploy/pushd.yaml
cluster_config=$deploy/pushd-cluster.yaml
ops=$root/docs/operations.md
failed=0

say() { echo "check: $*"; }
fail() { echo "check: FAIL: $*" >&2; failed=1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

ensure_promtool() {
  if command -v promtool >/dev/null 2>&1; then
    return 0
  fi
  say "promtool is missing; installing the Debian package prometheus with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  say "note: the prometheus package also installs a Prometheus server unit;"
  say "      'systemctl disable --now prometheus' if you only wanted promtool"
  command -v promtool >/dev/null 2>&1 || { fail "promtool still missing after apt-get"; exit 1; }
}

# --- Prometheus rules -------------------------------------------------------
ensure_promtool
say "$(promtool --version 2>&1 | head -n 1)"
promtool check rules "$rules" || fail "promtool check rules"
# promtool resolves rule_files relative to the test file.
promtool test rules "$tests" || fail "promtool test rules"

# --- alerts: tests, runbook ------------------------------------------------
alerts=$(sed -n 's/^ *- alert: *\([A-Za-z0-9]*\).*/\1/p' "$rules")
# Quiet: "{..., alertname: X, exp_alerts: []}" in the case named "healthy...".
quiet=$(sed -n '/^  - name: healthy/,/^  - name: /p' "$tests" |
  sed -n 's/.*alertname: *\([A-Za-z0-9]*\), *exp_alerts: *\[\].*/\1/p' | sort -u)
# Firing: an ALERTS{alertname="X",alertstate="firing",...} sample, or an
# alert_rule_test on X that expects an alert.
firing=$( (sed -n "s/.*labels: *'ALERTS{alertname=\"\([A-Za-z0-9]*\)\",alertstate=\"firing\".*/\1/p" "$tests"
  awk '/^ *alertname: *[A-Za-z0-9]+ *$/ { cur = $2 } /exp_labels:/ && cur != "" { print cur }' "$tests") | sort -u)
# runbook_url of each alert: the alert's heading in docs/operations.md.
runbooks=$(awk '/^ *- alert:/ { a = $3 } /runbook_url:/ { print a, $2 }' "$rules")
[ -f "$ops" ] || fail "docs/operations.md is missing"
bad=0
for a in $alerts; do
  anchor=$(tr '[:upper:]' '[:lower:]' <<<"$a")
  url=$(awk -v a="$a" '$1 == a { print $2 }' <<<"$runbooks")
  problem=
  if ! grep -qx "$a" <<<"$quiet"; then problem="no quiet check in the healthy case of $(basename "$tests")"
  elif ! grep -qx "$a" <<<"$firing"; then problem="no test in $(basename "$tests") makes it fire"
  elif [ "${url##*#}" != "$anchor" ]; then problem="runbook_url ${url:-missing} does not end in #$anchor"
  elif [ -f "$ops" ] && ! grep -qx "### $a" "$ops"; then problem="no heading \"### $a\" in docs/operations.md"
  fi
  if [ -n "$problem" ]; then fail "alert $a: $problem"; bad=1; fi
done
[ "$bad" -eq 0 ] && say "alerts: $(wc -w <<<"$alerts") alerts, each tested quiet and firing, each with its runbook"

# --- Grafana dashboard ------------------------------------------------------
if command -v jq >/dev/null 2>&1; then
  if jq empty "$dashboard"; then
    say "dashboard: valid JSON (jq)"
    problems=$(jq -r '
      def targets: [.panels[] | .targets[]?];
      (if .schemaVersion < 36 then "schemaVersion \(.schemaVersion) is old" else empty end),
      (if any(.templating.list[]; .name == "datasource" and .type == "datasource" and .query == "prometheus")
         then empty else "no datasource variable of type prometheus" end),
      (if any(.templating.list[]; .name == "instance") then empty else "no instance variable" end),
      (targets[] | select(.datasource.uid != "${datasource}") | "target \(.refId) not on ${datasource}: \(.expr)"),
      (targets[] | select((.expr // "") == "") | "target without expr"),
      ([.panels[].id] | group_by(.) | map(select(length > 1) | "duplicate panel id \(.[0])") | .[]),
      (.panels[] | select(.type != "row" and ((.targets // []) | length) == 0) | "panel \"\(.title)\" has no query"),
      (.panels[] | select(.gridPos.x + .gridPos.w > 24) | "panel \"\(.title)\" is wider than the grid"),
      ([.panels[] | {id, title, g: .gridPos}] as $p | $p[] as $a | $p[]
        | select(.id > $a.id and .g.x < $a.g.x + $a.g.w and $a.g.x < .g.x + .g.w
                 and .g.y < $a.g.y + $a.g.h and $a.g.y < .g.y + .g.h)
        | "panels \"\($a.title)\" and \"\(.title)\" overlap")
    ' "$dashboard")
    if [ -n "$problems" ]; then
      fail "dashboard:"$'\n'"$problems"
    else
      say "dashboard: $(jq '[.panels[] | select(.type != "row")] | length' "$dashboard") panels, variables and queries in order"
    fi
  else
    fail "dashboard: invalid JSON"
  fi
elif python3 -m json.tool "$dashboard" >/dev/null; then
  say "dashboard: valid JSON (python3 -m json.tool; install jq for the structure checks)"
else
  fail "dashboard: invalid JSON"
fi

# --- metric names -----------------------------------------------------------
# Defined: every Name: of the metrics package and of the simulator.
defined=$(grep -ho 'Name: *"[a-z0-9_]*"' "$root"/metrics/metrics.go "$root"/push/sim/stats.go |
  sed 's/.*"\(.*\)"/\1/' | sort -u)
# Used: pushd_*/pushsim_* words in the rules, their tests, the dashboard and
# docs/operations.md, recording rule names (a:b:c) left out, histogram
# suffixes folded.
used=$(cat "$rules" "$tests" "$dashboard" $([ -f "$ops" ] && echo "$ops") |
  sed -E 's/[a-z_]+:[a-z0-9_]+:[a-z0-9_]+//g' |
  grep -oE '\b(pushd|pushsim)_[a-z0-9_]+' |
  sed -E 's/_(bucket|sum|count)$//' | sort -u)
unknown=$(comm -13 <(echo "$defined") <(echo "$used"))
if [ -n "$unknown" ]; then
  fail "metrics named in deploy/ or docs/operations.md but not defined in metrics/metrics.go or push/sim/stats.go:"$'\n'"$unknown"
else
  say "metrics: the $(echo "$used" | wc -l) pushd_/pushsim_ names used are all defined"
fi
unused=$(comm -23 <(echo "$defined" | grep '^pushd_') <(echo "$used"))
if [ -n "$unused" ]; then
  say "note: pushd_ metrics not on the dashboard or in the rules: $(echo $unused)"
fi

# --- pushd.yaml keys --------------------------------------------------------
keys() { # section.key of a two-level YAML file
  awk '/^[a-z_]+:/ { s = $1; sub(":", "", s); next }
       /^  [a-z_]+:/ { k = $1; sub(":", "", k); print s "." k }' "$1" | sort -u
}
for f in "$config" "$cluster_config"; do
  badkeys=$(comm -13 <(keys "$root/configs/pushd.example.yaml") <(keys "$f"))
  if [ -n "$badkeys" ]; then
    fail "$(basename "$f"): keys not in configs/pushd.example.yaml:"$'\n'"$badkeys"
  else
    say "$(basename "$f"): $(keys "$f" | wc -l) keys, all known"
  fi
done

# --- systemd unit -----------------------------------------------------------
if command -v systemd-analyze >/dev/null 2>&1; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  # verify wants ExecStart to exist; stand in for a pushd not installed here.
  if [ -x /usr/local/bin/pushd ]; then
    cp "$unit" "$tmp/pushd.service"
  else
    sed 's#^ExecStart=/usr/local/bin/pushd#ExecStart=/bin/true#' "$unit" >"$tmp/pushd.service"
  fi
  if out=$(systemd-analyze verify "$tmp/pushd.service" 2>&1) && [ -z "$out" ]; then
    say "systemd unit: systemd-analyze verify OK"
  else
    fail "systemd unit:"$'\n'"$out"
  fi
  exposure=$(systemd-analyze security --offline=true "$tmp/pushd.service" 2>/dev/null | tail -n 1 || true)
  [ -n "$exposure" ] && say "systemd unit: ${exposure#→ }"
else
  say "systemd unit: systemd-analyze not found, not checked"
fi

if [ "$failed" -ne 0 ]; then
  say "FAILED"
  exit 1
fi
say "all checks passed"
