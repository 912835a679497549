#!/usr/bin/env bash
# Bring up a real single-node SLURM cluster on this machine, for tests and local trials:
# munged, mariadbd, slurmdbd (accounting: what `sacct` and the Snakemake SLURM executor read),
# slurmctld and slurmd, each started by hand in the background (no systemd, no cgroups).
#
#   sudo tools/slurm_cluster/up.sh          # idempotent; tools/slurm_cluster/down.sh stops it
#
# Everything lives in a private state directory that this script creates with `mktemp -d`
# (/tmp/itermask-slurm.XXXXXXXXXX) and records in /run/itermask-slurm.state (root only, 0600);
# a directory it did not create is refused (tools/slurm_cluster/state.sh has the checks):
# etc/ (slurm.conf, gres.conf, slurmdbd.conf), run/ (<daemon>.pid of every process started
# here), log/ (daemon logs, jobcomp.log), munge/, mysql/, spool/. The last line printed names it.
# /etc/slurm/slurm.conf is pointed at etc/slurm.conf when no other slurm.conf is there, so that
# sbatch/sinfo/sacct (and `snakemake --profile slurm`) work without SLURM_CONF; otherwise
# export SLURM_CONF=<state>/etc/slurm.conf.
# Settings (environment): ITERMASK_SLURM_DIR, ITERMASK_SLURM_POINTER (see state.sh), ITERMASK_SLURM_CLUSTER (itermask),
# ITERMASK_SLURMCTLD_PORT (6817), ITERMASK_SLURMD_PORT (6818), ITERMASK_SLURMDBD_PORT (6819),
# ITERMASK_SLURM_DB_PORT (3307), ITERMASK_SLURM_WAIT_S (90), ITERMASK_SLURM_NO_ETC=1 (leave /etc alone).
set -euo pipefail

usage() {
    cat <<'USAGE'
usage: sudo tools/slurm_cluster/up.sh [-h|--help]
Install SLURM, MUNGE and MariaDB if missing and start a single-node test cluster (idempotent);
tools/slurm_cluster/down.sh stops it. Settings come from the environment (see the script's header).
USAGE
}
# Arguments first: nothing is installed or started before they are checked.
for arg in "$@"; do
    case $arg in
        -h|--help) usage; exit 0 ;;
        *) echo "slurm-up: unknown argument '$arg' (up.sh takes none)" >&2; usage >&2; exit 2 ;;
    esac
done

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE=  # set below, after the checks of state.sh
CLUSTER=${ITERMASK_SLURM_CLUSTER:-itermask}
CTLD_PORT=${ITERMASK_SLURMCTLD_PORT:-6817}
SLURMD_PORT=${ITERMASK_SLURMD_PORT:-6818}
DBD_PORT=${ITERMASK_SLURMDBD_PORT:-6819}
DB_PORT=${ITERMASK_SLURM_DB_PORT:-3307}
WAIT_S=${ITERMASK_SLURM_WAIT_S:-90}
PACKAGES=(slurm-wlm slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)

T0=$(date +%s.%N)
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
log() { printf '[slurm-up %6ss] %s\n' "$(since "$T0")" "$*"; }

dump_logs() {
    local f
    for f in "$STATE"/log/*.log "$STATE"/log/*.out "$STATE"/mysql/mariadb.log; do
        [[ -s $f ]] || continue
        echo "----- tail of $f -----" >&2
        tail -n 25 "$f" >&2
    done
}

die() {
    echo "slurm-up: ERROR: $*" >&2
    dump_logs
    echo "slurm-up: daemons already started are left running; stop them with $HERE/down.sh" >&2
    exit 1
}

# ---------------------------------------------------------------- packages
need_install() {
    local b
    for b in munged mungekey slurmctld slurmd slurmdbd sbatch sacct sacctmgr sinfo \
             mariadbd mariadb-install-db mariadb mariadb-admin; do
        command -v "$b" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin command -v "$b" >/dev/null 2>&1 || return 0
    done
    [[ -e /usr/lib/x86_64-linux-gnu/slurm-wlm/accounting_storage_mysql.so ]] ||
        compgen -G "/usr/lib/*/slurm-wlm/accounting_storage_mysql.so" >/dev/null || return 0
    return 1
}

