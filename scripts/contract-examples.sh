#!/usr/bin/env bash
# Runs the contract's curl and Python examples (managing-webhooks-api.txt) against a live sipsimd,
# verbatim except for the base URL and the access token, and checks the answers a user would read.
# Needs: a built target/debug/sipsimd (or SIPSIMD=path), python3, curl. Installs `requests` into .venv (scripts/ensure-python.sh).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=${SIPSIMD:-$root/target/debug/sipsimd}
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

export SIPSIM_DATABASE_URL="sqlite://$work/sipsim.db"
unset SIPSIM_ALLOW_INSECURE_TARGETS SIPSIM_JWT_SECRET
field() { python3 -c "import json,sys; print(json.load(sys.stdin)[\"$1\"])"; }
fail() { echo "contract-examples: FAIL: $*" >&2; exit 1; }
# The examples' curl lines stay as written; only the progress meter is silenced.
curl() { command curl --no-progress-meter "$@"; }

account=$("$bin" account create "Example Co" --json | field account_id)
creds=$("$bin" client create --account "$account" --scopes "webhooks.read webhooks.write" --json)
client_id=$(field client_id <<<"$creds")
client_secret=$(field client_secret <<<"$creds")

"$bin" serve --listen 127.0.0.1:0 2>"$work/serve.log" &
pid=$!
for _ in $(seq 100); do
  base=$(sed -n 's/.*listen=\([0-9.:]*\).*/\1/p' "$work/serve.log" | head -n1)
  [ -n "$base" ] && break
  sleep 0.1
done
[ -n "$base" ] || fail "sipsimd did not start: $(cat "$work/serve.log")"
BASE="http://$base"

# --- The reference's token request (AUTH), with this system's scopes. ---
token_json=$(curl -sS -X POST "$BASE/oauth/token" \
-H "Content-Type: application/x-www-form-urlencoded" \
-d "grant_type=client_credentials" \
-d "client_id=$client_id" \
-d "client_secret=$client_secret" \
-d "scope=webhooks.read webhooks.write")
YOUR_ACCESS_TOKEN=$(field access_token <<<"$token_json")

check() { # check NAME PYTHON-EXPRESSION-ON-r  (r = parsed JSON of stdin)
  python3 -c "import json,sys; r=json.load(sys.stdin); assert $2, r" || fail "$1"
  echo "ok: $1"
}

# --- Before the integration exists: the contract's 404, verbatim. ---
curl -s "$BASE/api/v2/webhooks" \
-H "Authorization: Bearer $YOUR_ACCESS_TOKEN" | check "404 not configured" \
  "r['status'] == 404 and r['errors'] == ['Webhook integration not configured. Set a webhook URL via the dashboard first.'] and r['path'] == '/api/v2/webhooks'"

# The dashboard's part, done by the operator command until the dashboard exists.
"$bin" integration set --account "$account" --url https://example.com/webhooks/sipsim \
  --events incoming_call_start,incoming_call_end --json >/dev/null

# --- List Available Events ---
curl "$BASE/api/v2/webhooks/available" \
-H "Authorization: Bearer $YOUR_ACCESS_TOKEN" | check "list available" \
  "r['status'] == 200 and len(r['data']) == 14 and r['data'][0] == {'event': 'incoming_call_start'} and r['data'][-1] == {'event': 'rating'}"

# --- List Enabled Events ---
curl "$BASE/api/v2/webhooks" \
-H "Authorization: Bearer $YOUR_ACCESS_TOKEN" | check "list enabled" \
  "r['data'] == [{'event': 'incoming_call_start'}, {'event': 'incoming_call_end'}]"

# --- Enable an Event ---
curl -X POST "$BASE/api/v2/webhooks/outgoing_call_end" \
-H "Authorization: Bearer $YOUR_ACCESS_TOKEN" | check "enable" \
  "r['data'] == {'webhook_url': 'https://example.com/webhooks/sipsim', 'enabled': True, 'subscribed_events': ['incoming_call_start', 'incoming_call_end', 'outgoing_call_end']}"

# --- Disable an Event ---
curl -X DELETE "$BASE/api/v2/webhooks/incoming_call_start" \
-H "Authorization: Bearer $YOUR_ACCESS_TOKEN" | check "disable" \
  "r['data']['subscribed_events'] == ['incoming_call_end', 'outgoing_call_end']"

# --- Unknown Event (400) ---
curl -s -X POST "$BASE/api/v2/webhooks/invalid_event" \
-H "Authorization: Bearer $YOUR_ACCESS_TOKEN" | check "400 unknown event" \
  "r['status'] == 400 and r['errors'] == [\"Unknown event 'invalid_event'. Use GET /api/v2/webhooks/available for the list of valid events.\"] and r['path'] == '/api/v2/webhooks/invalid_event'"

# --- Bulk Enable Example: the contract's Python, verbatim but for base URL and token (and the loop
# body's indentation, which the contract's text lost and Python needs). ---
venv="$root/.venv"
bash "$root/scripts/ensure-python.sh" >/dev/null
cat >"$work/bulk.py" <<'PY'
import requests

access_token = "YOUR_ACCESS_TOKEN"
headers = {"Authorization": f"Bearer {access_token}"}

available = requests.get(
"https://app.sipsim.com/api/v2/webhooks/available",
headers=headers
).json()["data"]

for event in available:
    requests.post(
    f"https://app.sipsim.com/api/v2/webhooks/{event['event']}",
    headers=headers
    )
    print(f"Enabled: {event['event']}")

print("All events enabled.")
PY
sed -i "s|https://app.sipsim.com|$BASE|; s|YOUR_ACCESS_TOKEN|$YOUR_ACCESS_TOKEN|" "$work/bulk.py"
"$venv/bin/python" "$work/bulk.py" >"$work/bulk.out"
[ "$(grep -c '^Enabled: ' "$work/bulk.out")" = 14 ] || fail "bulk enable printed: $(cat "$work/bulk.out")"
tail -n1 "$work/bulk.out" | grep -qx 'All events enabled.' || fail "bulk enable did not finish"
curl -s "$BASE/api/v2/webhooks" -H "Authorization: Bearer $YOUR_ACCESS_TOKEN" | check "bulk enable: all 14 in catalog order" \
  "[i['event'] for i in r['data']] == [i['event'] for i in json.loads('''$(curl -s "$BASE/api/v2/webhooks/available" -H "Authorization: Bearer $YOUR_ACCESS_TOKEN")''')['data']] and len(r['data']) == 14"

echo "contract-examples: all passed"
