#!/usr/bin/env bash
# glusterfs-testbed.sh: N simulated hosts sharing one GlusterFS volume, on one Linux machine (needs root, /dev/fuse).
#
# What `up` makes (every network address lives in a namespace made here; the root namespace gets none):
#   server  netns "tbsrv": lo, bridge tbbr0 = $TB_NET.1/24, glusterd and the brick process of volume $TB_VOL
#           (one brick at $TB_DIR/brick)
#   host hK netns "tb-hK": eth0 = $TB_NET.(10+K)/24, a veth whose other end (tbv-hK) is a port of tbbr0 in tbsrv;
#           plus a holder process (PID 1 of the host's own PID namespace) with its own mount and UTS namespaces
#           (hostname hK) in which the volume is FUSE-mounted at $TB_MOUNT. The mount is seen by that host only;
#           every host mounts the same volume at the same path. The root filesystem is shared by all hosts.
#
# usage: glusterfs-testbed.sh up [N]        make/complete hosts h1..hN (default 2); safe to run again
#        glusterfs-testbed.sh down          remove everything `up` made (mounts, processes, namespaces, brick); safe again
#        glusterfs-testbed.sh run-on H CMD  run CMD on host H (its mount, UTS, network and PID namespaces), in the
#                                           current directory if it exists there; no CMD: an interactive shell
#        glusterfs-testbed.sh cut H | heal H   set H's link down / up (a network partition; GlusterFS frees the locks
#                                           of a cut-off client after network.ping-timeout, 42 s by default)
#        glusterfs-testbed.sh status
#        glusterfs-testbed.sh install       install the packages if missing (what `up` does first); exit 3 if apt-get fails
#        glusterfs-testbed.sh volume-set OPTION VALUE | volume-reset OPTION
#                                           change an option of the volume (e.g. performance.stat-prefetch off); clients
#                                           take it within about a second
#        glusterfs-testbed.sh volume-options default | recommended
#                                           the volume's cache options as a set: GlusterFS's defaults
#                                           (stat-prefetch and open-behind on), or those docs/multi-host.md
#                                           recommends (both off); prints the set it applied
#
# run-on execs nsenter, so its pid is the nsenter process; CMD runs in a child of it inside H's PID namespace.
# To signal something started with run-on, either signal it from inside (`run-on H kill PID`, PID as seen there,
# e.g. echoed by `sh -c 'echo $$; exec CMD'`), or start run-on in a new session and signal that process group.
#
# Settings (environment): TB_NET (10.77.0), TB_VOL (tbvol), TB_MOUNT (/mnt/vault-shared),
#   TB_DIR (/var/lib/glusterfs-testbed: brick, pid files, logs), TB_PING_TIMEOUT (volume's network.ping-timeout,
#   seconds; GlusterFS default 42), TB_KEEP_LOGS=1 (down keeps $TB_DIR/log), TB_CLIENT_ARGS (more arguments
#   of the hosts' glusterfs clients, split on blanks, e.g. "--attribute-timeout=0 --entry-timeout=0"; used by
#   hosts that `up` starts, not by those already up), TB_VOLUME_OPTIONS (default or recommended: the set of
#   volume-options that `up` applies; unset: the volume keeps what it has, GlusterFS's defaults when new).
# Packages: glusterfs-server and glusterfs-client are installed with apt-get when glusterd or glusterfs is missing.
# Limits: one brick, no replication; all hosts share the kernel, clock and root filesystem; glusterd keeps its
#   state in /var/lib/glusterd (one per machine), so no other glusterd may run on the machine meanwhile.
set -euo pipefail

NET=${TB_NET:-10.77.0}
VOL=${TB_VOL:-tbvol}
MNT=${TB_MOUNT:-/mnt/vault-shared}
DIR=${TB_DIR:-/var/lib/glusterfs-testbed}
RUN=$DIR/run
LOG=$DIR/log
BRICK=$DIR/brick
SRVNS=tbsrv
BR=tbbr0
SRV=$NET.1

die() { echo "glusterfs-testbed: $*" >&2; exit 1; }
say() { echo "glusterfs-testbed: $*" >&2; }
host_ns() { echo "tb-$1"; }
host_veth() { echo "tbv-$1"; }
host_num() { [[ $1 =~ ^h([1-9][0-9]*)$ ]] && echo "${BASH_REMATCH[1]}"; }
gl() { ip netns exec "$SRVNS" gluster --mode=script "$@"; }
ns_exists() { [ -e "/run/netns/$1" ]; }

