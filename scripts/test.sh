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

# The instance tests drive a real Docker engine and build their image from busybox-static.
apt_updated=""
need_package() {
    if ! dpkg -s "$1" >/dev/null 2>&1; then
        if [ -z "$apt_updated" ]; then
            apt-get update -qq
            apt_updated=1
        fi
        echo "installing $1" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null
    fi
}
docker_up() {
    curl -sf --unix-socket /var/run/docker.sock http://localhost/_ping >/dev/null 2>&1
}
if ! docker_up; then
    command -v dockerd >/dev/null 2>&1 || need_package docker.io
    echo "starting dockerd" >&2
    nohup dockerd >/tmp/operator-test-dockerd.log 2>&1 &
    for _ in $(seq 1 60); do
        docker_up && break
        sleep 0.5
    done
    docker_up || { echo "dockerd did not start; see /tmp/operator-test-dockerd.log" >&2; exit 1; }
fi
need_package busybox-static
# The fleet tests run a second engine reached over TCP with TLS (certificates made with
# openssl) and over SSH (a private sshd on 127.0.0.1).
command -v openssl >/dev/null 2>&1 || need_package openssl
[ -x /usr/sbin/sshd ] || need_package openssh-server
command -v ssh >/dev/null 2>&1 || need_package openssh-client
# The admin page is tested in a real headless Chromium.
command -v chromium >/dev/null 2>&1 || need_package chromium

# The Claude Code runtime is tested with the real CLI: its native linux-x64 build from npm, run
# in a test instance against the fake Anthropic server.
CLAUDE_CODE_VERSION=2.1.335
claude_dir=/var/cache/operator/claude-code
if [ ! -x "$claude_dir/claude-$CLAUDE_CODE_VERSION" ]; then
    command -v npm >/dev/null 2>&1 || need_package npm
    echo "fetching the Claude Code CLI $CLAUDE_CODE_VERSION" >&2
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent "@anthropic-ai/claude-code-linux-x64@$CLAUDE_CODE_VERSION" >/dev/null && tar xzf ./*.tgz)
    mkdir -p "$claude_dir"
    install -m 0755 "$tmp/package/claude" "$claude_dir/claude-$CLAUDE_CODE_VERSION"
    rm -rf "$tmp"
fi
export OPERATOR_TEST_CLAUDE="$claude_dir/claude-$CLAUDE_CODE_VERSION"

# MCP is tested against a real server from npm (the reference "everything" server): over stdio
# inside a test instance (with the host's node copied in) and over Streamable HTTP on 127.0.0.1.
MCP_EVERYTHING_VERSION=2026.8.31
mcp_dir=/var/cache/operator/mcp-$MCP_EVERYTHING_VERSION
command -v node >/dev/null 2>&1 || need_package nodejs
if [ ! -f "$mcp_dir/node_modules/@modelcontextprotocol/server-everything/dist/index.js" ]; then
    command -v npm >/dev/null 2>&1 || need_package npm
    echo "fetching @modelcontextprotocol/server-everything $MCP_EVERYTHING_VERSION" >&2
    mkdir -p "$mcp_dir"
    (cd "$mcp_dir" && npm install --silent --no-audit --no-fund "@modelcontextprotocol/server-everything@$MCP_EVERYTHING_VERSION" >/dev/null)
fi
export OPERATOR_TEST_MCP="$mcp_dir"

# The workstation image's package path (apt-get in the generated Dockerfile) is tested on a real
# Debian base: a minimal bookworm root filesystem made once with debootstrap from the Debian
# mirror apt already uses, imported by the test through the API.
debian_tar=/var/cache/operator/debian-bookworm-minbase.tar
if [ ! -s "$debian_tar" ]; then
    command -v debootstrap >/dev/null 2>&1 || need_package debootstrap
    echo "making a Debian bookworm base with debootstrap" >&2
    tmp=$(mktemp -d)
    debootstrap --variant=minbase bookworm "$tmp/root" http://deb.debian.org/debian >/dev/null
    tar --numeric-owner -C "$tmp/root" -cf "$debian_tar.partial" .
    mv "$debian_tar.partial" "$debian_tar"
    rm -rf "$tmp"
fi
export OPERATOR_TEST_DEBIAN="$debian_tar"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --locked --all-targets -- -D warnings
echo "== tests"
cargo nextest run --locked --no-fail-fast
