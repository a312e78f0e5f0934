#!/usr/bin/env bash
# The README's test command (npm test): pinned binaries, typecheck, lint, then every vitest
# suite against real apiservers, etcd and nats-server. Ends with a plain "N passed, N failed".
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

results=.vitest-results.json
rm -f "$results"
failed_steps=0

step() {
  local name="$1"; shift
  echo "== $name"
  if ! "$@"; then echo "== $name FAILED"; failed_steps=$((failed_steps + 1)); fi
}

# The data-plane suites put each simulated cluster in a network namespace and blackhole with
# nftables (DESIGN §7): bring nft where it is missing and we may install (they skip otherwise).
ensure_network_tools() {
  command -v nft >/dev/null && command -v ip >/dev/null && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && apt-get install -y -qq nftables iproute2 >/dev/null) || echo "could not install nftables; the namespace suites will say so and skip"
  else
    echo "nft or ip missing and not root: the namespace suites will say so and skip"
  fi
  return 0
}
step "network tools" ensure_network_tools

# The container e2e runs the federation as containers (DESIGN §7): an engine that already answers
# is used as it is; otherwise, as root, the test command starts its own (Debian's docker.io, own
# data root and socket), stopped again when this script ends. Without one, that suite skips.
ensure_docker_engine() {
  if docker info >/dev/null 2>&1; then echo "using the Docker engine at ${DOCKER_HOST:-the default socket}"; return 0; fi
  if [ "$(id -u)" != 0 ]; then echo "no Docker engine and not root: the container e2e will say so and skip"; return 0; fi
  local host
  if host="$(bash scripts/docker-engine.sh start --owner $$)"; then
    export "${host?}"
    started_engine=1
    trap 'bash scripts/docker-engine.sh stop' EXIT
  else
    echo "could not start a Docker engine; the container e2e will say so and skip"
  fi
  return 0
}
step "docker engine" ensure_docker_engine
# testcontainers' reaper container needs a registry; the test bed removes what it starts itself.
export TESTCONTAINERS_RYUK_DISABLED=true TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1
step "pinned binaries" bash scripts/ensure-binaries.sh
step "typecheck" tsc -p tsconfig.json
step "lint" eslint .
step "format" prettier --check --log-level=warn "**/*.{ts,js}"
echo "== tests"
vitest run --reporter=default --reporter=json --outputFile.json="$results" "$@"
vitest_rc=$?

# Stopped here rather than only on exit, so the summary below stays the last line of output.
if [ "${started_engine:-0}" = 1 ]; then
  bash scripts/docker-engine.sh stop
  trap - EXIT
fi

node -e '
  const fs = require("node:fs");
  const [file, steps, rc] = process.argv.slice(1);
  let passed = 0, failed = 0, skipped = 0;
  if (fs.existsSync(file)) {
    const r = JSON.parse(fs.readFileSync(file, "utf8"));
    passed = r.numPassedTests; failed = r.numFailedTests;
    skipped = r.numPendingTests + r.numTodoTests;
    // A file that failed outside its tests (it did not load, or a beforeAll/afterAll hook threw and its
    // tests were skipped) has no failed test in the counts: count the file as a failure.
    failed += r.testResults.filter(
      (f) => f.status === "failed" && !f.assertionResults.some((t) => t.status === "failed"),
    ).length;
  }
  // Whatever vitest saw and the counts above did not (e.g. an unhandled error): never a green summary.
  if (Number(rc) !== 0 && failed === 0) failed += 1;
  failed += Number(steps);
  console.log(`${passed} passed, ${failed} failed` + (skipped ? `, ${skipped} skipped` : ""));
  process.exit(failed > 0 || passed === 0 ? 1 : 0);
' "$results" "$failed_steps" "$vitest_rc"