# pid from a pid file if that process is alive and in network namespace $2
live_pid() {
  local f=$1 ns=$2 p
  [ -f "$f" ] || return 1
  p=$(cat "$f" 2>/dev/null) || return 1
  [[ $p =~ ^[0-9]+$ ]] && alive "$p" || return 1
  [ "$(ip netns identify "$p" 2>/dev/null)" = "$ns" ] || return 1
  echo "$p"
}

alive() { [ -e "/proc/$1" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }

# signal a pid we recorded (checked by live_pid), wait up to $3 s for it to end, then SIGKILL
stop_pid() {
  local p=$1 sig=${2:-TERM} wait=${3:-5} i
  kill -"$sig" "$p" 2>/dev/null || return 0
  for ((i = 0; i < wait * 10; i++)); do alive "$p" || return 0; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null || true
}

holder_pid() { live_pid "$RUN/$1.pid" "$(host_ns "$1")"; }

need_packages() {
  if ! command -v glusterd >/dev/null || ! command -v glusterfs >/dev/null; then
    say "installing glusterfs-server glusterfs-client"
    apt-get update -qq || { say "apt-get update failed"; exit 3; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      glusterfs-server glusterfs-client iproute2 util-linux >/dev/null ||
      { say "apt-get install glusterfs-server glusterfs-client failed"; exit 3; }
    # a packaged service would share /var/lib/glusterd with ours: keep it off
    if command -v systemctl >/dev/null && systemctl is-active -q glusterd 2>/dev/null; then
      systemctl disable --now glusterd >/dev/null 2>&1 || true
    fi
  fi
  for c in ip unshare nsenter; do command -v $c >/dev/null || die "missing command $c"; done
  [ -e /dev/fuse ] || die "/dev/fuse is missing"
}

server_up() {
  if ! ns_exists "$SRVNS"; then
    ip netns add "$SRVNS"
  fi
  ip -n "$SRVNS" link set lo up
  if ! ip -n "$SRVNS" link show "$BR" >/dev/null 2>&1; then
    ip -n "$SRVNS" link add "$BR" type bridge
    ip -n "$SRVNS" addr add "$SRV/24" dev "$BR"
  fi
  ip -n "$SRVNS" link set "$BR" up
  if ! live_pid "$RUN/glusterd.pid" "$SRVNS" >/dev/null; then
    local sys
    sys=$(cat /var/run/glusterd.pid 2>/dev/null || true)
    [[ $sys =~ ^[0-9]+$ ]] && kill -0 "$sys" 2>/dev/null && die "a glusterd (pid $sys) already runs on this machine; stop it first"
    rm -f "$RUN/glusterd.pid"
    ip netns exec "$SRVNS" glusterd -p "$RUN/glusterd.pid" --log-file="$LOG/glusterd.log"
  fi
  local i
  for ((i = 0; i < 150; i++)); do gl volume list >/dev/null 2>&1 && break; sleep 0.2; done
  gl volume list >/dev/null 2>&1 || die "glusterd does not answer (see $LOG/glusterd.log)"
  if ! gl volume info "$VOL" >/dev/null 2>&1; then
    mkdir -p "$BRICK"
    # 'force': a brick on the root filesystem is refused otherwise
    gl volume create "$VOL" "$SRV:$BRICK" force >/dev/null
  fi
  if [ -n "${TB_PING_TIMEOUT:-}" ]; then gl volume set "$VOL" network.ping-timeout "$TB_PING_TIMEOUT" >/dev/null; fi
  if [ -n "${TB_VOLUME_OPTIONS:-}" ]; then volume_options "$TB_VOLUME_OPTIONS" >/dev/null; fi
  gl volume start "$VOL" force >/dev/null
}

# The cache options docs/multi-host.md recommends for GlusterFS, as a set: "recommended" sets them off,
# "default" resets them to GlusterFS's own defaults (on).
CACHE_OPTIONS="performance.stat-prefetch performance.open-behind"
volume_options() {
  local o
  case "$1" in
    recommended) for o in $CACHE_OPTIONS; do gl volume set "$VOL" "$o" off >/dev/null; done ;;
    default) for o in $CACHE_OPTIONS; do gl volume reset "$VOL" "$o" >/dev/null; done ;;
    *) die "volume options: default or recommended, not '$1'" ;;
  esac
  for o in $CACHE_OPTIONS; do echo "$o $(gl volume get "$VOL" "$o" | awk -v o="$o" '$1 == o {print $2}')"; done
}

