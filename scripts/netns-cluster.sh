#!/usr/bin/env bash
# Emulated cluster nodes on one machine: N network namespaces joined by veth pairs to a bridge,
# each link shaped with tc, so that Open MPI runs between "nodes" over TCP with no shared memory.
#
#   scripts/netns-cluster.sh up N [--rate 10gbit] [--delay 50us] [--slots 4]
#   scripts/netns-cluster.sh mpirun -n 2 --map-by node PROGRAM ARGS...   # mpirun across the nodes
#   scripts/netns-cluster.sh status
#   scripts/netns-cluster.sh down
#   scripts/netns-cluster.sh check    # exit 0 when namespaces can be made here, else 77 and why
#
# Node i is the namespace dtrain0-n<i> with address 198.18.0.<i>/24 on its eth0 (198.18.0.0/15 is
# the range RFC 2544 reserves for benchmarks); the bridge dtbr0 in the calling namespace has
# 198.18.0.254, so mpirun (which runs here) reaches its daemons. No route, gateway or forwarding is
# added: nothing can be sent to any other address. --rate shapes each node's egress and ingress
# with tbf (both ends of its veth pair); --delay needs the kernel's netem and is skipped with a
# note where it is missing. `mpirun` runs Open MPI's mpirun with this script as its rsh agent
# (which execs each daemon inside its node's namespace, `ip netns exec`, with the namespace's name
# as its host name), the hostfile of the
# nodes (--slots ranks each), the TCP transport only and both transports bound to 198.18.0.0/24.
# Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN); `up` replaces a cluster that is already up.
# DTRAIN_NETNS_ID=K (0..199, default 0) runs a separate cluster: namespaces dtrain<K>-n<i>, bridge
# dtbr<K>, addresses 198.18.K.<i> (the tests use their own K so they never touch yours).
set -euo pipefail
id=${DTRAIN_NETNS_ID:-0}
[[ $id =~ ^[0-9]+$ ]] && [ "$((10#$id))" -le 199 ] || { echo "netns-cluster: DTRAIN_NETNS_ID must be 0..199, got '$id'" >&2; exit 1; }
id=$((10#$id))  # "010" is 10, not octal 8 as iproute2 would read it
state=/run/dtrain-netns$id
prefix=dtrain$id-n
bridge=dtbr$id
net=198.18.$id
self=$(readlink -f "${BASH_SOURCE[0]}")

die() {
  echo "netns-cluster: $*" >&2
  exit 1
}

# Exit 77 (ctest's skip code) with the reason when this machine cannot make namespaces.
check() {
  [ "$(id -u)" -eq 0 ] || { echo "netns-cluster: needs root to create network namespaces (running as uid $(id -u))" >&2; exit 77; }
  command -v ip >/dev/null && command -v tc >/dev/null ||
    { echo "netns-cluster: needs ip and tc (Debian package iproute2)" >&2; exit 77; }
  local probe=dtrain-probe-$$ err
  if ! err=$(ip netns add "$probe" 2>&1); then
    echo "netns-cluster: cannot create network namespaces here (ip netns add: $err)" >&2
    exit 77
  fi
  if ! err=$(ip -n "$probe" link add name p0 type veth peer name p1 2>&1); then
    ip netns del "$probe" 2>/dev/null || true
    echo "netns-cluster: cannot create veth pairs here (ip link add: $err)" >&2
    exit 77
  fi
  ip netns del "$probe"
}

nodes() { ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${prefix}[0-9]+$" | sort -V || true; }

down() {
  local ns link
  for ns in $(nodes); do
    # A process left inside (a killed job's daemon) would keep the namespace and its veth alive.
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
  done
  for link in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' | grep -E "^dtv$id-[0-9]+$"); do
    ip link del "$link" 2>/dev/null || true
  done
  if ip link show "$bridge" >/dev/null 2>&1; then ip link del "$bridge"; fi
  rm -rf "$state"
}

# tbf needs a bucket of at least rate / HZ; 1 ms of traffic (at least 64 KiB) is enough with
# high-resolution timers.
burst_for() {
  local rate=$1 bits
  case $rate in
    *gbit) bits=$((${rate%gbit} * 1000000000)) ;;
    *mbit) bits=$((${rate%mbit} * 1000000)) ;;
    *kbit) bits=$((${rate%kbit} * 1000)) ;;
    *) die "--rate: expected a whole number with gbit, mbit or kbit (e.g. 10gbit), got '$rate'" ;;
  esac
  local bytes=$((bits / 8 / 1000))
  [ "$bytes" -ge 65536 ] || bytes=65536
  echo "$bytes"
}

