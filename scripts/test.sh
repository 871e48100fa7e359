#!/usr/bin/env bash
# Runs every test of the workspace against real PostgreSQL (a private test cluster that the
# test harness starts on first use) and a real broker, then stops that cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh test

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export RUST_BACKTRACE=1
status=0
cargo nextest run --workspace --no-fail-fast --profile ci "$@" || status=$?
cargo run --quiet -p homeward-testkit --bin homeward-test-db -- stop || true
# The API conformance fuzzer against a live server (scripts/schemathesis.sh), every check and
# the stateful phase; HOMEWARD_SCHEMATHESIS=0 skips it.
if [ "${HOMEWARD_SCHEMATHESIS:-1}" != "0" ]; then
  scripts/schemathesis.sh || status=$?
fi
exit $status
