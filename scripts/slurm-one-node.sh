#!/usr/bin/env bash
# A real one-node SLURM cluster on this machine, for CI (tests/test_slurm.py) and for trying
# profiles/slurm by hand:
#
#   scripts/slurm-one-node.sh start    install slurm-wlm + munge if missing (root, apt-get),
#                                      write /etc/slurm/slurm.conf, start munged, slurmctld and
#                                      slurmd, wait until the node is idle. A no-op on a cluster
#                                      that already answers.
#   scripts/slurm-one-node.sh stop     stop the daemons this script started
#   scripts/slurm-one-node.sh status   sinfo
#
# The cluster has one node (this machine: all its CPUs, 80% of its memory) in one partition,
# `debug`, and no accounting (no slurmdbd): query jobs with squeue, not sacct
# (snakemake --slurm-status-command squeue). Finished jobs stay visible to squeue for
# MinJobAge seconds; the SLURM executor plugin needs to see a job's final state there.
#
# An existing slurm.conf that this script did not write (it has no marker line) is never
# overwritten. Daemon state, spool, pid and log files live under $SLURM_ONE_NODE_DIR
# (default /var/lib/amuro-slurm). Tested with Debian 12's slurm-wlm 22.05 and munge 0.5.15.
set -euo pipefail
# The daemons live in /usr/sbin, which a non-root user's PATH may lack.
export PATH="$PATH:/usr/sbin:/sbin"

CONF=/etc/slurm/slurm.conf
MARKER="# Written by amuro scripts/slurm-one-node.sh; safe to delete."
DIR=${SLURM_ONE_NODE_DIR:-/var/lib/amuro-slurm}
MUNGE_KEY=/etc/munge/munge.key
MUNGE_PID=/run/munge/munged.pid
START_TIMEOUT=${SLURM_ONE_NODE_TIMEOUT:-60}   # seconds to wait for the node to become idle
NODE=$(hostname -s)

die() { echo "slurm-one-node: $*" >&2; exit 1; }
log() { echo "slurm-one-node: $*" >&2; }

# Is a pid file's process alive?
alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# The node's state as sinfo reports it ("idle", "mixed", "down*", ...), empty if no answer.
node_state() { timeout 5 sinfo -h -N -n "$NODE" -o %T 2>/dev/null | head -n1 || true; }

# A cluster that answers with this node ready to run jobs.
cluster_ready() {
    command -v sinfo >/dev/null || return 1
    case "$(node_state)" in idle|mixed|allocated|completing) return 0 ;; *) return 1 ;; esac
}

ours() { [[ -f $CONF ]] && grep -qxF "$MARKER" "$CONF"; }

install_packages() {
    command -v slurmctld >/dev/null && command -v munged >/dev/null && return 0
    [[ $(id -u) -eq 0 ]] || die "slurm is not installed and installing it needs root (apt-get install slurm-wlm munge)"
    log "installing slurm-wlm and munge with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    # A fresh image may have no package lists yet; an update that fails is not fatal here.
    if ! apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null 2>&1; then
        apt-get update -qq >/dev/null 2>&1 || true
        apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null \
            || die "apt-get install slurm-wlm munge failed"
    fi
}

write_conf() {
    local cpus mem_mb
    cpus=$(nproc)
    # 80% of MemTotal: slurmd must never find less memory than the node claims.
    mem_mb=$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.8}' /proc/meminfo)
    mkdir -p /etc/slurm "$DIR/state" "$DIR/spool"
    cat >"$CONF" <<EOF
$MARKER
# A one-node cluster for tests: this machine is controller and compute node.
ClusterName=amuro-ci
SlurmctldHost=$NODE(127.0.0.1)
AuthType=auth/munge
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
MpiDefault=none
SwitchType=switch/none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
# No cgroups, no accounting daemon: nothing beyond slurmctld and slurmd.
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
# Keep finished jobs visible to squeue for 10 minutes: with no accounting, squeue is the only
# way the executor plugin learns a job's final state (COMPLETED, FAILED, CANCELLED).
MinJobAge=600
# A node that was down (e.g. after a restart of this script) comes back by itself.
ReturnToService=2
# Seconds between SIGTERM and SIGKILL when a job is cancelled or times out.
KillWait=30
# Use the CPUs and memory below as they are, whatever the hardware detection says.
SlurmdParameters=config_overrides
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    log "wrote $CONF ($cpus CPUs, $mem_mb MB)"
}

start_munge() {
    # Already running and answering?
    if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then return 0; fi
    if [[ ! -s $MUNGE_KEY ]]; then
        mkdir -p /etc/munge
        mungekey --create --keyfile="$MUNGE_KEY" 2>/dev/null \
            || dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none
        log "created $MUNGE_KEY"
    fi
    chown munge:munge "$MUNGE_KEY" && chmod 0400 "$MUNGE_KEY"
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown munge:munge /run/munge /var/lib/munge /var/log/munge
    chmod 0755 /run/munge
    runuser -u munge -- /usr/sbin/munged
    touch "$DIR/munged.ours"   # so that `stop` stops only a munged this script started
    for _ in $(seq 50); do
        munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "munged did not start (see /var/log/munge/munged.log)"
}

start() {
    if cluster_ready; then
        log "cluster already running: node $NODE is $(node_state)"
        return 0
    fi
    install_packages
    [[ $(id -u) -eq 0 ]] || die "the cluster is not running and starting it needs root"
    if [[ -f $CONF ]] && ! ours; then
        die "$CONF exists and was not written by this script; not overwriting it (start that cluster yourself, or move the file away)"
    fi
    mkdir -p "$DIR"
    # Rewrite the file only while none of our daemons runs, so CPUs and memory are current.
    if ! alive "$DIR/slurmctld.pid" && ! alive "$DIR/slurmd.pid"; then write_conf; fi
    start_munge
    alive "$DIR/slurmctld.pid" || slurmctld
    alive "$DIR/slurmd.pid" || slurmd
    local waited=0 state
    until cluster_ready; do
        state=$(node_state)
        # A node left down or drained by an earlier run: bring it back.
        case "$state" in down*|drain*|fail*)
            scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true ;;
        esac
        if ((waited >= START_TIMEOUT)); then
            die "node $NODE not idle after ${START_TIMEOUT}s (state: '${state:-no answer}'); see $DIR/slurmctld.log and $DIR/slurmd.log"
        fi
        sleep 1
        waited=$((waited + 1))
    done
    log "cluster up after ${waited}s: node $NODE is $(node_state)"
}

# Send SIGTERM to a daemon by its pid file and wait (up to 10 s) for it to exit.
stop_daemon() {
    local pidfile=$1 pid
    alive "$pidfile" || return 0
    pid=$(cat "$pidfile")
    kill "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    log "$pidfile: process $pid still running after 10 s"
}

stop() {
    if [[ -f $CONF ]] && ! ours; then
        die "$CONF was not written by this script; not stopping that cluster"
    fi
    stop_daemon "$DIR/slurmd.pid"
    stop_daemon "$DIR/slurmctld.pid"
    if [[ -f $DIR/munged.ours ]]; then
        stop_daemon "$MUNGE_PID"
        rm -f "$DIR/munged.ours"
    fi
    log "stopped"
}

status() {
    command -v sinfo >/dev/null || die "slurm is not installed"
    timeout 5 sinfo || die "no answer from slurmctld"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 {start|stop|status}" >&2; exit 2 ;;
esac
