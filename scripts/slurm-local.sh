#!/usr/bin/env bash
# A local Slurm cluster for CI and for trying the Slurm path on one machine (root):
#   scripts/slurm-local.sh install            # Debian's slurm-wlm + munge (apt)
#   scripts/slurm-local.sh start              # one node on loopback: munged, slurmctld, slurmd
#   scripts/slurm-local.sh start --nodes 2    # two nodes, bb-node1 and bb-node2, each a network
#                                             # namespace on a bridge (10.123.0.0/24) with its own slurmd
#   scripts/slurm-local.sh stop               # stop the daemons; remove namespaces, veths, bridge
#   scripts/slurm-local.sh crash-node bb-node2  # a node crash: SIGKILL every process in its namespace
#   scripts/slurm-local.sh start-node bb-node2  # its slurmd again (the node comes back idle)
# Settings that work with Slurm 22.05 in a container: linuxproc process tracking, no task
# plugin, cons_tres selection, no accounting store. SlurmdTimeout=30 (Slurm's default is 300 s): a
# crashed node is declared down, and its jobs' allocations released, 30 s after it stops answering.
# Two nodes: slurmctld listens on the bridge address in the root namespace; each slurmd runs in
# its node's network namespace (nsenter; `ip netns exec` remounts /sys and slurmd then finds no
# cgroups) and in a private UTS + mount namespace whose hostname is the node name and whose
# /etc/hosts (bind-mounted) names the controller and both nodes, so ranks on the two nodes find
# each other by name. The file system is otherwise shared, as on a cluster with a shared home.
set -euo pipefail
cmd=${1:?usage: $0 install|start [--nodes 1|2]|stop|status|crash-node NODE|start-node NODE}
nodes=1
if [ "${2:-}" = "--nodes" ]; then nodes=${3:?--nodes needs 1 or 2}; fi
case "$cmd" in crash-node|start-node) node=${2:?$cmd needs a node: bb-node1 or bb-node2}; nodes=2 ;; esac
case "$nodes" in 1|2) ;; *) echo "--nodes: $nodes; allowed: 1, 2" >&2; exit 2 ;; esac
conf_dir=/etc/slurm
run_dir=/var/run/benchbench-slurm
host=$(hostname -s)
bridge=bb-br0
net=10.123.0
node_names=(bb-node1 bb-node2)

install() {
  export DEBIAN_FRONTEND=noninteractive
  if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
  fi
  slurmctld -V
}

write_conf() {
  local cpus mem ctl_addr=127.0.0.1 suffix=""
  cpus=$(nproc)
  mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))
  if [ "$nodes" = 2 ]; then ctl_addr=$net.1; suffix=-%n; mem=$(( mem / 2 )); fi
  mkdir -p "$conf_dir" /var/spool/slurmctld /var/spool/slurmd /var/log/slurm "$run_dir"
  cat > "$conf_dir/slurm.conf" <<CONF
ClusterName=benchbench
SlurmctldHost=${host}(${ctl_addr})
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
MinJobAge=600
ReturnToService=2
SlurmdTimeout=30
SchedulerType=sched/backfill
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd${suffix}
SlurmctldPidFile=${run_dir}/slurmctld.pid
SlurmdPidFile=${run_dir}/slurmd${suffix}.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd${suffix}.log
CONF
  if [ "$nodes" = 1 ]; then
    echo "NodeName=${host} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${mem} State=UNKNOWN" >> "$conf_dir/slurm.conf"
  else
    # each node claims the machine's CPUs (config_overrides: slurmd does not check them)
    echo "SlurmdParameters=config_overrides" >> "$conf_dir/slurm.conf"
    for i in 1 2; do
      echo "NodeName=${node_names[i-1]} NodeAddr=$net.1$i CPUs=${cpus} RealMemory=${mem} State=UNKNOWN" >> "$conf_dir/slurm.conf"
    done
  fi
  echo "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO" >> "$conf_dir/slurm.conf"
}

# the bridge in the root namespace, and per node a namespace with a veth on it
make_net() {
  ip link add "$bridge" type bridge
  ip addr add "$net.1/24" dev "$bridge"
  ip link set "$bridge" up
  for i in 1 2; do
    local ns=${node_names[i-1]}
    ip netns add "$ns"
    ip link add "bb-veth$i" type veth peer name eth0 netns "$ns"
    ip link set "bb-veth$i" master "$bridge" up
    ip -n "$ns" addr add "$net.1$i/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
  done
  # ::ffff: lines answer the reverse lookups gloo makes of mapped peer addresses
  { echo "127.0.0.1 localhost"; echo "$net.1 $host"; echo "::ffff:$net.1 $host"
    for i in 1 2; do echo "$net.1$i ${node_names[i-1]}"; echo "::ffff:$net.1$i ${node_names[i-1]}"; done
  } > "$run_dir/hosts"
}

