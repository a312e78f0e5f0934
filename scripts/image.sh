#!/usr/bin/env bash
# Builds the Isthmus container image (deploy/image/Dockerfile) from a context staged outside the
# repository (in the cache, so no linter, formatter or test runner sees a second copy of the
# code): app/ holds the component, CLI and CRD files (deploy/image/.dockerignore keeps tests out)
# and node_modules/ a copy of the project's node_modules pruned to production dependencies. The
# real node_modules is never touched; the pruned copy is rebuilt only when package-lock.json changes.
#
#   scripts/image.sh build [--base IMAGE] [--tag TAG]   # prints the tag (default isthmus:dev)
#
# Without --base the Dockerfile's default (the public Node 24 slim image) is used; where no
# registry is reachable, pass the local one scripts/base-image.sh builds.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${ISTHMUS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/isthmus}"
# One staging area per checkout (worktrees build side by side).
stage="$cache/image-context/$(printf '%s' "$repo" | sha256sum | cut -c1-12)"
context="$stage/context"
log() { printf '[image %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# What the image runs: the components, the CLI, what they load at run time, the entry point.
app_paths=(package.json common hub spoke-agent east-west-gateway cli crds deploy/image)

stage_dependencies() {
  local lock_hash
  lock_hash="$(sha256sum "$repo/package-lock.json" | cut -d' ' -f1)"
  if [ "$(cat "$stage/node_modules.lock-sha256" 2>/dev/null)" = "$lock_hash" ] && [ -d "$context/node_modules" ]; then
    return 0
  fi
  log "staging production node_modules"
  local deps="$stage/deps"
  rm -rf "$deps" "$context/node_modules" "$stage/node_modules.lock-sha256"
  mkdir -p "$deps/node_modules" "$context"
  cp "$repo/package.json" "$repo/package-lock.json" "$deps/"
  # `/.` follows a node_modules that is a symlink (a git worktree's) and copies its contents.
  cp -a "$repo/node_modules/." "$deps/node_modules/"
  (cd "$deps" && npm prune --omit=dev --offline --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
  mv "$deps/node_modules" "$context/node_modules"
  rm -rf "$deps"
  echo "$lock_hash" >"$stage/node_modules.lock-sha256"
}

stage_app() {
  rm -rf "$context/app"
  mkdir -p "$context/app"
  (cd "$repo" && cp -a --parents "${app_paths[@]}" "$context/app/")
  cp "$repo/deploy/image/.dockerignore" "$context/.dockerignore"
}

build() {
  local base="" tag="isthmus:dev"
  while [ $# -gt 0 ]; do
    case "$1" in
      --base) base="$2"; shift 2 ;;
      --tag) tag="$2"; shift 2 ;;
      *) log "unknown option $1"; return 2 ;;
    esac
  done
  mkdir -p "$stage"
  exec 9>"$stage/lock"
  flock 9
  stage_dependencies
  stage_app
  local args=(build --quiet --tag "$tag" --file "$repo/deploy/image/Dockerfile")
  [ -n "$base" ] && args+=(--build-arg "BASE=$base")
  log "docker build $tag${base:+ (base $base)}"
  docker "${args[@]}" "$context" >/dev/null
  echo "$tag"
}

case "${1:-}" in
  build) shift; build "$@" ;;
  *) echo "usage: $0 build [--base IMAGE] [--tag TAG]" >&2; exit 2 ;;
esac
