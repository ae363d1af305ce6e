#!/usr/bin/env bash
# Delivers every event type through a real sipsimd to a Python receiver that verifies each request
# with SIPSIM's documented Python verifier and with the `standardwebhooks` package (installed from PyPI
# into .venv by scripts/ensure-python.sh). Needs a built target/debug/sipsimd (or SIPSIMD=path).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=${SIPSIMD:-$root/target/debug/sipsimd}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
fail() { echo "verify-with-python: FAIL: $*" >&2; exit 1; }

venv="$root/.venv"
bash "$root/scripts/ensure-python.sh" >/dev/null

export SIPSIM_DATABASE_URL="sqlite://$work/sipsim.db"
export SIPSIM_ALLOW_INSECURE_TARGETS=1
export SIPSIM_INGEST_KEY=verify-with-python-key
field() { python3 -c "import json,sys; print(json.load(sys.stdin)[\"$1\"])"; }
events=incoming_call_start,incoming_call_start_chain_member_call,incoming_call_end_chain_member_call,incoming_call_answer,incoming_call_end,outgoing_call_start,outgoing_call_answer,outgoing_call_end,voicemail,tags,speech,summary,sms,rating

# receive OUT SECRET [STANDARD_SECRET]: starts a Python receiver writing to $work/OUT and points
# the integration at it.
receive() {
  local out=$1
  shift
  "$venv/bin/python" "$root/scripts/python_receiver.py" "$@" >"$work/$out" 2>"$work/$out.err" &
  pids+=($!)
  for _ in $(seq 100); do [ -s "$work/$out" ] && break; sleep 0.1; done
  local port
  port=$(head -n1 "$work/$out")
  [ -n "$port" ] || fail "the receiver did not start: $(cat "$work/$out.err")"
  "$bin" integration set --account "$account" --url "http://127.0.0.1:$port/webhooks/sipsim" --json >/dev/null
}

# until_received OUT N: waits until N requests are in $work/OUT (after its first line, the port).
until_received() {
  for _ in $(seq 200); do
    [ "$(($(wc -l <"$work/$1") - 1))" -ge "$2" ] && break
    sleep 0.1
  done
}

account=$("$bin" account create "Python check" --json | field account_id)
# The secret is made with the integration; the receiver needs it before its URL is known.
secret=$("$bin" integration set --account "$account" --url http://127.0.0.1:9/ --events "$events" --json | field signing_secret)
receive received "$secret"

"$bin" serve --listen 127.0.0.1:0 --retry-schedule 0s 2>"$work/serve.log" &
pids+=($!)
for _ in $(seq 100); do grep -q 'listen=' "$work/serve.log" && break; sleep 0.1; done

for event in ${events//,/ }; do
  "$bin" emit --account "$account" "$event" --example --json >/dev/null
done

until_received received 14
"$venv/bin/python" - "$work/received" <<'PY'
import json, sys
lines = open(sys.argv[1]).read().splitlines()[1:]
results = [json.loads(l) for l in lines]
passed = [r for r in results if r["sipsim_ok"] and r["standard_ok"]]
failed = [r for r in results if r not in passed]
for r in failed:
    print("not verified:", r)
events = sorted(r["event"] for r in passed)
if len(events) != 14 or len(set(events)) != 14:
    print("expected each of the 14 events once, got", events)
    failed.append("count")
print(f"verify-with-python: {len(passed)} passed, {len(failed)} failed")
sys.exit(1 if failed else 0)
PY

# A secret brought from SIPSIM (not whsec_<base64>): X-Webhook-Signature is SIPSIM's HMAC over its
# UTF-8 bytes, and the standardwebhooks package verifies webhook-signature given the whsec_ form the
# integration shows. The running node picks the new secret up from the database.
own='my SIPSIM signing secret, kept'
standard=$(printf '%s\n' "$own" | "$bin" integration set --account "$account" --url http://127.0.0.1:9/ --signing-secret-stdin --json | field standard_webhooks_secret)
[ "$standard" != "$own" ] || fail "a brought secret has no whsec_ form"
receive own "$own" "$standard"
for event in sms incoming_call_start; do
  "$bin" emit --account "$account" "$event" --example --json >/dev/null
done
until_received own 2
"$venv/bin/python" - "$work/own" <<'PY'
import json, sys
results = [json.loads(l) for l in open(sys.argv[1]).read().splitlines()[1:]]
ok = [r for r in results if r["sipsim_ok"] and r["standard_ok"]]
print(f"verify-with-python, a brought secret: {len(ok)} of {len(results)} verified", results if len(ok) != 2 else "")
sys.exit(0 if len(ok) == 2 and len(results) == 2 else 1)
PY
