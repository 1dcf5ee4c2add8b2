#!/usr/bin/env bash
# Writes link/symbol-order.txt: the functions of the release binary that run when the daemon
# starts, idles, connects its bots and answers messages, as found by running it under
# callgrind. build.rs hands the list to the linker, which places those functions together at
# the start of the code, so the pages a running daemon touches are few and its idle RSS small
# (ARCHITECTURE.md, `build.rs`). Run it again after large changes; names it no longer matches are
# skipped by the linker, so a stale list costs memory, never correctness.
#
# Needs valgrind. The profiled build is the release build with its symbols kept through
# RUSTFLAGS, which leave cargo's `-C metadata` alone: its symbol names, hashes included, are the
# ones `cargo build --release` and `cargo bench` link.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v valgrind >/dev/null || { echo "symbol-order: valgrind is needed (apt-get install valgrind)" >&2; exit 1; }

order_target=${ORDER_TARGET_DIR:-/var/cache/operator/order}
RUSTFLAGS="-C strip=none" CARGO_TARGET_DIR="$order_target" cargo build --release --bin operator
bin=$(realpath "$order_target/release/operator")

work=$(mktemp -d)
daemon=
cleanup() {
    [ -n "$daemon" ] && kill -TERM "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/operator" <<EOF
#!/bin/sh
exec valgrind --tool=callgrind --callgrind-out-file=$work/cg-\$ORDER_PHASE.%p --demangle=no \
    --compress-strings=no --log-file=$work/valgrind.%p "$bin" "\$@"
EOF
chmod +x "$work/operator"

# Bare: start to ready, idle, stop.
cat >"$work/operator.toml" <<EOF
[state]
dir = "$work/state"
[admin]
listen = "127.0.0.1:0"
EOF
ORDER_PHASE=bare OPERATOR_LOG=info "$work/operator" run --config "$work/operator.toml" 2>"$work/bare.log" &
daemon=$!
for _ in $(seq 120); do
    grep -q ready "$work/bare.log" && break
    sleep 1
done
grep -q ready "$work/bare.log" || { echo "symbol-order: the daemon never became ready" >&2; exit 1; }
sleep 2
kill -TERM "$daemon"
wait "$daemon"
daemon=

# With bots: the Telegram and Discord benches in their quick mode.
for bench in telegram discord; do
    ORDER_PHASE=$bench OPERATOR_BENCH_BIN="$work/operator" OPERATOR_BENCH_QUICK=1 \
        cargo bench --bench "$bench"
done

# What runs bare comes first, then what the bots add: an idle daemon without bots touches only the
# start of the list. Each phase's names sorted, so a new list differs from the old by what changed.
mkdir -p link
for phase in bare telegram discord; do
    awk -v bin="$bin" '
        /^ob=/ { ob = substr($0, 4) }
        /^fn=/ { if (ob == bin) print substr($0, 4) }
    ' "$work/cg-$phase".* | grep -v -e '^0x' -e '^(below main)$' | LC_ALL=C sort -u
done | awk '!seen[$0]++' >link/symbol-order.txt
echo "symbol-order: $(wc -l <link/symbol-order.txt) functions in link/symbol-order.txt"
