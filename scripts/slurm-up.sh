#!/usr/bin/env bash
# Starts a one-node Slurm cluster on this machine (munged, slurmctld, slurmd), as root,
# installing Debian's slurm-wlm and munge first when they are missing. Idempotent: a
# cluster that already answers `sinfo` is left alone. Used by scripts/test.sh.
set -euo pipefail

node_ready() {
    case "$(sinfo -h -o %t 2>/dev/null | head -1)" in
        idle|mix|mixed|alloc|allocated|comp|completing) return 0 ;;
        *) return 1 ;;
    esac
}
if node_ready; then
    echo "slurm: a cluster is up"; exit 0
fi
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        echo "slurm: slurmctld/munged are missing and cannot be installed here (needs root" \
             "and apt-get); install Debian's slurm-wlm and munge, then rerun" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi
[ "$(id -u)" = 0 ] || { echo "slurm: starting the daemons needs root" >&2; exit 1; }

host=$(hostname -s)
cpus=$(nproc)
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 512 ))
state=/var/spool/slurm
mkdir -p /etc/slurm "$state/ctld" "$state/d" /var/log/slurm /run/munge /var/lib/munge /var/log/munge
cat > /etc/slurm/slurm.conf <<CONF
# One-node cluster for qornn's tests (scripts/slurm-up.sh).
ClusterName=qornn
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/d
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1
MinJobAge=300
KillWait=10
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF

[ -s /etc/slurm/cgroup.conf ] || rm -f /etc/slurm/cgroup.conf
if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
chmod 0400 /etc/munge/munge.key
if ! munge -n >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged 2>/dev/null || /usr/sbin/munged --force
    for _ in $(seq 1 20); do munge -n >/dev/null 2>&1 && break; sleep 0.5; done
fi
pkill -x slurmctld 2>/dev/null || true
pkill -x slurmd 2>/dev/null || true
sleep 1
/usr/sbin/slurmctld -c
/usr/sbin/slurmd
for _ in $(seq 1 30); do
    if node_ready; then
        echo "slurm: one-node cluster up ($host, $cpus CPUs)"; exit 0
    fi
    sleep 1
done
echo "slurm: the cluster did not come up; see /var/log/slurm/*.log" >&2
sinfo >&2 || true
exit 1
