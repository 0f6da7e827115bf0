#!/usr/bin/env bash
# A one-node Slurm cluster on loopback, for CI and for trying the Slurm path on one machine.
#   scripts/slurm-local.sh install   # Debian's slurm-wlm + munge (root; apt)
#   scripts/slurm-local.sh start     # write slurm.conf, start munged, slurmctld, slurmd; wait for the node
#   scripts/slurm-local.sh stop      # stop the daemons this script started
# Settings that work with Slurm 22.05 in a container: linuxproc process tracking, no task
# plugin, cons_tres selection, no accounting store.
set -euo pipefail
cmd=${1:?usage: $0 install|start|stop|status}
conf_dir=/etc/slurm
run_dir=/var/run/benchbench-slurm
host=$(hostname -s)

install() {
  export DEBIAN_FRONTEND=noninteractive
  if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
  fi
  slurmctld -V
}

write_conf() {
  local cpus mem
  cpus=$(nproc)
  mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))
  mkdir -p "$conf_dir" /var/spool/slurmctld /var/spool/slurmd /var/log/slurm "$run_dir"
  cat > "$conf_dir/slurm.conf" <<CONF
ClusterName=benchbench
SlurmctldHost=${host}(127.0.0.1)
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
SchedulerType=sched/backfill
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=${run_dir}/slurmctld.pid
SlurmdPidFile=${run_dir}/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=${host} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${mem} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
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
  pgrep -x slurmctld >/dev/null || slurmctld
  pgrep -x slurmd >/dev/null || slurmd
  for _ in $(seq 60); do
    state=$(sinfo -h -N -o '%t' 2>/dev/null | head -n1 || true)
    case "$state" in
      idle*|mix*|alloc*) sinfo; return 0 ;;
      down*|drain*) scontrol update nodename="$host" state=resume 2>/dev/null || true ;;
    esac
    sleep 1
  done
  echo "slurm node did not come up (state: ${state:-none})" >&2
  tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
  return 1
}

stop() {
  for d in slurmd slurmctld munged; do pkill -x "$d" 2>/dev/null || true; done
  # wait until they are gone, so that a start right after finds none half-stopped
  for _ in $(seq 40); do
    pgrep -x slurmd >/dev/null || pgrep -x slurmctld >/dev/null || pgrep -x munged >/dev/null || return 0
    sleep 0.25
  done
  echo "slurm daemons still running after 10 s" >&2
}

case "$cmd" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) sinfo && squeue ;;
  *) echo "unknown command $cmd" >&2; exit 2 ;;
esac
