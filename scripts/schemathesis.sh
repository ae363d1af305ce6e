#!/usr/bin/env bash
# Runs schemathesis (PyPI; installed into .venv-schemathesis) against a live sipsimd with the served
# OpenAPI document: generated and mutated requests to every documented operation, with a valid token
# of both scopes and with the ingest key. Fails on any 5xx or any answer that does not match the
# document (status, content type, headers, body schema). Rate limits are off for the run, as
# schemathesis would otherwise (rightly) meet 429s.
# Needs a built target/debug/sipsimd (or SIPSIMD=path). SCHEMATHESIS_MAX_TIME bounds the run (s).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=${SIPSIMD:-$root/target/debug/sipsimd}
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
fail() { echo "schemathesis: FAIL: $*" >&2; exit 1; }

venv="$root/.venv-schemathesis"
if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'schemathesis>=4.32,<5'
fi

export SIPSIM_DATABASE_URL="sqlite://$work/sipsim.db"
export SIPSIM_INGEST_KEY=schemathesis-ingest-key-0123
export SIPSIM_API_RATE_LIMIT=0 SIPSIM_TOKEN_RATE_LIMIT=0
unset SIPSIM_ALLOW_INSECURE_TARGETS SIPSIM_JWT_SECRET SIPSIM_ENCRYPTION_KEY
field() { python3 -c "import json,sys; print(json.load(sys.stdin)[\"$1\"])"; }

account=$("$bin" account create "Schemathesis" --json | field account_id)
creds=$("$bin" client create --account "$account" --scopes "webhooks.read webhooks.write" --json)
"$bin" integration set --account "$account" --url https://example.com/webhooks/sipsim --events sms --json >/dev/null

"$bin" serve --listen 127.0.0.1:0 --retry-schedule 0s 2>"$work/serve.log" &
pid=$!
for _ in $(seq 100); do grep -q 'listen=' "$work/serve.log" && break; sleep 0.1; done
base="http://$(sed -n 's/.*listen=\([0-9.:]*\).*/\1/p' "$work/serve.log" | head -n1)"
[ "$base" != "http://" ] || fail "sipsimd did not start: $(cat "$work/serve.log")"

token=$(curl -sS -X POST "$base/oauth/token" -d grant_type=client_credentials \
  -d "client_id=$(field client_id <<<"$creds")" -d "client_secret=$(field client_secret <<<"$creds")" \
  | field access_token)

run() { # run NAME AUTH-HEADER FILTERS…
  local name=$1 auth=$2; shift 2
  echo "--- schemathesis: $name"
  "$venv/bin/schemathesis" run "$base/api/v2/openapi.json" \
    --url "$base" \
    --header "Authorization: $auth" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
    --max-time "${SCHEMATHESIS_MAX_TIME:-30}" \
    --workers 2 \
    --seed 1 \
    --suppress-health-check too_slow \
    --no-color \
    "$@" || fail "$name: see the failures above"
}
run "the public API with a token" "Bearer $token" --exclude-path /internal/v1/events
run "ingest with its key" "Bearer $SIPSIM_INGEST_KEY" --include-path /internal/v1/events

grep -q 'request failed' "$work/serve.log" && fail "the server logged a failed request: $(grep 'request failed' "$work/serve.log" | head -3)"
echo "ok: schemathesis found no server error and no answer outside the document"
