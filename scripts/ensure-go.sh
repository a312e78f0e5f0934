#!/usr/bin/env bash
# Prints a directory with a Go toolchain new enough (≥ 1.25) to build the pinned binaries: the
# one on PATH if it will do, else the toolchain module from the Go module proxy, unpacked once
# into the cache (the same zip `GOTOOLCHAIN` downloads).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/versions.env"
cache="${ISTHMUS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/isthmus}"

recent_enough() {
  local v
  v="$("$1" env GOVERSION 2>/dev/null)" || return 1
  v="${v#go}"
  [[ "$(printf '%s\n%s\n' "1.25" "${v%%[-+ ]*}" | sort -V | head -n1)" == "1.25" ]]
}

if command -v go >/dev/null && GOTOOLCHAIN=local recent_enough "$(command -v go)"; then
  dirname "$(command -v go)"
  exit 0
fi

dir="$cache/go-$GO_TOOLCHAIN_VERSION"
if [[ ! -x "$dir/bin/go" ]]; then
  mkdir -p "$cache"
  exec {lock}>"$cache/go.lock"
  flock "$lock"
  if [[ ! -x "$dir/bin/go" ]]; then
    url="${GOPROXY_URL:-https://proxy.golang.org}/golang.org/toolchain/@v/v0.0.1-$GO_TOOLCHAIN_VERSION.linux-amd64.zip"
    echo "[ensure-go] fetching $GO_TOOLCHAIN_VERSION from the Go module proxy" >&2
    tmp="$(mktemp -d "$cache/go-download.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    curl -fsSL -o "$tmp/go.zip" "$url"
    if command -v unzip >/dev/null; then (cd "$tmp" && unzip -q go.zip); else python3 -m zipfile -e "$tmp/go.zip" "$tmp"; fi
    chmod +x "$tmp"/golang.org/toolchain@*/bin/* "$tmp"/golang.org/toolchain@*/pkg/tool/*/* 2>/dev/null || true
    rm -rf "$dir"
    mv "$tmp"/golang.org/toolchain@* "$dir"
  fi
fi
echo "$dir/bin"
