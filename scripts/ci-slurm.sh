#!/usr/bin/env bash
# Start a one-node Slurm cluster (munged, slurmctld, slurmd) on this machine, for the
# real-Slurm integration test (tests/integration/test_slurm.py). Needs root.
#
# Idempotent: if `sinfo` already answers, it only prints "slurm ready". The repository
# is self-sufficient: this is our own copy of ../shared/slurm/start-slurm.sh's logic
# (Debian 12: slurm-wlm 22.05 + munge from apt), so a fresh clone anywhere can run it.
#
# Environment: SLURM_TEST_DIR (default /tmp/tether-slurm) holds spool, state, logs and
# the daemons' pid files. Stop the daemons by those pids (scripts/ci-slurm.sh --stop),
# never by a broad process name.
set -euo pipefail
STATE=${SLURM_TEST_DIR:-/tmp/tether-slurm}

if [ "${1:-}" = "--stop" ]; then
    for f in "$STATE/slurmd.pid" "$STATE/slurmctld.pid"; do
        [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
    done
    echo "slurm stopped"; exit 0
fi

# the network-cut test (tests/integration/test_netns.py) needs iproute2 too
if ! command -v ip >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 >/dev/null || true
fi
if sinfo -h >/dev/null 2>&1; then echo "slurm ready"; exit 0; fi
if [ "$(id -u)" != 0 ]; then echo "ci-slurm.sh: needs root to set up Slurm" >&2; exit 1; fi

if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1 \
        || ! command -v sinfo >/dev/null 2>&1; then
    echo "installing slurm-wlm and munge ..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq slurm-wlm munge >/dev/null
fi

H=$(hostname)
mkdir -p "$STATE/spool" "$STATE/state" /run/munge /etc/slurm
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=local
SlurmctldHost=$H
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmdSpoolDir=$STATE/spool
StateSaveLocation=$STATE/state
SlurmUser=root
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
KillWait=5
OverTimeLimit=0
MinJobAge=30
NodeName=$H CPUs=$(nproc) State=UNKNOWN
PartitionName=debug Nodes=$H Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
CONF
[ -f /etc/munge/munge.key ] || mungekey -c
chown munge:munge /etc/munge/munge.key /run/munge
pgrep -u munge munged >/dev/null 2>&1 || runuser -u munge -- /usr/sbin/munged
pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
pid_alive "$STATE/slurmctld.pid" || slurmctld -f /etc/slurm/slurm.conf >"$STATE/slurmctld.log" 2>&1 || true
pid_alive "$STATE/slurmd.pid" || slurmd -f /etc/slurm/slurm.conf >"$STATE/slurmd.log" 2>&1 || true
for _ in $(seq 1 30); do
    if sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then echo "slurm ready"; exit 0; fi
    sleep 1
done
echo "slurm did not come up; see $STATE/*.log" >&2
exit 1
