#!/usr/bin/env bash
# Runs pushd end to end on this machine with its defaults: starts RabbitMQ
# (installing it if needed), the APNs/FCM simulator and pushd, enqueues a demo
# campaign of 10,000 recipients (half iOS, half Android), shows it delivered.
# It also opens the operator console: a demo operator with a password made
# for this run (in .demo/, never in the repository) and a demo audience of
# 1,000 recipients, so that a campaign can be scheduled to the simulator from
# the browser at once. Run from a terminal, pushd then keeps running for the
# console until Ctrl-C; otherwise (or with DEMO_STAY=0) everything stops with
# SIGTERM. Logs are in .demo/.
#
#   scripts/demo.sh [recipients]
#
# DEMO_SIM_ADDR, DEMO_METRICS_ADDR and DEMO_ADMIN_ADDR move the simulator,
# pushd's metrics and the console off their default ports.
set -euo pipefail
cd "$(dirname "$0")/.."
recipients=${1:-10000}
demo=.demo
sim_addr=${DEMO_SIM_ADDR:-127.0.0.1:8443}
metrics_addr=${DEMO_METRICS_ADDR:-127.0.0.1:9102}
admin_addr=${DEMO_ADMIN_ADDR:-127.0.0.1:8080}
stay=${DEMO_STAY:-}
if [ -z "$stay" ]; then
  if [ -t 0 ] && [ -t 1 ]; then stay=1; else stay=0; fi
fi

scripts/services.sh
mkdir -p "$demo" bin
echo "demo: building pushd, pushctl, pushsim"
scripts/build.sh ./cmd/pushd ./cmd/pushctl ./cmd/pushsim

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

wait_http() { # url what [curl args]
  local url=$1 what=$2; shift 2
  for _ in $(seq 1 100); do
    if curl -fsS "$@" "$url" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "demo: $what did not come up; see $demo/*.log" >&2
  exit 1
}

echo "demo: starting the simulator on https://$sim_addr (APNs over HTTP/2+TLS, FCM v1)"
bin/pushsim -addr "$sim_addr" -ca-out "$demo/sim-ca.pem" -latency 2ms -track-tokens=true >"$demo/pushsim.log" 2>&1 &
pids+=($!)
wait_http "https://$sim_addr/sim/stats" pushsim --cacert "$demo/sim-ca.pem"

# Admin API tokens (a secret: a file of the demo's own, not in the config,
# that only this user may read: pushd refuses one that others may read): an
# operator's for pushctl, an admin's to make the console's demo operator.
umask 077
random_hex() { head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
touch "$demo/admin-tokens"
chmod 600 "$demo/admin-tokens" # made by an older demo, maybe 0644
for role in operator admin; do
  if ! grep -q "^$role:" "$demo/admin-tokens"; then
    printf '%s:%s\n' "$role" "$(random_hex)" >>"$demo/admin-tokens"
  fi
  sed -n "s/^$role://p" "$demo/admin-tokens" >"$demo/$role-token"
  chmod 600 "$demo/$role-token"
done

echo "demo: starting pushd (logs in $demo/pushd.log)"
PUSHD_ADMIN_TOKENS_FILE="$demo/admin-tokens" PUSHD_APNS_HOST="https://$sim_addr" PUSHD_APNS_CA_FILE="$demo/sim-ca.pem" \
PUSHD_FCM_ENDPOINT="https://$sim_addr/v1" PUSHD_FCM_CA_FILE="$demo/sim-ca.pem" \
PUSHD_METRICS_ADDR="$metrics_addr" PUSHD_ADMIN_ADDR="$admin_addr" PUSHD_STORE_DSN="$demo/pushd.db" PUSHD_LOG_FORMAT=text \
  bin/pushd >"$demo/pushd.log" 2>&1 &
pushd_pid=$!
pids+=($pushd_pid)
wait_http "http://$metrics_addr/readyz" pushd
export PUSHD_ADMIN_ADDR="$admin_addr" # for pushctl

# The console's demo operator, with a password made for this run (kept in
# .demo/operator-password, readable only by this user), and an audience
# to send to.
console_user=demo
password="demo-$(random_hex)"
printf '%s\n' "$password" >"$demo/operator-password"
if ! printf '%s\n' "$password" | bin/pushctl users -token-file "$demo/admin-token" add "$console_user" operator >/dev/null 2>"$demo/pushctl.err"; then
  grep -q 'exists' "$demo/pushctl.err" || { cat "$demo/pushctl.err" >&2; exit 1; }
  # Made by an earlier run (the store is kept): a new password.
  printf '%s\n' "$password" | bin/pushctl users -token-file "$demo/admin-token" passwd "$console_user" >/dev/null
  bin/pushctl users -token-file "$demo/admin-token" enable "$console_user" >/dev/null
fi
# Check the sign-in as the browser will do it.
code=$(printf '%s' "$password" | curl -s -o /dev/null -w '%{http_code}' --data-urlencode "username=$console_user" --data-urlencode "password@-" "http://$admin_addr/login")
if [ "$code" != 303 ]; then
  echo "demo: signing in as $console_user answered $code, want 303; see $demo/pushd.log" >&2
  exit 1
fi
awk 'BEGIN {
  print "platform,token,user_id"
  for (i = 0; i < 1000; i++) {
    if (i % 2 == 0) printf "ios,%08x%08x%08x%08x%08x%08x%08x%08x,demo-%d\n", i, i, i, i, i, i, i, i, i
    else printf "android,%012x:APA91b%08x%08x%08x%08x%08x%08x,demo-%d\n", i, i, i, i, i, i, i, i
  }
}' >"$demo/demo-audience.csv"
audience_name="demo audience $(date +%H:%M:%S)"
bin/pushctl audiences -token-file "$demo/operator-token" import -name "$audience_name" "$demo/demo-audience.csv" >/dev/null
echo
echo "demo: the operator console is at http://$admin_addr/"
echo "demo:   sign in as: $console_user"
echo "demo:   password:   $password   (also in $demo/operator-password)"
echo "demo:   then: New campaign, a title, Audience \"$audience_name\", Save draft, Schedule:"
echo "demo:   the simulator receives it, and the campaign page shows it live."
echo

