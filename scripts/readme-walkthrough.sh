#!/usr/bin/env bash
# Runs README.md's CLI walkthrough (the code block after the `<!-- walkthrough` marker) as written, in an
# empty folder, with target/debug's sipsim and sipsimd first on PATH, and checks what a reader would
# see: 14 then 12 events enabled, simulated events arriving verified at `sipsim listen`, none refused,
# the delivery log listing them, a resend queued.
# Needs: target/debug/sipsim and target/debug/sipsimd (built by `cargo test`), python3, curl; ports
# 8080 and 4242 free.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
fail() { echo "readme-walkthrough: FAIL: $*" >&2; echo "--- output:" >&2; cat "$work/out.log" >&2 || true; exit 1; }
pgid=
cleanup() { [ -n "$pgid" ] && kill -- "-$pgid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

for bin in sipsim sipsimd; do
  [ -x "$root/target/debug/$bin" ] || (cd "$root" && cargo build --bin "$bin")
done
block=$(awk '/^<!-- walkthrough/ { found = 1; next }
             found && /^```sh/ { inside = 1; next }
             inside && /^```/ { exit }
             inside { print }' "$root/README.md")
[ -n "$block" ] || fail "no walkthrough block in README.md"
printf '%s\n' "$block" > "$work/walkthrough.sh"

unset SIPSIM_DATABASE_URL SIPSIM_API_URL SIPSIM_CLIENT_ID SIPSIM_CLIENT_SECRET SIPSIM_ACCESS_TOKEN \
  SIPSIM_WEBHOOK_SECRET SIPSIM_JWT_SECRET SIPSIM_ENCRYPTION_KEY SIPSIM_LISTEN
export PATH="$root/target/debug:$PATH" NO_COLOR=1
# Its own process group, so that whatever it leaves running is stopped with it.
(cd "$work" && exec setsid timeout 180 bash -eo pipefail walkthrough.sh) > "$work/out.log" 2>&1 &
pgid=$!
wait "$pgid" || fail "the walkthrough exited with $?"
pgid=

out="$work/out.log"
grep -q "^incoming_call_start " "$out" || fail "webhooks available printed no events"
grep -q "14 event(s) enabled; 14 of 14 now enabled" "$out" || fail "enable --all"
grep -q "2 event(s) disabled; 12 of 14 now enabled" "$out" || fail "disable"
arrived=$(grep -c "✓ 200" "$out" || true)
[ "$arrived" -ge 20 ] || fail "only $arrived verified events arrived at sipsim listen"
! grep -q "✗" "$out" || fail "sipsim listen refused a delivery"
! grep -Eq "✓ 200 (rating|summary) " "$out" || fail "a disabled event was delivered"
grep -q "^ID .*STATUS .*LAST RESULT" "$out" || fail "deliveries list printed no table"
grep -q "succeeded" "$out" || fail "no succeeded delivery in the log"
grep -q "^Queued dlv_" "$out" || fail "resend"
echo "ok: README walkthrough ($arrived events verified at sipsim listen)"