# shape DEV [NETNS]: rate and (where netem exists) delay on DEV's egress.
shape() {
  local dev=$1 ns=${2:-} tcn=(tc)
  [ -n "$ns" ] && tcn=(tc -n "$ns")
  if [ -n "$delay" ] && [ "$netem" = yes ]; then
    "${tcn[@]}" qdisc add dev "$dev" root handle 1: netem delay "$delay"
    [ -n "$rate" ] && "${tcn[@]}" qdisc add dev "$dev" parent 1:1 handle 10: tbf rate "$rate" burst "$(burst_for "$rate")" latency 100ms
  elif [ -n "$rate" ]; then
    "${tcn[@]}" qdisc add dev "$dev" root tbf rate "$rate" burst "$(burst_for "$rate")" latency 100ms
  fi
  return 0
}

up() {
  local n=${1:-}
  [[ $n =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 200 ] || die "up: expected a node count 1..200, got '${n}'"
  shift
  rate="" delay="" slots=4
  while [ $# -gt 0 ]; do
    case $1 in
      --rate)
        rate=${2:?--rate needs a value}
        [[ $rate =~ ^[1-9][0-9]{0,5}[gmk]bit$ ]] || die "--rate: expected a whole number with gbit, mbit or kbit (e.g. 10gbit), got '$rate'"
        shift 2 ;;
      --delay) delay=${2:?--delay needs a value}; shift 2 ;;
      --slots) slots=${2:?--slots needs a value}; shift 2 ;;
      *) die "up: unknown option '$1' (expected --rate, --delay, --slots)" ;;
    esac
  done
  [[ $slots =~ ^[0-9]+$ ]] && [ "$slots" -ge 1 ] || die "--slots: expected a positive whole number, got '$slots'"
  [ -z "$delay" ] || [[ $delay =~ ^[0-9]+(us|ms)$ ]] || die "--delay: expected e.g. 50us or 1ms, got '$delay'"
  check || exit $?
  down
  # The subnet must be ours alone: a route or address there (a lab network, a proxy's fake-IP
  # range) would be shadowed by the bridge's.
  local in_use
  in_use=$(ip -4 -o addr show to "$net.0/24" 2>/dev/null | awk '{print "address " $4 " on " $2}' | head -1 || true)
  [ -n "$in_use" ] ||
    in_use=$(ip -4 route show to match "$net.1" 2>/dev/null | { grep -v '^default' || true; } | sed 's/^/route /' | head -1)
  [ -z "$in_use" ] || die "$net.0/24 is already in use on this machine ($in_use); pick another DTRAIN_NETNS_ID"
  # Whatever fails from here leaves nothing behind.
  built=no
  trap '[ "$built" = yes ] || down' EXIT
  netem=no
  if [ -n "$delay" ]; then
    local probe=dtrain-probe-$$
    ip netns add "$probe"
    ip -n "$probe" link add name p0 type veth peer name p1
    tc -n "$probe" qdisc add dev p0 root netem delay "$delay" 2>/dev/null && netem=yes
    ip netns del "$probe"
    [ "$netem" = yes ] || echo "netns-cluster: note: this kernel has no netem qdisc; --delay $delay is ignored" >&2
  fi
  mkdir -p "$state"
  # Not through the host's iptables (a Docker-style FORWARD DROP would silently drop node-to-node
  # traffic), and no IPv6 link-local addresses: the only addresses are the ones assigned here.
  ip link add "$bridge" type bridge nf_call_iptables 0 nf_call_ip6tables 0 nf_call_arptables 0 2>/dev/null ||
    ip link add "$bridge" type bridge
  ip link set dev "$bridge" addrgenmode none
  ip addr add "$net.254/24" dev "$bridge"
  ip link set "$bridge" up
  : >"$state/hostfile"
  local i ns
  for i in $(seq 1 "$n"); do
    ns=$prefix$i
    ip netns add "$ns"
    ip link add name "dtv$id-$i" type veth peer name eth0 netns "$ns"
    ip link set dev "dtv$id-$i" addrgenmode none
    ip -n "$ns" link set dev eth0 addrgenmode none
    ip link set "dtv$id-$i" master "$bridge" up
    ip -n "$ns" addr add "$net.$i/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
    shape "dtv$id-$i"
    shape eth0 "$ns"
    echo "$net.$i slots=$slots" >>"$state/hostfile"
  done
  local applied_delay=$delay
  [ "$netem" = yes ] || applied_delay=""
  printf 'nodes=%s\nrate=%s\ndelay=%s\nslots=%s\n' "$n" "${rate:-unshaped}" "${applied_delay:-none}" "$slots" >"$state/cluster"
  # Every node must reach the bridge, and node 1 every other node, before mpirun needs them: a TCP
  # connect to a closed port answers "refused" at once when the link works (no ping needed).
  local err from to
  for i in $(seq 1 "$n"); do
    for pair in "$i 254" "1 $i"; do
      read -r from to <<<"$pair"
      [ "$from" != "$to" ] || continue
      err=$(timeout 5 ip netns exec "$prefix$from" bash -c "exec 3<>/dev/tcp/$net.$to/9" 2>&1 || true)
      [[ $err == *refused* ]] || die "node $from ($net.$from) cannot reach $net.$to: ${err:-no answer in 5 s}"
    done
  done
  built=yes
  trap - EXIT
  echo "netns-cluster: $n node(s) up: $net.1..$net.$n, rate ${rate:-unshaped}, delay ${applied_delay:-none}," \
    "$slots slot(s) each; hostfile $state/hostfile"
}

