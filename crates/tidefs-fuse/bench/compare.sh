#!/usr/bin/env bash
# Benchmark: a tidefs FUSE mount against a kernel file system (btrfs on a loop device) in
# the same run, on the same disk. Not a test: it prints figures side by side. tidefs runs
# twice: as mounted by default (requests through per-CPU io_uring queues where the kernel
# offers them) and with --no-io-uring (requests read from /dev/fuse).
#
#   sudo crates/tidefs-fuse/bench/compare.sh [WORKDIR]      (root: loop mounts, drop_caches)
#
# Workloads (targets from issue 4):
#   create 100,000 files of 100 bytes, 1 then 2 processes   tidefs >= 0.5x kernel rate
#   stat all 100,000, warm and cold (remount + drop_caches) tidefs >= 0.5x kernel rate
#   sequential write of a 4 GiB file in 1 MiB writes (+fsync), then cold read   >= 1 GB/s
#   tar -x of a ~100 MB source tree (then made durable)      tidefs <= 2x kernel time
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
W=${1:-/var/tmp/tidefs-bench}
FILES=${FILES:-100000}
BIG_MIB=${BIG_MIB:-4096}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}

[ "$(id -u)" = 0 ] || { echo "compare.sh: run as root (loop mount, drop_caches)" >&2; exit 1; }
cargo build --release -q -p tidefs --manifest-path "$REPO/Cargo.toml"
TIDEFS="$CARGO_TARGET_DIR/release/tidefs"

cleanup() {
    for t in tidefs tidefs-dev; do
        "$TIDEFS" umount "$W/$t" 2>/dev/null || fusermount3 -u -z "$W/$t" 2>/dev/null || true
    done
    umount "$W/btrfs" 2>/dev/null || true
}
trap cleanup EXIT
cleanup
rm -rf "$W"
mkdir -p "$W/tidefs" "$W/tidefs-dev" "$W/btrfs"
URING=$(cat /sys/module/fuse/parameters/enable_uring 2>/dev/null || echo "absent")

# The source tree for tar: the cargo registry's sources if present, else /usr/include.
SRC=$HOME/.cargo/registry/src
[ -d "$SRC" ] || SRC=/usr/include
tar -cf "$W/src.tar" -C "$(dirname "$SRC")" "$(basename "$SRC")"
TAR_MB=$(( $(stat -c %s "$W/src.tar") / 1000000 ))

truncate -s 8G "$W/btrfs.img"
mkfs.btrfs -q "$W/btrfs.img"

mount_fs() { # fs
    case $1 in
    btrfs) mount -o loop,noatime "$W/btrfs.img" "$W/btrfs" ;;
    tidefs) "$TIDEFS" --pool "$W/pool" mount --background home "$W/tidefs" >/dev/null ;;
    tidefs-dev)
        "$TIDEFS" --pool "$W/pool-dev" mount --background --no-io-uring home "$W/tidefs-dev" \
            >/dev/null
        ;;
    esac
}
unmount_fs() { # fs
    case $1 in
    btrfs) umount "$W/btrfs" ;;
    tidefs*) "$TIDEFS" umount "$W/$1" ;;
    esac
}
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }
# Makes everything written so far durable: syncfs for btrfs; an fsync (one commit of the
# whole pool) for tidefs, where FUSE has no syncfs.
durable() { # fs dir
    case $1 in
    btrfs) sync -f "$2" ;;
    tidefs*) touch "$2/.durable" && sync "$2/.durable" ;;
    esac
}
secs() { python3 -c "import time; print('%.6f' % time.time())"; }
elapsed() { python3 -c "print('%.3f' % ($(secs) - $1))"; }

declare -A R
for fs in btrfs tidefs tidefs-dev; do
    d=$W/$fs
    mount_fs $fs
    r1=$(python3 "$HERE/files.py" create "$d/c1" "$FILES" 1)
    r2=$(python3 "$HERE/files.py" create "$d/c2" "$FILES" 2)
    durable $fs "$d"
    R[$fs.create1]=$(echo "$r1" | awk '{print $4}')
    R[$fs.create2]=$(echo "$r2" | awk '{print $4}')
    # Warm: a second pass, once the first has filled the caches.
    python3 "$HERE/files.py" stat "$d/c1" "$FILES" 1 >/dev/null
    R[$fs.statwarm]=$(python3 "$HERE/files.py" stat "$d/c1" "$FILES" 1 | awk '{print $4}')
    unmount_fs $fs
    drop_caches
    mount_fs $fs
    R[$fs.statcold]=$(python3 "$HERE/files.py" stat "$d/c1" "$FILES" 1 | awk '{print $4}')
    rm -rf "$d/c1" "$d/c2"

    t=$(secs)
    dd if=/dev/zero of="$d/big" bs=1M count="$BIG_MIB" conv=fsync status=none
    R[$fs.write]=$(python3 -c "print('%.2f' % ($BIG_MIB * 1048576 / 1e9 / ($(secs) - $t)))")
    unmount_fs $fs
    drop_caches
    mount_fs $fs
    t=$(secs)
    dd if="$d/big" of=/dev/null bs=1M status=none
    R[$fs.read]=$(python3 -c "print('%.2f' % ($BIG_MIB * 1048576 / 1e9 / ($(secs) - $t)))")
    rm -f "$d/big"
    durable $fs "$d"

    t=$(secs)
    tar -xf "$W/src.tar" -C "$d"
    R[$fs.tar]=$(elapsed "$t")
    durable $fs "$d"
    R[$fs.tarsync]=$(elapsed "$t")
    unmount_fs $fs
done

ratio() { python3 -c "print('%.2f' % ($1 / $2))"; }
echo "tidefs: default mount (fuse enable_uring: $URING); tidefs-dev: --no-io-uring"
printf '%-46s %10s %10s %7s %10s %7s\n' "workload (kernel fs: btrfs on loop)" btrfs tidefs ratio \
    tidefs-dev ratio
row() {
    printf '%-46s %10s %10s %7s %10s %7s\n' "$1" "${R[btrfs.$2]}" \
        "${R[tidefs.$2]}" "$(ratio "${R[tidefs.$2]}" "${R[btrfs.$2]}")" \
        "${R[tidefs-dev.$2]}" "$(ratio "${R[tidefs-dev.$2]}" "${R[btrfs.$2]}")"
}
row "create $FILES x 100 B, 1 proc (files/s)" create1
row "create $FILES x 100 B, 2 procs (files/s)" create2
row "stat $FILES, warm (stats/s)" statwarm
row "stat $FILES, cold (stats/s)" statcold
row "write ${BIG_MIB} MiB, 1 MiB writes + fsync (GB/s)" write
row "read ${BIG_MIB} MiB cold (GB/s)" read
row "tar -x ${TAR_MB} MB (s)" tar
row "tar -x ${TAR_MB} MB + durable (s)" tarsync
