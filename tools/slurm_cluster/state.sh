# Sourced by up.sh and down.sh (not run on its own): where the test cluster's state lives.
#
# The state directory is private to the root user who started the cluster: up.sh creates it
# with `mktemp -d` (a name no other user can predict and create first), writes a marker file
# into it, and records its path in a pointer file only root can write ($ITERMASK_SLURM_POINTER,
# default /run/itermask-slurm.state, mode 0600). A directory is used only when it passes
# state_check: a real directory (no symlink) owned by root, not writable by group or others,
# every parent owned by root and not writable by others unless sticky (/tmp), and holding the
# marker (owned by root, mode 0600, naming this directory). A directory another user made, or
# one up.sh did not make, is refused, never used or deleted.
#   ITERMASK_SLURM_DIR      use this directory instead of the pointer's (it must pass the check,
#                           or not exist yet: then up.sh creates it with mkdir -m 0700, which
#                           fails if someone else created it first)
#   ITERMASK_SLURM_POINTER  the pointer file (default /run/itermask-slurm.state)

SLURM_POINTER=${ITERMASK_SLURM_POINTER:-/run/itermask-slurm.state}
SLURM_MARKER_NAME=.itermask-slurm-state

# state_owner_ok PATH: PATH is owned by root and (for a directory) not writable by group or
# others, unless it is a sticky directory (like /tmp) and ALLOW_STICKY=1.
state_owner_ok() {
    local path=$1 allow_sticky=${2:-0} uid mode
    uid=$(stat -c %u -- "$path" 2>/dev/null) || return 1
    mode=$(stat -c %a -- "$path" 2>/dev/null) || return 1
    [[ $uid == 0 ]] || return 1
    if (( (8#$mode & 8#022) != 0 )); then
        [[ $allow_sticky == 1 && -d $path ]] && (( (8#$mode & 8#1000) != 0 )) || return 1
    fi
}

# state_check DIR: print why DIR may not be used as the state directory (nothing: it may).
state_check() {
    local dir=$1 parent marker
    [[ $dir == /* ]] || { echo "'$dir' is not an absolute path"; return 1; }
    [[ -L $dir ]] && { echo "'$dir' is a symbolic link"; return 1; }
    [[ -d $dir ]] || { echo "'$dir' is not a directory"; return 1; }
    state_owner_ok "$dir" || { echo "'$dir' is not owned by root or is writable by other users (owner $(stat -c %U -- "$dir"), mode $(stat -c %a -- "$dir"))"; return 1; }
    parent=$(dirname -- "$dir")
    while :; do
        [[ -L $parent ]] && { echo "parent '$parent' is a symbolic link"; return 1; }
        state_owner_ok "$parent" 1 || { echo "parent '$parent' is not owned by root or is writable by other users"; return 1; }
        [[ $parent == / ]] && break
        parent=$(dirname -- "$parent")
    done
    marker=$dir/$SLURM_MARKER_NAME
    [[ -f $marker && ! -L $marker ]] || { echo "'$dir' has no marker $SLURM_MARKER_NAME: tools/slurm_cluster/up.sh did not create it"; return 1; }
    [[ $(stat -c '%u %a' -- "$marker") == "0 600" ]] || { echo "marker '$marker' is not root's with mode 0600"; return 1; }
    [[ "$(cat -- "$marker")" == "itermask-slurm-state $dir" ]] || { echo "marker '$marker' names another directory"; return 1; }
}

# state_from_pointer: print the directory recorded in the pointer file (nothing if none).
# The pointer must be a regular file owned by root with mode 0600.
state_from_pointer() {
    [[ -e $SLURM_POINTER || -L $SLURM_POINTER ]] || return 0
    if [[ -L $SLURM_POINTER || ! -f $SLURM_POINTER || $(stat -c '%u %a' -- "$SLURM_POINTER") != "0 600" ]]; then
        echo "slurm: refusing pointer file $SLURM_POINTER (not a regular file owned by root with mode 0600)" >&2
        return 1
    fi
    head -n 1 -- "$SLURM_POINTER"
}

# state_create [DIR]: create a new private state directory (DIR, or mktemp -d under $TMPDIR or
# /tmp), write its marker and point the pointer file at it; print its path.
state_create() {
    local dir=${1:-}
    if [[ -n $dir ]]; then
        mkdir -m 0700 -- "$dir" || return 1   # fails if the name exists (someone made it first)
    else
        dir=$(mktemp -d "${TMPDIR:-/tmp}/itermask-slurm.XXXXXXXXXX") || return 1
    fi
    (umask 077; echo "itermask-slurm-state $dir" > "$dir/$SLURM_MARKER_NAME")
    state_write_pointer "$dir" || return 1
    echo "$dir"
}

# state_write_pointer DIR: record DIR in the pointer file (written to a temporary, renamed).
state_write_pointer() {
    local tmp
    tmp=$(umask 077; mktemp "$SLURM_POINTER.XXXXXX") || return 1
    echo "$1" > "$tmp" && chmod 600 "$tmp" && mv -f -- "$tmp" "$SLURM_POINTER"
}

# state_forget DIR: remove the pointer file if it names DIR.
state_forget() {
    [[ -f $SLURM_POINTER && ! -L $SLURM_POINTER && "$(head -n 1 -- "$SLURM_POINTER")" == "$1" ]] &&
        rm -f -- "$SLURM_POINTER"
    return 0
}