# Open MPI's rsh agent: `netns-cluster.sh exec HOST COMMAND...` runs the command line (an sh
# command, as a remote shell would get it) inside HOST's namespace.
exec_in() {
  local host=${1:?exec: expected a host}
  shift
  [[ $host =~ ^198\.18\.([0-9]+)\.([0-9]+)$ ]] || die "exec: '$host' is not a node address (198.18.K.N)"
  local ns=dtrain${BASH_REMATCH[1]}-n${BASH_REMATCH[2]}
  ip netns list | awk '{print $1}' | grep -qx "$ns" || die "exec: no namespace $ns for $host (run: $0 up N)"
  # Its own host name too (a new UTS namespace), so ranks and logs tell the nodes apart.
  exec ip netns exec "$ns" unshare --uts /bin/sh -c "hostname $ns && $*"
}

run_mpirun() {
  [ -f "$state/hostfile" ] || die "mpirun: no cluster is up (run: $0 up N)"
  export OMPI_MCA_btl_tcp_if_include=$net.0/24 OMPI_MCA_oob_tcp_if_include=$net.0/24
  # The emulated links' packets are moved by the kernel's softirq threads, which ranks that
  # busy-poll starve until the next scheduler tick: 8 ms per 4 KiB all-reduce on a 2-core machine
  # against 40 us when the ranks yield while they wait. Real nodes move packets in interrupts.
  export OMPI_MCA_mpi_yield_when_idle=${OMPI_MCA_mpi_yield_when_idle:-1}
  # Messages past the TCP transport's 64 KiB eager limit (its rendezvous protocol) reached half the
  # link rate (0.061 GB/s busbw on 1 Gbit/s at 4 MiB, while plain TCP streams reached 118 MB/s each
  # way at once); sent eagerly in fragments of up to 4 MiB they reach 0.113-0.119.
  export OMPI_MCA_btl_tcp_eager_limit=${OMPI_MCA_btl_tcp_eager_limit:-4194304}
  export OMPI_MCA_btl_tcp_rndv_eager_limit=${OMPI_MCA_btl_tcp_rndv_eager_limit:-4194304}
  export OMPI_MCA_btl_tcp_max_send_size=${OMPI_MCA_btl_tcp_max_send_size:-4194304}
  exec mpirun --hostfile "$state/hostfile" --mca plm_rsh_agent "$self exec" --mca plm_rsh_no_tree_spawn 1 \
    --mca pml ob1 --mca btl tcp,self "$@"
}

status() {
  if [ ! -f "$state/cluster" ]; then
    echo "netns-cluster: no cluster is up"
    return 0
  fi
  cat "$state/cluster"
  local ns
  for ns in $(nodes); do
    echo "$ns: $(ip -n "$ns" -4 -o addr show dev eth0 | awk '{print $4}'); $(tc -n "$ns" qdisc show dev eth0 | head -1)"
  done
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
  up) up "$@" ;;
  down) down ;;
  status) status ;;
  check) check ;;
  exec) exec_in "$@" ;;
  mpirun) run_mpirun "$@" ;;
  *) die "usage: $0 up N [--rate 10gbit] [--delay 50us] [--slots 4] | mpirun ARGS... | status | down | check" ;;
esac