host_up() {
  local h=$1 k ns veth up_pid hp i
  k=$(host_num "$h") || die "bad host name $h"
  ns=$(host_ns "$h"); veth=$(host_veth "$h")
  if ! ns_exists "$ns"; then ip netns add "$ns"; fi
  ip -n "$ns" link set lo up
  if ! ip -n "$SRVNS" link show "$veth" >/dev/null 2>&1; then
    ip -n "$ns" link del eth0 2>/dev/null || true
    # both ends are made inside namespaces: nothing appears in the root namespace
    ip -n "$SRVNS" link add "$veth" type veth peer name eth0 netns "$ns"
    ip -n "$SRVNS" link set "$veth" master "$BR"
    ip -n "$ns" addr add "$NET.$((10 + k))/24" dev eth0
  fi
  ip -n "$SRVNS" link set "$veth" up
  ip -n "$ns" link set eth0 up
  if holder_pid "$h" >/dev/null; then return 0; fi
  rm -f "$RUN/$h.pid" "$RUN/$h.unshare.pid"
  # The holder is PID 1 of the host's PID namespace: it sets the hostname, mounts the volume and waits.
  # When it dies (down kills it; if the unshare process dies, --kill-child passes SIGKILL on) the kernel kills every process
  # of the host, and its mount namespace (with the FUSE mount) goes away with them.
  setsid ip netns exec "$ns" unshare --mount --uts --pid --fork --kill-child --mount-proc \
    bash -c 'cd /; echo "$1" > /proc/sys/kernel/hostname
             glusterfs --volfile-server="$2" --volfile-id="$3" --log-file="$4" $6 "$5" || exit 1
             while :; do sleep 3600 & wait $!; done' holder "$h" "$SRV" "$VOL" "$LOG/client-$h.log" "$MNT" \
    "${TB_CLIENT_ARGS:-}" \
    </dev/null >>"$LOG/holder-$h.log" 2>&1 &
  up_pid=$!   # setsid does not fork here (a background job is no group leader): this is the unshare process
  echo "$up_pid" > "$RUN/$h.unshare.pid"
  for ((i = 0; i < 50; i++)); do
    hp=$(cat "/proc/$up_pid/task/$up_pid/children" 2>/dev/null | awk '{print $1}')
    [ -n "$hp" ] && break
    kill -0 "$up_pid" 2>/dev/null || die "host $h did not start (see $LOG/holder-$h.log)"
    sleep 0.1
  done
  [ -n "$hp" ] || die "host $h: no holder process"
  echo "$hp" > "$RUN/$h.pid"
}

host_wait() {
  local h=$1 hp i
  for ((i = 0; i < 300; i++)); do
    hp=$(holder_pid "$h") || die "host $h stopped (see $LOG/holder-$h.log, $LOG/client-$h.log)"
    nsenter -t "$hp" -m stat -f -c %T "$MNT" 2>/dev/null | grep -q fuse && return 0
    sleep 0.1
  done
  die "host $h: $MNT not mounted after 30 s (see $LOG/client-$h.log)"
}

hosts_known() {  # hosts with a namespace or a pid file, sorted by number
  { ls /run/netns 2>/dev/null | sed -n 's/^tb-\(h[0-9]*\)$/\1/p'
    ls "$RUN" 2>/dev/null | sed -n 's/^\(h[0-9]*\)\.pid$/\1/p'; } | sort -u -t h -k2 -n
}

cmd_up() {
  local n=${1:-2} h k
  [[ $n =~ ^[1-9][0-9]*$ ]] && [ "$n" -le 200 ] || die "up: N must be 1..200"
  need_packages
  mkdir -p "$RUN" "$LOG" "$MNT"
  server_up
  for ((k = 1; k <= n; k++)); do host_up "h$k"; done
  for ((k = 1; k <= n; k++)); do host_wait "h$k"; done
  # the volume is writable on h1 and what h1 wrote is read on every host
  local probe=".testbed-probe"
  nsenter -t "$(holder_pid h1)" -m -u -n -p sh -c "hostname > '$MNT/$probe'"
  for ((k = 1; k <= n; k++)); do
    [ "$(nsenter -t "$(holder_pid "h$k")" -m -u -n -p cat "$MNT/$probe")" = h1 ] || die "h$k does not see h1's write"
  done
  nsenter -t "$(holder_pid h1)" -m -u -n -p rm -f "$MNT/$probe"
  echo "up: $n hosts (h1..h$n) share volume $VOL at $MNT; run commands with: $0 run-on hK CMD"
}

