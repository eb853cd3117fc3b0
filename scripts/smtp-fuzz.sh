#!/usr/bin/env bash
# The SMTP fuzz targets (fuzz/fuzz_targets/): the relay's server session, the request parser it
# uses, and the client's reply parser, each fed arbitrary bytes by libFuzzer.
#
#   scripts/smtp-fuzz.sh [seconds per target]        (CI: 20; the recorded run: see TESTING.md)
#
# Needs the nightly toolchain (installed on our machines for this only) and cargo-fuzz.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-20}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/mailgate-target}"

if ! cargo +nightly --version >/dev/null 2>&1; then
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz
fi

cargo +nightly fuzz build
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
for target in server_session request_parser reply_parser; do
  # A crash, a hang past -timeout or a blown memory limit fails the run; libFuzzer leaves the
  # input in fuzz/artifacts/.
  if ! cargo +nightly fuzz run "$target" -- -max_total_time="$seconds" -timeout=10 \
      -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    tail -n 40 "$log"
    echo "fuzzing $target failed"
    exit 1
  fi
  runs="$(grep -a '^stat::number_of_executed_units' "$log" | awk '{print $2}')"
  echo "$target: ${runs:-?} executions in ${seconds} s, no crash"
done
