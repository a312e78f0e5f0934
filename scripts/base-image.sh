#!/usr/bin/env bash
# A local stand-in for the public Node 24 slim image, where no container registry is reachable
# (DESIGN §7): Debian bookworm minbase through debootstrap plus the Node 24 binary the project
# already brings (the `node` devDependency), imported as isthmus-base:node-<version>. Built once:
# an existing image is reused. Prints the image reference.
#
#   scripts/base-image.sh        # needs root (debootstrap) and a Docker engine (DOCKER_HOST)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${ISTHMUS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/isthmus}"
log() { printf '[base-image %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

node_bin="$(realpath "$repo/node_modules/node/bin/node")"
node_version="$("$node_bin" --version)" # v24.x.y
image="isthmus-base:node-${node_version#v}"

mkdir -p "$cache/locks" "$cache/build"
exec 9>"$cache/locks/base-image.lock"
flock 9
if docker image inspect "$image" >/dev/null 2>&1; then
  echo "$image"
  exit 0
fi

if ! command -v debootstrap >/dev/null; then
  log "installing debootstrap"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null)
fi

# The mirror apt already uses (deb822 or one-line sources), so a pinned snapshot stays pinned.
mirror="$(grep -hoE '^URIs: *\S+' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -n 1 || true)"
[ -n "$mirror" ] || mirror="$(grep -hoE '^deb +\S+' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | grep -v security | head -n 1 || true)"
mirror="${mirror:-http://deb.debian.org/debian}"

rootfs="$(mktemp -d "$cache/build/base-rootfs.XXXXXX")"
trap 'rm -rf "$rootfs"' EXIT
log "debootstrap --variant=minbase bookworm from $mirror"
debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || {
  tail -n 20 "$rootfs.log" >&2
  exit 1
}
rm -f "$rootfs.log"
# What a run-time image does not need: package caches and lists, documentation.
rm -rf "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* \
  "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/* "$rootfs"/usr/share/info/*
install -m 0755 "$node_bin" "$rootfs/usr/local/bin/node"

log "importing $image"
tar -C "$rootfs" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change "ENV NODE_VERSION=${node_version#v}" \
  --change 'CMD ["node"]' \
  - "$image" >/dev/null
echo "$image"
