#!/usr/bin/env bash
# Finds the pinned kube-apiserver, etcd, nats-server, coredns and helm on PATH or in the cache, and
# otherwise builds them with Go from the module proxy into the cache (outside the repo).
# Idempotent and safe to run concurrently: each binary is built under its own flock and moved
# into place atomically. On success prints one line per binary: NAME=/absolute/path.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

cache="${ISTHMUS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/isthmus}"
mkdir -p "$cache/bin" "$cache/locks" "$cache/build"

log() { printf '[ensure-binaries %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# minor_of v1.36.3 -> 1.36
minor_of() { local v="${1#v}"; echo "${v%.*}"; }

# found_on_path NAME VERSION_REGEX: prints the path if NAME on PATH reports a matching version.
found_on_path() {
  local name="$1" want="$2" path out version_args=(--version)
  # helm has a `version` subcommand and no --version flag.
  [[ "$name" == helm ]] && version_args=(version)
  path="$(command -v "$name" 2>/dev/null)" || return 1
  out="$("$path" "${version_args[@]}" 2>&1 | head -n 3)" || return 1
  grep -Eq "$want" <<<"$out" || return 1
  echo "$path"
}

# build_in_wrapper MODULE VERSION PACKAGE OUTPUT [LDFLAGS]: builds PACKAGE from MODULE@VERSION
# inside a throwaway wrapper module, so replace directives of MODULE do not stop the build.
build_in_wrapper() {
  local module="$1" version="$2" pkg="$3" out="$4" ldflags="${5:-}"
  local dir
  dir="$(mktemp -d "$cache/build/wrap.XXXXXX")"
  # shellcheck disable=SC2064
  trap "rm -rf '$dir'" RETURN
  (
    cd "$dir"
    go mod init isthmus.local/binary-wrapper >/dev/null 2>&1
    if [[ "$module" == "k8s.io/kubernetes" ]]; then
      # k8s.io/kubernetes points every k8s.io/* staging module at ./staging; a wrapper has to
      # replace each with its published v0.<minor>.<patch> tag. The list comes from its go.mod.
      local gomod staging_tag
      gomod="$(go mod download -json "$module@$version" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
      staging_tag="v0.${version#v1.}"
      grep -Eo '^\s*k8s\.io/[a-z0-9-]+ => \./staging/src/k8s\.io/[a-z0-9-]+' "$gomod" \
        | awk '{print $1}' | sort -u | while read -r m; do
          go mod edit -replace "$m=$m@$staging_tag"
        done
    fi
    go mod edit -require "$module@$version"
    log "resolving modules for $pkg@$version"
    GOFLAGS=-mod=mod go get "$pkg@$version" >&2
    log "compiling $pkg (a cold kube-apiserver build takes 10-20 min on 2 cores)"
    CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w $ldflags" -o "$out" "$pkg"
  )
}

# ensure NAME VERSION VERSION_REGEX MODULE PACKAGE [LDFLAGS]
ensure() {
  local name="$1" version="$2" want="$3" module="$4" pkg="$5" ldflags="${6:-}"
  local target="$cache/bin/$name-$version" p
  if [[ "${ISTHMUS_IGNORE_PATH:-}" != "1" ]] && p="$(found_on_path "$name" "$want")"; then
    echo "$name=$p"; return
  fi
  if [[ ! -x "$target" ]]; then
    exec {lock}>"$cache/locks/$name-$version.lock"
    if ! flock -n "$lock"; then
      log "$name $version is being built by another process; waiting"
      flock "$lock"
    fi
    if [[ ! -x "$target" ]]; then
      local started=$SECONDS tmp="$target.tmp.$$"
      log "building $name $version with $(go version | awk '{print $3}')"
      build_in_wrapper "$module" "$version" "$pkg" "$tmp" "$ldflags"
      mv -f "$tmp" "$target"
      log "built $name $version in $((SECONDS - started)) s -> $target"
    fi
    exec {lock}>&-
  fi
  echo "$name=$target"
}

# A Go new enough for k8s.io/kubernetes: the one on PATH, or one from the Go module proxy.
PATH="$(bash "$here/ensure-go.sh"):$PATH"
export GOTOOLCHAIN=local

# The binaries build side by side: on 2 cores compiling is the bottleneck, but one build's module
# downloads overlap another's compile, which takes minutes off a cold run. Each prints its line
# into its own file; they are printed in this order once all are done, and any failure fails.
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
pids=()
in_background() { local n="$1"; shift; "$@" >"$out/$n" & pids+=("$!"); }

in_background 1 ensure nats-server "$NATS_SERVER_VERSION" "v$(minor_of "$NATS_SERVER_VERSION")\." \
  github.com/nats-io/nats-server/v2 github.com/nats-io/nats-server/v2
in_background 2 ensure coredns "$COREDNS_VERSION" "CoreDNS-$(minor_of "$COREDNS_VERSION")\." \
  github.com/coredns/coredns github.com/coredns/coredns
in_background 3 ensure etcd "$ETCD_VERSION" "Version: $(minor_of "$ETCD_VERSION")\." \
  go.etcd.io/etcd/server/v3 go.etcd.io/etcd/server/v3
kube_minor="$(minor_of "$KUBE_VERSION")"
in_background 4 ensure kube-apiserver "$KUBE_VERSION" "v${kube_minor//./\\.}\." \
  k8s.io/kubernetes k8s.io/kubernetes/cmd/kube-apiserver \
  "-X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${kube_minor#*.} -X k8s.io/component-base/version.gitTreeState=clean"
# helm's version lives in internal/version; without -X it reports only "v4.3".
helm_minor="$(minor_of "$HELM_VERSION")"
in_background 5 ensure helm "$HELM_VERSION" "Version:\"v${helm_minor//./\\.}\." \
  helm.sh/helm/v4 helm.sh/helm/v4/cmd/helm \
  "-X helm.sh/helm/v4/internal/version.version=$HELM_VERSION -X helm.sh/helm/v4/internal/version.gitTreeState=clean"

failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
cat "$out"/1 "$out"/2 "$out"/3 "$out"/4 "$out"/5
exit "$failed"
