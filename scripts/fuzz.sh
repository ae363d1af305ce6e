#!/usr/bin/env bash
# Fuzzes the parsers that take untrusted input with libFuzzer (cargo fuzz, AddressSanitizer) for
# SECONDS each (default 20): payload parsing, the ingest batch parser, JWT verification, webhook URL
# validation and the SSRF address check. Each target's property is sipsim_core::checks::<target>.
# Seeds: fuzz/seeds/<target>/ (the reference's examples and known tricky inputs). A failing input is
# copied into fuzz/seeds/<target>/, where `cargo test -p sipsim-core --test fuzz_seeds` checks it from
# then on, and the script fails.
# Only the stable toolchain is installed: RUSTC_BOOTSTRAP=1 lets cargo fuzz pass its -Z flags to it.
# Needs cargo-fuzz (installed here with `cargo install cargo-fuzz --locked` when missing).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-20}
targets=${FUZZ_TARGETS:-payload ingest jwt webhook_url address}
export RUSTC_BOOTSTRAP=1

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --quiet
cd "$root/fuzz"
cargo fuzz build -O
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=()
for target in $targets; do
  mkdir -p "$work/$target" "$root/fuzz/artifacts/$target"
  echo "--- fuzz: $target for ${seconds}s"
  if cargo fuzz run -O "$target" "$work/$target" "$root/fuzz/seeds/$target" -- \
      -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
      2>"$work/$target.log"; then
    grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb' "$work/$target.log" | tr '\n' ' '
    echo "(corpus: $(ls "$work/$target" | wc -l) inputs)"
  else
    tail -n 30 "$work/$target.log"
    for artifact in "$root/fuzz/artifacts/$target"/*; do
      [ -f "$artifact" ] || continue
      cp "$artifact" "$root/fuzz/seeds/$target/regression-$(basename "$artifact")"
      echo "saved $artifact as fuzz/seeds/$target/regression-$(basename "$artifact")"
    done
    failed+=("$target")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: FAIL: ${failed[*]} (inputs saved under fuzz/seeds/ as regression tests)" >&2
  exit 1
fi
echo "ok: no failure in ${seconds}s per target"
