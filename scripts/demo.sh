#!/usr/bin/env bash
# Runs pushd end to end on this machine with its defaults: starts RabbitMQ
# (installing it if needed), the APNs/FCM simulator and pushd, enqueues a demo
# campaign of 10,000 recipients (half iOS, half Android), shows it delivered,
# then stops everything with SIGTERM. Logs are in .demo/.
#
#   scripts/demo.sh [recipients]
set -euo pipefail
cd "$(dirname "$0")/.."
recipients=${1:-10000}
demo=.demo
sim_addr=127.0.0.1:8443
metrics_addr=127.0.0.1:9102

scripts/services.sh
mkdir -p "$demo" bin
echo "demo: building pushd, pushctl, pushsim"
go build -o bin/ ./cmd/pushd ./cmd/pushctl ./cmd/pushsim

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
# that only this user may read: pushd refuses one that others may read).
umask 077
if [ ! -s "$demo/admin-tokens" ]; then
  printf 'operator:%s\n' "$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$demo/admin-tokens"
fi
chmod 600 "$demo/admin-tokens" # made by an older demo, maybe 0644
sed -n 's/^operator://p' "$demo/admin-tokens" >"$demo/operator-token"
chmod 600 "$demo/operator-token"

echo "demo: starting pushd (logs in $demo/pushd.log)"
PUSHD_ADMIN_TOKENS_FILE="$demo/admin-tokens" PUSHD_APNS_HOST="https://$sim_addr" PUSHD_APNS_CA_FILE="$demo/sim-ca.pem" \
PUSHD_FCM_ENDPOINT="https://$sim_addr/v1" PUSHD_FCM_CA_FILE="$demo/sim-ca.pem" \
PUSHD_METRICS_ADDR="$metrics_addr" PUSHD_STORE_DSN="$demo/pushd.db" PUSHD_LOG_FORMAT=text \
  bin/pushd >"$demo/pushd.log" 2>&1 &
pushd_pid=$!
pids+=($pushd_pid)
wait_http "http://$metrics_addr/readyz" pushd

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
echo "demo: stopping pushd with SIGTERM"
kill -TERM "$pushd_pid"
if wait "$pushd_pid"; then echo "demo: pushd exited 0"; else echo "demo: pushd exited $?" >&2; exit 1; fi
if [ "$done_n" -lt "$recipients" ]; then
  echo "demo: only $done_n of $recipients delivered" >&2
  exit 1
fi
echo "demo: done"
