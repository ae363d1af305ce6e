#!/usr/bin/env bash
# Makes sure the PostgreSQL server named by SIPSIM_TEST_POSTGRES_URL answers, starting this machine's
# cluster if it is down, and fails (naming the URL) if it still cannot be reached: CI must run the
# PostgreSQL suites, never skip them.
set -euo pipefail
url="${SIPSIM_TEST_POSTGRES_URL:?set SIPSIM_TEST_POSTGRES_URL, e.g. postgres://postgres@127.0.0.1:5432/test}"

answers() {
  if command -v psql >/dev/null; then
    psql "$url" -qtAc 'SELECT 1' >/dev/null 2>&1
  else
    # Without a client, a TCP connect to host:port is the best check; the tests check the rest.
    local hostport=${url#*://}; hostport=${hostport#*@}; hostport=${hostport%%/*}
    local host=${hostport%%:*} port=${hostport##*:}
    [ "$port" = "$hostport" ] && port=5432
    (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
  fi
}

if answers; then
  echo "PostgreSQL answers at ${url%%\?*}"
  exit 0
fi
if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
  version=$(ls /etc/postgresql | head -n1)
  echo "PostgreSQL is down; starting cluster $version/main"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 30); do
    if answers; then
      echo "PostgreSQL answers at ${url%%\?*}"
      exit 0
    fi
    sleep 1
  done
fi
echo "cannot reach PostgreSQL at ${url%%\?*}: the PostgreSQL suites cannot run" >&2
exit 1