# slurmd of one node: its network namespace, its own hostname and /etc/hosts
start_slurmd_in() {
  local node=$1
  mkdir -p "/var/spool/slurmd-$node"
  nsenter --net="/run/netns/$node" unshare --uts --mount --propagation private sh -c \
    "hostname $node && mount --bind $run_dir/hosts /etc/hosts && exec slurmd -D -N $node" \
    >>"/var/log/slurm/slurmd-$node.out" 2>&1 &
  echo $! > "$run_dir/slurmd-$node.launcher.pid"
}

start() {
  write_conf
  mkdir -p /run/munge /var/log/munge /var/lib/munge /etc/munge
  [ -s /etc/munge/munge.key ] || { dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; }
  chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
  chmod 0700 /etc/munge; chmod 0400 /etc/munge/munge.key
  if ! pgrep -x munged >/dev/null; then
    runuser -u munge -- /usr/sbin/munged || /usr/sbin/munged --force
  fi
  for _ in $(seq 20); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.5; done
  munge -n | unmunge >/dev/null
  if pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null; then
    echo "Slurm daemons already running: $0 stop first" >&2; return 1
  fi
  if [ "$nodes" = 2 ]; then make_net; fi
  slurmctld
  if [ "$nodes" = 1 ]; then slurmd; else for n in "${node_names[@]}"; do start_slurmd_in "$n"; done; fi
  wait_idle
}

wait_idle() {
  local up states
  for _ in $(seq 60); do
    states=$(sinfo -h -N -o '%N %t' 2>/dev/null || true)
    up=$(awk '$2 ~ /^(idle|mix|alloc)/' <<<"$states" | wc -l)
    if [ "$up" -ge "$nodes" ]; then sinfo; return 0; fi
    awk '$2 ~ /^(down|drain)/ {print $1}' <<<"$states" | while read -r n; do
      scontrol update nodename="$n" state=resume 2>/dev/null || true
    done
    sleep 0.5
  done
  echo "slurm nodes did not come up: ${states:-none}" >&2
  tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd*.log >&2 || true
  return 1
}

# every process whose network namespace is the node's: slurmd, slurmstepd, the ranks
node_pids() {
  local want
  want=$(stat -Lc %i "/run/netns/$1")
  for p in /proc/[0-9]*; do
    [ "$(stat -Lc %i "$p/ns/net" 2>/dev/null)" = "$want" ] && echo "${p#/proc/}"
  done
  return 0
}

crash_node() {
  case "$node" in bb-node1|bb-node2) ;; *) echo "crash-node: $node; allowed: bb-node1, bb-node2" >&2; exit 2 ;; esac
  local pids
  pids=$(node_pids "$node")
  [ -n "$pids" ] && kill -KILL $pids 2>/dev/null
  echo "killed ${pids:-nothing} on $node" | tr '\n' ' '; echo
}

start_node() {
  case "$node" in bb-node1|bb-node2) ;; *) echo "start-node: $node; allowed: bb-node1, bb-node2" >&2; exit 2 ;; esac
  start_slurmd_in "$node"
  wait_idle
}

stop() {
  for d in slurmd slurmctld munged; do pkill -x "$d" 2>/dev/null || true; done
  # wait until they are gone, so that a start right after finds none half-stopped
  local left=1
  for _ in $(seq 40); do
    if ! pgrep -x slurmd >/dev/null && ! pgrep -x slurmctld >/dev/null && ! pgrep -x munged >/dev/null; then
      left=0; break
    fi
    sleep 0.25
  done
  [ "$left" = 0 ] || echo "slurm daemons still running after 10 s" >&2
  # the two-node network: deleting a namespace deletes its end of the veth, and so the pair
  for n in "${node_names[@]}"; do ip netns del "$n" 2>/dev/null || true; done
  ip link del "$bridge" 2>/dev/null || true
  rm -f "$run_dir"/slurmd-*.launcher.pid "$run_dir/hosts"
  return "$left"
}

case "$cmd" in
  install) install ;;
  start) start ;;
  crash-node) crash_node ;;
  start-node) start_node ;;
  stop) stop ;;
  status) sinfo && squeue ;;
  *) echo "unknown command $cmd" >&2; exit 2 ;;
esac