install_packages() {
    command -v apt-get >/dev/null 2>&1 || die "SLURM packages are missing and apt-get is unavailable"
    local t=$(date +%s.%N) policy_added=0
    # Keep the packages' init scripts from starting system-wide daemons: this script starts its own.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        policy_added=1
    fi
    log "installing ${PACKAGES[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get update -q >"$STATE/log/apt.out" 2>&1 ||
       ! apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" >>"$STATE/log/apt.out" 2>&1; then
        [[ $policy_added == 1 ]] && rm -f /usr/sbin/policy-rc.d
        tail -n 30 "$STATE/log/apt.out" >&2
        die "apt-get install failed"
    fi
    [[ $policy_added == 1 ]] && rm -f /usr/sbin/policy-rc.d
    log "packages installed in $(since "$t") s"
}

# ---------------------------------------------------------------- process bookkeeping
pid_of() { cat "$STATE/run/$1.pid" 2>/dev/null || true; }

# alive NAME: the PID recorded for NAME is running and is that daemon (guards against PID reuse).
alive() {
    local pid
    pid=$(pid_of "$1")
    [[ -n $pid && -r /proc/$pid/cmdline ]] || return 1
    [[ "$(tr '\0' '\n' < "/proc/$pid/cmdline" | head -n 1 | xargs -r basename 2>/dev/null)" == "$1" ]]
}

# start NAME CMD...: start CMD in its own session, in the foreground mode of the daemon,
# so that the PID recorded is the daemon's own.
start() {
    local name=$1
    shift
    if alive "$name"; then
        log "$name already running (pid $(pid_of "$name"))"
        return
    fi
    setsid "$@" </dev/null >>"$STATE/log/$name.out" 2>&1 &
    echo $! > "$STATE/run/$name.pid"
    log "started $name (pid $!)"
}

# wait_for NAME SECONDS CMD...: poll CMD until it succeeds; fail early if daemon NAME died.
wait_for() {
    local what=$1 limit=$2 t=$(date +%s.%N) deadline=$((SECONDS + $2))
    shift 2
    until "$@" >/dev/null 2>&1; do
        alive "$what" || die "$what exited during start-up"
        ((SECONDS < deadline)) || die "$what not ready after ${limit} s"
        sleep 0.3
    done
    log "$what ready ($(since "$t") s)"
}

render() {  # render TEMPLATE DEST
    sed -e "s|@STATE@|$STATE|g" -e "s|@CLUSTER@|$CLUSTER|g" -e "s|@NODE@|$NODE|g" \
        -e "s|@CPUS@|$CPUS|g" -e "s|@MEM_MB@|$MEM_MB|g" -e "s|@CTLD_PORT@|$CTLD_PORT|g" \
        -e "s|@SLURMD_PORT@|$SLURMD_PORT|g" -e "s|@DBD_PORT@|$DBD_PORT|g" \
        -e "s|@DB_PORT@|$DB_PORT|g" -e "s|@DB_PASS@|$DB_PASS|g" "$1" > "$2.tmp"
    mv "$2.tmp" "$2"
}

# ---------------------------------------------------------------- main
[[ $EUID -eq 0 ]] || { echo "slurm-up: must run as root (daemons run as root here)" >&2; exit 2; }
export PATH=$PATH:/usr/sbin:/sbin
# shellcheck source=tools/slurm_cluster/state.sh
source "$HERE/state.sh"
if [[ -n ${ITERMASK_SLURM_DIR:-} ]]; then
    STATE=$ITERMASK_SLURM_DIR
    if [[ ! -e $STATE && ! -L $STATE ]]; then
        STATE=$(state_create "$STATE") || { echo "slurm-up: cannot create $ITERMASK_SLURM_DIR" >&2; exit 1; }
    fi