# Notifications the providers accepted so far, from pushd's metrics.
sent() {
  curl -fsS "http://$metrics_addr/metrics" |
    awk '/^pushd_sends_total\{.*result="sent"/ { n += $2 } END { printf "%d\n", n }'
}
before=$(sent)
campaign="demo-$(date +%s)"
echo "demo: enqueueing campaign $campaign: $recipients recipients, half iOS, half Android"
bin/pushctl enqueue -campaign "$campaign" -n "$recipients" -ios-percent 50 -title "Spring sale" -body "50% off today"

start=$(date +%s%N)
done_n=0
for _ in $(seq 1 1500); do
  done_n=$(( $(sent) - before ))
  if [ "$done_n" -ge "$recipients" ]; then break; fi
  sleep 0.2
done
took_ms=$(( ($(date +%s%N) - start) / 1000000 ))
echo
echo "demo: $done_n of $recipients notifications delivered in ${took_ms} ms"
echo
echo "demo: what the simulator received (https://$sim_addr/sim/stats):"
curl -fsS --cacert "$demo/sim-ca.pem" "https://$sim_addr/sim/stats"
echo
echo
echo "demo: pushd's metrics (http://$metrics_addr/metrics):"
curl -fsS "http://$metrics_addr/metrics" | grep -E '^pushd_(sends_total|recipients_received_total|batches_received_total|batches_dead_lettered_total|inflight_recipients)' | sed 's/^/  /'
echo
echo "demo: campaigns through the admin API (pushctl campaigns list):"
bin/pushctl campaigns -token-file "$demo/operator-token" list | sed 's/^/  /'
echo
if [ "$stay" = 1 ]; then
  echo "demo: pushd keeps running for the console at http://$admin_addr/ (user $console_user, password $password)."
  echo "demo: press Ctrl-C to stop."
  trap 'echo; echo "demo: stopping"; exit 0' INT TERM
  wait "$pushd_pid" || true
  exit 0
fi
echo "demo: stopping pushd with SIGTERM (run the demo from a terminal, or with DEMO_STAY=1, to keep it running for the console)"
kill -TERM "$pushd_pid"
if wait "$pushd_pid"; then echo "demo: pushd exited 0"; else echo "demo: pushd exited $?" >&2; exit 1; fi
if [ "$done_n" -lt "$recipients" ]; then
  echo "demo: only $done_n of $recipients delivered" >&2
  exit 1
fi
echo "demo: done"
