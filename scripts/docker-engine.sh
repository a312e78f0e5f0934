#!/usr/bin/env bash
# A Docker engine of the test command's own (DESIGN §7): installs Debian's docker.io where it is
# missing (without starting the system's dockerd) and runs one dockerd with its own data root,
# bridge address and socket, no iptables, NAT or forwarding changes on the host. It is stopped by
# its pid: by `stop`, or by a watchdog when the owner process dies.
#
#   scripts/docker-engine.sh start [--owner PID]   # starts it (once) and prints DOCKER_HOST=...
#   scripts/docker-engine.sh stop                  # stops it and its watchdog
#   scripts/docker-engine.sh host                  # prints DOCKER_HOST=... if it runs
#
# Exit codes of start: 0 running, 3 cannot run here (not root, no apt-get, no dockerd).
set -euo pipefail

cache="${ISTHMUS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/isthmus}"
data_root="$cache/docker"
run_dir=/run/isthmus-docker
socket="$run_dir/docker.sock"
pidfile="$run_dir/dockerd.pid"
watchdog_pidfile="$run_dir/watchdog.pid"
log_file="$run_dir/dockerd.log"
docker_host="unix://$socket"

log() { printf '[docker-engine %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

running_pid() {
  local pid
  pid="$(cat "$pidfile" 2>/dev/null)" || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "dockerd.*$run_dir" || return 1
  echo "$pid"
}

# Debian's docker.io, installed without starting its service: a policy-rc.d that refuses starts
# exists only for the duration of the install, and only if there was none.
install_docker() {
  command -v dockerd >/dev/null && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    log "no dockerd, and not root with apt-get to install it"
    return 3
  fi
  log "installing Debian docker.io"
  local policy=/usr/sbin/policy-rc.d own_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && own_policy=1
  fi
  local rc=0
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    docker.io >/dev/null) || rc=$?
  [ "$own_policy" = 1 ] && rm -f "$policy"
  [ "$rc" = 0 ] || { log "apt-get install docker.io failed"; return 3; }
}

start() {
  local owner=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --owner) owner="$2"; shift 2 ;;
      *) log "unknown option $1"; return 2 ;;
    esac
  done
  mkdir -p "$run_dir" "$data_root"
  exec 9>"$run_dir/lock"
  flock 9
  if pid="$(running_pid)"; then
    log "dockerd already runs (pid $pid)"
  else
    install_docker || return $?
    log "starting dockerd (data root $data_root)"
    # setsid: the engine outlives a Ctrl-C of the test runner's process group; stop or the
    # watchdog ends it.
    setsid dockerd \
      --data-root "$data_root" \
      --exec-root "$run_dir/exec" \
      --pidfile "$pidfile" \
      --host "$docker_host" \
      --bip 172.29.255.1/24 \
      --default-address-pool base=172.29.0.0/17,size=24 \
      --iptables=false --ip-forward=false --ip-masq=false \
      --storage-driver overlay2 \
      --exec-opt native.cgroupdriver=cgroupfs \
      >"$log_file" 2>&1 </dev/null &
    local deadline=$((SECONDS + 60))
    until DOCKER_HOST="$docker_host" docker info >/dev/null 2>&1; do
      if [ $SECONDS -ge $deadline ]; then
        log "dockerd did not answer within 60 s; last log lines:"
        tail -n 20 "$log_file" >&2
        stop_engine
        return 1
      fi
      sleep 0.5
    done
    log "dockerd runs (pid $(running_pid))"
  fi
  if [ -n "$owner" ]; then start_watchdog "$owner"; fi
  echo "DOCKER_HOST=$docker_host"
}

# Stops the engine when OWNER dies (a killed test run leaves no dockerd behind).
start_watchdog() {
  local owner="$1" old
  old="$(cat "$watchdog_pidfile" 2>/dev/null || true)"
  [ -n "$old" ] && kill "$old" 2>/dev/null || true
  setsid bash -c '
    while kill -0 "$1" 2>/dev/null; do sleep 1; done
    exec bash "$2" stop
  ' isthmus-docker-watchdog "$owner" "$(realpath "${BASH_SOURCE[0]}")" >/dev/null 2>&1 </dev/null &
  echo $! >"$watchdog_pidfile"
}

stop_engine() {
  local pid
  if pid="$(running_pid)"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$pid" 2>/dev/null || true
    log "dockerd stopped"
  fi
  # Its containerd-shims are children of the engine's containerd; a SIGKILLed engine leaves them.
  pkill_tree_of "$run_dir/exec"
  rm -f "$pidfile"
}

# Kills leftover containerd processes (the engine's own and its shims) whose command line names
# our exec root.
pkill_tree_of() {
  local dir="$1" p comm
  for p in /proc/[0-9]*; do
    comm="$(cat "$p/comm" 2>/dev/null)" || continue
    [[ "$comm" == containerd* ]] || continue
    tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -q -- "$dir" && kill -KILL "${p#/proc/}" 2>/dev/null || true
  done
}

stop() {
  local wd
  wd="$(cat "$watchdog_pidfile" 2>/dev/null || true)"
  # Not the watchdog itself when it is the one calling stop.
  if [ -n "$wd" ] && [ "$wd" != "$PPID" ] && [ "$wd" != "$$" ]; then kill "$wd" 2>/dev/null || true; fi
  rm -f "$watchdog_pidfile"
  stop_engine
}

case "${1:-}" in
  start) shift; start "$@" ;;
  stop) stop ;;
  host) running_pid >/dev/null && echo "DOCKER_HOST=$docker_host" ;;
  *) echo "usage: $0 start [--owner PID] | stop | host" >&2; exit 2 ;;
esac