else
    STATE=$(state_from_pointer) || exit 1
    if [[ -z $STATE || ( ! -e $STATE && ! -L $STATE ) ]]; then  # none yet, or removed (/tmp cleared)
        STATE=$(state_create) || { echo "slurm-up: cannot create a state directory" >&2; exit 1; }
    fi
fi
if ! why=$(state_check "$STATE"); then
    echo "slurm-up: refusing state directory: $why" >&2
    echo "slurm-up: (remove $SLURM_POINTER or unset ITERMASK_SLURM_DIR to start with a new one)" >&2
    exit 1
fi
state_write_pointer "$STATE"
mkdir -p "$STATE"/{etc,run,log,munge,spool/ctld,spool/d,mysql}
chmod 755 "$STATE"
if need_install; then install_packages; fi

NODE=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(awk '/^MemTotal:/ { printf "%d", $2 / 1024 * 0.9 }' /proc/meminfo)
export SLURM_CONF=$STATE/etc/slurm.conf
MUNGE_SOCKET=$STATE/munge/munge.socket
DB_SOCKET=$STATE/mysql/mysqld.sock

any_alive=0
for d in "${DAEMONS[@]}"; do alive "$d" && any_alive=1; done
if [[ ! -s $STATE/etc/db.pass ]]; then
    (umask 077; head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' > "$STATE/etc/db.pass")
fi
DB_PASS=$(cat "$STATE/etc/db.pass")
if [[ $any_alive == 0 || ! -s $SLURM_CONF ]]; then
    # Fresh start: (re)write the configuration for this host.
    for d in "${DAEMONS[@]}"; do rm -f "$STATE/run/$d.pid"; done
    render "$HERE/slurm.conf.in" "$STATE/etc/slurm.conf"
    render "$HERE/gres.conf.in" "$STATE/etc/gres.conf"
    (umask 077; render "$HERE/slurmdbd.conf.in" "$STATE/etc/slurmdbd.conf")
    chmod 600 "$STATE/etc/slurmdbd.conf"
    log "configuration written to $STATE/etc (node $NODE, $CPUS CPUs, $MEM_MB MB, 1 fake GPU)"
fi

if [[ -z ${ITERMASK_SLURM_NO_ETC:-} ]]; then
    if [[ ! -e /etc/slurm/slurm.conf || "$(readlink /etc/slurm/slurm.conf 2>/dev/null)" == "$SLURM_CONF" ]]; then
        mkdir -p /etc/slurm
        ln -sfn "$SLURM_CONF" /etc/slurm/slurm.conf
    else
        log "note: /etc/slurm/slurm.conf belongs to another cluster; export SLURM_CONF=$SLURM_CONF"
    fi
fi

# munge: own key and socket
if [[ ! -s $STATE/munge/munge.key ]]; then
    mungekey --create --keyfile="$STATE/munge/munge.key" --bits=1024 2>/dev/null ||
        dd if=/dev/urandom of="$STATE/munge/munge.key" bs=1 count=128 status=none
    log "munge key created"
fi
chmod 755 "$STATE/munge"   # the socket must be reachable by every user; the key stays 0400
chmod 400 "$STATE/munge/munge.key"
start munged munged --foreground --force --socket="$MUNGE_SOCKET" \
    --key-file="$STATE/munge/munge.key" --pid-file="$STATE/run/munged.pid.daemon" \
    --log-file="$STATE/log/munged.log" --seed-file="$STATE/munge/munged.seed"
wait_for munged 20 bash -c "munge -n -S '$MUNGE_SOCKET' | unmunge -S '$MUNGE_SOCKET'"

# mariadb: own data directory, socket and port
if [[ ! -d $STATE/mysql/data/mysql ]]; then
    t=$(date +%s.%N)
    chown mysql:mysql "$STATE/mysql"
    mariadb-install-db --no-defaults --user=mysql --datadir="$STATE/mysql/data" \
        --auth-root-authentication-method=socket --skip-test-db \
        >"$STATE/log/mariadb-install.out" 2>&1 || die "mariadb-install-db failed"
    log "database initialised ($(since "$t") s)"
fi
chown -R mysql:mysql "$STATE/mysql"
start mariadbd mariadbd --no-defaults --user=mysql --datadir="$STATE/mysql/data" \
    --socket="$DB_SOCKET" --pid-file="$STATE/mysql/mariadbd.pid" --port="$DB_PORT" \
    --bind-address=127.0.0.1 --log-error="$STATE/mysql/mariadb.log" --skip-log-bin \
    --innodb-buffer-pool-size=128M --innodb-log-file-size=64M --innodb-lock-wait-timeout=900
wait_for mariadbd 60 mariadb-admin --no-defaults --socket="$DB_SOCKET" -u root ping
mariadb --no-defaults --socket="$DB_SOCKET" -u root <<SQL || die "creating the slurm database user failed"
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL PRIVILEGES ON itermask_slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL PRIVILEGES ON itermask_slurm_acct_db.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;
SQL

# slurmdbd (reads slurmdbd.conf next to $SLURM_CONF)
start slurmdbd slurmdbd -D
wait_for slurmdbd 60 sacctmgr -n list cluster
if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
    sacctmgr -i add cluster "$CLUSTER" >/dev/null || die "sacctmgr add cluster failed"
    log "cluster $CLUSTER registered in accounting"
fi
if ! sacctmgr -n -P list account format=account | grep -qx itermask; then
    sacctmgr -i add account itermask Cluster="$CLUSTER" Description="itermask test jobs" \
        Organization=itermask >/dev/null || die "sacctmgr add account failed"
fi
for u in root ${SUDO_USER:-}; do
    sacctmgr -n -P list assoc cluster="$CLUSTER" account=itermask user="$u" format=user | grep -qx "$u" ||
        sacctmgr -i add user "$u" Account=itermask Cluster="$CLUSTER" >/dev/null ||
        die "sacctmgr add user $u failed"
done

start slurmctld slurmctld -D -f "$SLURM_CONF"
wait_for slurmctld 60 bash -c "scontrol ping | grep -q UP"
SLURMD_SINCE=0
alive slurmd || SLURMD_SINCE=$(($(date +%s) - 1))
start slurmd slurmd -D -f "$SLURM_CONF"

# Ready = the node is schedulable and its state comes from the slurmd started above (not from
# the state slurmctld recovered from an earlier run).
node_ready() {
    local s since
    alive slurmd || die "slurmd exited during start-up"
    s=$(sinfo -h -N -n "$NODE" -o %t 2>/dev/null | head -n 1)
    [[ $s == idle || $s == mix || $s == alloc ]] || return 1
    since=$(scontrol show node "$NODE" 2>/dev/null | grep -o 'SlurmdStartTime=[^ ]*' | cut -d= -f2)
    [[ -n $since && $since != None ]] || return 1
    (($(date -d "$since" +%s 2>/dev/null || echo 0) >= SLURMD_SINCE))
}
deadline=$((SECONDS + WAIT_S))
until node_ready; do
    if ((SECONDS >= deadline)); then
        sinfo -N -l >&2 || true
        scontrol show node "$NODE" >&2 || true
        die "node $NODE not idle after $WAIT_S s"
    fi
    sleep 0.5
done
log "node $NODE is $(sinfo -h -N -n "$NODE" -o %t): $(sinfo -h -N -n "$NODE" -o '%c CPUs, %m MB, %G')"
log "cluster $CLUSTER up in $(since "$T0") s (state: $STATE; SLURM_CONF=$SLURM_CONF)"
echo "ITERMASK_SLURM_DIR=$STATE"