cmd_down() {
  local h hp upid ns p f
  for h in $(hosts_known); do
    ns=$(host_ns "$h")
    if hp=$(holder_pid "$h"); then
      timeout 15 nsenter -t "$hp" -m umount "$MNT" 2>/dev/null ||
        timeout 5 nsenter -t "$hp" -m umount -l "$MNT" 2>/dev/null || true
    fi
    # SIGKILL to the holder (PID 1 there) ends every process of the host; unshare then exits by itself
    if hp=$(holder_pid "$h"); then stop_pid "$hp" KILL 5; fi
    if upid=$(live_pid "$RUN/$h.unshare.pid" "$ns"); then stop_pid "$upid" KILL 5; fi
    rm -f "$RUN/$h.pid" "$RUN/$h.unshare.pid"
    ip -n "$SRVNS" link del "$(host_veth "$h")" 2>/dev/null || true
    if ns_exists "$ns"; then ip netns del "$ns"; fi
  done
  if p=$(live_pid "$RUN/glusterd.pid" "$SRVNS"); then
    gl volume stop "$VOL" force >/dev/null 2>&1 || true   # stops the brick process
    gl volume delete "$VOL" >/dev/null 2>&1 || true
    stop_pid "$p" TERM 10
  fi
  rm -f "$RUN/glusterd.pid"
  # a brick left by a glusterd that died: its pid file names it
  for f in /var/run/gluster/vols/"$VOL"/*.pid; do
    [ -f "$f" ] || continue
    p=$(cat "$f" 2>/dev/null || true)
    if [[ $p =~ ^[0-9]+$ ]] && tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | grep -q -- "--volfile-id $VOL\."; then
      stop_pid "$p" TERM 5
    fi
    rm -f "$f"
  done
  # glusterd is stopped here; what is left of our volume's state would block the next create
  rm -rf "/var/lib/glusterd/vols/$VOL"
  if ns_exists "$SRVNS"; then ip netns del "$SRVNS"; fi
  rm -rf "$BRICK" "$RUN"
  if [ "${TB_KEEP_LOGS:-0}" = 1 ]; then :; else rm -rf "$LOG"; fi
  rmdir "$DIR" 2>/dev/null || true
  if [ -d "$MNT" ] && ! mountpoint -q "$MNT"; then rmdir "$MNT" 2>/dev/null || true; fi
  echo "down: nothing of the test bed is left"
}

cmd_run_on() {
  [ $# -ge 1 ] || die "usage: run-on HOST [CMD...]"
  local h=$1 hp; shift
  hp=$(holder_pid "$h") || die "host $h is not up"
  [ $# -gt 0 ] || set -- "${SHELL:-/bin/bash}"
  exec nsenter -t "$hp" -m -u -n -p -- /bin/sh -c 'cd "$0" 2>/dev/null || cd /; exec "$@"' "$PWD" "$@"
}

cmd_link() {  # cut|heal HOST
  local h=${2:-} state=down
  [ -n "$h" ] && host_num "$h" >/dev/null || die "usage: $1 HOST"
  [ "$1" = heal ] && state=up
  ip -n "$SRVNS" link set "$(host_veth "$h")" "$state" || die "no link for host $h"
  echo "$1: $h link $state"
}

mount_state() {
  if ! awk -v m="$MNT" '$5 == m {f = 1} END {exit !f}' "/proc/$1/mountinfo" 2>/dev/null; then echo "NOT mounted"
  elif timeout 3 nsenter -t "$1" -m stat -f "$MNT" >/dev/null 2>&1; then echo mounted
  else echo "mounted, not answering"; fi
}

cmd_status() {
  local h hp p link
  if p=$(live_pid "$RUN/glusterd.pid" "$SRVNS"); then
    echo "server: netns $SRVNS, $SRV, glusterd pid $p, volume $VOL $(gl volume info "$VOL" 2>/dev/null | sed -n 's/^Status: //p')"
  else
    echo "server: down"
  fi
  for h in $(hosts_known); do
    if hp=$(holder_pid "$h"); then
      link=$(ip -n "$SRVNS" -br link show "$(host_veth "$h")" 2>/dev/null | awk '{print $2}')
      echo "$h: holder pid $hp, hostname $(nsenter -t "$hp" -u hostname), $(ip -n "$(host_ns "$h")" -br -4 addr show eth0 | awk '{print $3}'), link ${link:-none}, $MNT $(mount_state "$hp")"
    else
      echo "$h: down (namespace or pid file left; run down)"
    fi
  done
}

[ "$(id -u)" = 0 ] || die "needs root"
case "${1:-}" in
  up) shift; cmd_up "$@" ;;
  down) cmd_down ;;
  run-on) shift; cmd_run_on "$@" ;;
  cut | heal) cmd_link "$@" ;;
  status) cmd_status ;;
  install) need_packages ;;
  volume-set) [ $# -eq 3 ] || die "usage: volume-set OPTION VALUE"; gl volume set "$VOL" "$2" "$3" >/dev/null ;;
  volume-reset) [ $# -eq 2 ] || die "usage: volume-reset OPTION"; gl volume reset "$VOL" "$2" >/dev/null ;;
  volume-options) [ $# -eq 2 ] || die "usage: volume-options default|recommended"; volume_options "$2" ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
