#!/usr/bin/env bash
# Stop the single-node SLURM test cluster started by tools/slurm_cluster/up.sh.
# Only the processes recorded in <state>/run/<daemon>.pid are signalled (TERM, then KILL after
# a timeout), and only if that PID still runs that daemon. Nothing is stopped by name.
# The state directory is the one up.sh recorded in /run/itermask-slurm.state (or
# $ITERMASK_SLURM_DIR); one that fails the checks of state.sh (not created by up.sh, owned or
# writable by another user) is refused: nothing is signalled or deleted.
#   tools/slurm_cluster/down.sh            # keep the state directory (accounting database, logs)
#   tools/slurm_cluster/down.sh --purge    # also delete the state directory and the pointer
set -uo pipefail

usage() {
    cat <<'USAGE'
usage: tools/slurm_cluster/down.sh [--purge] [-h|--help]
Stop the single-node SLURM test cluster that tools/slurm_cluster/up.sh started.
  --purge    also delete its state directory (accounting database, logs) and the pointer
USAGE
}
# Arguments first: nothing is signalled or deleted before they are checked.
PURGE=0
for arg in "$@"; do
    case $arg in
        -h|--help) usage; exit 0 ;;
        --purge) PURGE=1 ;;
        *) echo "slurm-down: unknown argument '$arg'" >&2; usage >&2; exit 2 ;;
    esac
done

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tools/slurm_cluster/state.sh
source "$HERE/state.sh"
STATE=${ITERMASK_SLURM_DIR:-}
if [[ -z $STATE ]]; then
    STATE=$(state_from_pointer) || exit 1
    [[ -n $STATE ]] || { echo "slurm-down: no test cluster recorded in $SLURM_POINTER; nothing to stop"; exit 0; }
fi
if ! why=$(state_check "$STATE"); then
    if [[ ! -e $STATE && ! -L $STATE ]]; then
        echo "slurm-down: state directory $STATE no longer exists; nothing to stop"
        state_forget "$STATE"
        exit 0
    fi
    echo "slurm-down: refusing state directory: $why" >&2
    exit 1
fi
TIMEOUT_S=${ITERMASK_SLURM_STOP_TIMEOUT_S:-20}
# Reverse start order: compute node first, database last.
DAEMONS=(slurmd slurmctld slurmdbd mariadbd munged)

# pid_if_ours NAME: print the recorded PID of NAME if that process is still NAME.
pid_if_ours() {
    local pid
    pid=$(cat "$STATE/run/$1.pid" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/cmdline ]] || return 1
    [[ "$(tr '\0' '\n' < "/proc/$pid/cmdline" | head -n 1 | xargs -r basename 2>/dev/null)" == "$1" ]] || return 1
    echo "$pid"
}

# Cancel the jobs still queued or running in this cluster (only this cluster's controller is
# asked), so that no job processes outlive slurmd.
if pid_if_ours slurmctld >/dev/null && [[ -s $STATE/etc/slurm.conf ]]; then
    export SLURM_CONF=$STATE/etc/slurm.conf
    jobs=$(timeout 10 squeue -h -o %i 2>/dev/null | tr '\n' ' ')
    if [[ -n ${jobs// /} ]]; then
        echo "slurm-down: cancelling jobs $jobs"
        timeout 10 scancel $jobs 2>/dev/null
        for _ in $(seq 1 50); do
            [[ -z "$(timeout 5 squeue -h -o %i 2>/dev/null)" ]] && break
            sleep 0.3
        done
    fi
fi

status=0
for name in "${DAEMONS[@]}"; do
    if pid=$(pid_if_ours "$name"); then
        kill -TERM "$pid" 2>/dev/null
        deadline=$((SECONDS + TIMEOUT_S))
        while [[ -e /proc/$pid ]] && ((SECONDS < deadline)); do sleep 0.2; done
        if [[ -e /proc/$pid ]]; then
            echo "slurm-down: $name (pid $pid) ignored TERM for ${TIMEOUT_S} s; sending KILL"
            kill -KILL "$pid" 2>/dev/null
            sleep 0.5
        fi
        if [[ -e /proc/$pid ]]; then
            echo "slurm-down: could not stop $name (pid $pid)" >&2
            status=1
            continue
        fi
        echo "slurm-down: stopped $name (pid $pid)"
    fi
    rm -f "$STATE/run/$name.pid" "$STATE/run/$name.pid.daemon"
done

# Undo the /etc/slurm/slurm.conf link if it is the one up.sh made.
if [[ "$(readlink /etc/slurm/slurm.conf 2>/dev/null)" == "$STATE/etc/slurm.conf" ]]; then
    rm -f /etc/slurm/slurm.conf
fi

if [[ $PURGE == 1 && $status == 0 ]]; then
    case $STATE in
        /|/tmp|/root|/home|"") echo "slurm-down: refusing to delete '$STATE'" >&2; exit 1 ;;
    esac
    rm -rf -- "$STATE"
    state_forget "$STATE"
    echo "slurm-down: removed $STATE"
fi
exit $status
