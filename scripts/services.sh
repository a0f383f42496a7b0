#!/usr/bin/env bash
# Starts the services pushd's demo and tests need on this machine, installing
# them with apt-get where they are missing. Safe to run any number of times.
#
#   scripts/services.sh            RabbitMQ, PostgreSQL, and Chromium for the
#                                  console's browser test (with fonts for
#                                  Korean and emoji, so that its screenshots
#                                  show them)
#
# PostgreSQL is for the tests of the PostgreSQL store and the cluster tests:
# they connect as postgres@127.0.0.1 without a password (pgtest.DefaultURL)
# and create a database per test. Where this script installs PostgreSQL
# itself, it lets loopback connections in with trust authentication, as
# this project's machines have it; it does not touch a cluster it did not
# have to start.
set -euo pipefail

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

wait_port() { # port name seconds
  for _ in $(seq 1 "$3"); do
    if port_open "$1"; then return 0; fi
    sleep 1
  done
  echo "services: $2 is not listening on 127.0.0.1:$1 after $3s" >&2
  return 1
}

apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq "$@" >/dev/null
}

ensure_rabbitmq() {
  if port_open 5672; then
    echo "services: RabbitMQ is running on 127.0.0.1:5672"
    return 0
  fi
  if ! command -v rabbitmq-server >/dev/null 2>&1; then
    echo "services: installing rabbitmq-server with apt-get"
    apt_install rabbitmq-server
  fi
  echo "services: starting RabbitMQ"
  # The Debian package may have started it through its init script already.
  if ! port_open 5672; then
    as_root rabbitmq-server -detached || true
  fi
  wait_port 5672 RabbitMQ 120
  as_root rabbitmqctl -q await_startup >/dev/null 2>&1 || true
  echo "services: RabbitMQ is running on 127.0.0.1:5672"
}

ensure_postgres() {
  if port_open 5432; then
    echo "services: PostgreSQL is running on 127.0.0.1:5432"
    return 0
  fi
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    echo "services: installing postgresql with apt-get"
    apt_install postgresql
    local hba
    for hba in /etc/postgresql/*/main/pg_hba.conf; do
      if ! as_root grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
        as_root sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
      fi
    done
  fi
  echo "services: starting PostgreSQL"
  local v
  for v in $(ls /etc/postgresql); do
    as_root pg_ctlcluster --skip-systemctl-redirect "$v" main start || true
  done
  wait_port 5432 PostgreSQL 60
  echo "services: PostgreSQL is running on 127.0.0.1:5432"
}

ensure_chromium() {
  if [ -x /usr/bin/chromium ]; then
    echo "services: Chromium is installed"
    return 0
  fi
  echo "services: installing chromium with apt-get"
  apt_install chromium fonts-noto-cjk fonts-noto-color-emoji
  echo "services: Chromium is installed"
}

ensure_rabbitmq
ensure_postgres
ensure_chromium
