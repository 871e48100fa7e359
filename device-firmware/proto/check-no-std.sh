#!/usr/bin/env bash
# Checks that homeward-proto stays usable on a device: it builds without its `std` feature, and
# no dependency has `std` (or `alloc`) switched on in that build. When a bare-metal target is
# installed (`rustup target add thumbv7em-none-eabihf`), it also builds for it, where any
# use of std fails to compile. Run from anywhere; CI should run it beside `cargo test`.
set -euo pipefail
cd "$(dirname "$0")"

cargo build -p homeward-proto --no-default-features

features=$(cargo tree -p homeward-proto --no-default-features -e normal,features --prefix none)
if grep -E 'feature "(std|alloc)"' <<<"$features"; then
    echo "check-no-std: a dependency of homeward-proto enables std or alloc (above)" >&2
    exit 1
fi

target=thumbv7em-none-eabihf
if rustup target list --installed 2>/dev/null | grep -qx "$target"; then
    cargo build -p homeward-proto --no-default-features --target "$target"
else
    echo "check-no-std: $target not installed; skipped the bare-metal build"
fi
echo "check-no-std: ok"
