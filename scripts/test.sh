#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, unit and integration tests.
# Usage: scripts/test.sh   (from anywhere; it works in the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."

# Reuse one target directory across clones so CI does not rebuild every dependency.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/operator/target}"
mkdir -p "$CARGO_TARGET_DIR"

if ! command -v cargo-nextest >/dev/null 2>&1; then
    echo "cargo-nextest is missing; installing it" >&2
    cargo install --locked cargo-nextest
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --locked --all-targets -- -D warnings
echo "== tests"
cargo nextest run --locked --no-fail-fast
