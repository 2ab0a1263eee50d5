#!/usr/bin/env bash
# Benchmarks tidefs volumes served by `tidefs nbd serve` side by side with qemu-nbd serving
# a raw file in the same directory (same disk), in one run:
#   1. sequential write of a random image with nbdcopy (flushed at the end)
#   2. sequential read of it back with nbdcopy (best of READ_RUNS)
#   3. random 4 KiB writes (IOPS) with fio's nbd engine
#   4. the same random writes after 1 and while 100 snapshots of the volume are held
#      (tidefs only)
#   5. sequential overwrite of the whole volume right after a snapshot (every write is a
#      first write after a snapshot) against the same overwrite with no new snapshot
# Targets: 1 and 2 >= 0.8x qemu-nbd; 4 = 3; 5 >= 0.7x its no-snapshot figure.
#
# Needs: nbdcopy, nbdinfo (libnbd-bin), qemu-nbd (qemu-utils), fio with the nbd engine.
# Knobs: IMAGE_MIB (4096), SECONDS_RANDOM (15), READ_RUNS (2), FIO_JOBS (1: fio needs
# multi-conn for more, which qemu-nbd does not advertise on a writable export),
# FIO_DEPTH (32), BENCH_DIR (default: a new directory under /var/tmp, removed at the end).
set -euo pipefail

IMAGE_MIB=${IMAGE_MIB:-4096}
SECONDS_RANDOM=${SECONDS_RANDOM:-15}
READ_RUNS=${READ_RUNS:-2}
FIO_JOBS=${FIO_JOBS:-1}
FIO_DEPTH=${FIO_DEPTH:-32}
REPO=$(cd "$(dirname "$0")/../../.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}

for tool in nbdcopy nbdinfo qemu-nbd fio cargo; do
    command -v "$tool" >/dev/null || { echo "compare.sh: $tool is missing" >&2; exit 1; }
done
fio --enghelp 2>/dev/null | grep -qw nbd || { echo "compare.sh: fio has no nbd engine" >&2; exit 1; }

if [[ -n ${BENCH_DIR:-} ]]; then WORK=$BENCH_DIR; mkdir -p "$WORK"; else WORK=$(mktemp -d /var/tmp/tidefs-volume-bench.XXXXXX); fi
SERVER_PID=
stop_server() {
    if [[ -n $SERVER_PID ]]; then kill -TERM "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=; fi
}
cleanup() { stop_server; if [[ -z ${BENCH_DIR:-} ]]; then rm -rf "$WORK"; fi; }
trap cleanup EXIT

echo "== building tidefs (release)"
(cd "$REPO" && cargo build --quiet --release -p tidefs)
TIDEFS=$TARGET_DIR/release/tidefs

echo "== making a ${IMAGE_MIB} MiB random image in $WORK"
head -c "$((IMAGE_MIB * 1024 * 1024))" /dev/urandom >"$WORK/source.raw"

now() { date +%s.%N; }
mib_per_s() { awk -v mib="$IMAGE_MIB" -v t0="$1" -v t1="$2" 'BEGIN { printf "%.0f", mib / (t1 - t0) }'; }
wait_for() {
    for _ in $(seq 1 400); do nbdinfo --size "$1" >/dev/null 2>&1 && return 0; sleep 0.05; done
    echo "compare.sh: no server answers at $1" >&2; exit 1
}
seq_write() { local t0 t1; t0=$(now); nbdcopy --flush "$WORK/source.raw" "$1"; t1=$(now); mib_per_s "$t0" "$t1"; }
seq_read() {
    local best=0 t0 t1 r
    for _ in $(seq 1 "$READ_RUNS"); do
        t0=$(now); nbdcopy "$1" null:; t1=$(now); r=$(mib_per_s "$t0" "$t1")
        best=$(awk -v a="$best" -v b="$r" 'BEGIN { print (b > a ? b : a) }')
    done
    echo "$best"
}
rand_write() {
    fio --name=randwrite --ioengine=nbd --uri="$1" --rw=randwrite --bs=4k \
        --iodepth="$FIO_DEPTH" --numjobs="$FIO_JOBS" --group_reporting --time_based \
        --runtime="$SECONDS_RANDOM" --size="${IMAGE_MIB}M" --output-format=json 2>/dev/null |
        python3 -c 'import json,sys; s=sys.stdin.read(); print(round(json.loads(s[s.index("{"):])["jobs"][0]["write"]["iops"]))'
}

echo "== qemu-nbd, raw file"
truncate -s "${IMAGE_MIB}M" "$WORK/qemu.raw"
qemu-nbd -f raw -x disk --shared=16 -t --socket="$WORK/qemu.sock" "$WORK/qemu.raw" &
SERVER_PID=$!
Q="nbd+unix:///disk?socket=$WORK/qemu.sock"
wait_for "$Q"
Q_MULTI=$(nbdinfo --can multi-conn "$Q" && echo yes || echo no)
Q_WRITE=$(seq_write "$Q")
Q_READ=$(seq_read "$Q")
Q_IOPS=$(rand_write "$Q")
Q_REWRITE=$(seq_write "$Q")
stop_server
rm -f "$WORK/qemu.raw"

echo "== tidefs nbd serve, volume in a pool"
"$TIDEFS" --pool "$WORK/pool" init >/dev/null
"$TIDEFS" --pool "$WORK/pool" volume create disk --size "${IMAGE_MIB}M" >/dev/null
"$TIDEFS" --pool "$WORK/pool" nbd serve --socket "$WORK/tidefs.sock" 2>"$WORK/server.log" &
SERVER_PID=$!
T="nbd+unix:///disk?socket=$WORK/tidefs.sock"
wait_for "$T"
T_MULTI=$(nbdinfo --can multi-conn "$T" && echo yes || echo no)
T_WRITE=$(seq_write "$T")
T_READ=$(seq_read "$T")
T_IOPS=$(rand_write "$T")
T_REWRITE=$(seq_write "$T")
# Right after a snapshot every map node is shared, and the first write into each one pays
# for copying it; after one snapshot and after a hundred that cost is the same.
"$TIDEFS" --pool "$WORK/pool" volume snapshot disk@bench1 >/dev/null
T_IOPS_1SNAP=$(rand_write "$T")
for i in $(seq 2 100); do "$TIDEFS" --pool "$WORK/pool" volume snapshot "disk@bench$i" >/dev/null; done
T_IOPS_SNAP=$(rand_write "$T")
"$TIDEFS" --pool "$WORK/pool" volume snapshot disk@before-rewrite >/dev/null
T_REWRITE_SNAP=$(seq_write "$T")
stop_server
"$TIDEFS" --pool "$WORK/pool" fsck >/dev/null && FSCK=clean || FSCK=PROBLEMS

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
echo
echo "== results (${IMAGE_MIB} MiB, fio ${FIO_JOBS} jobs x depth ${FIO_DEPTH}, ${SECONDS_RANDOM} s)"
printf '%-44s %12s %12s %8s\n' "" "qemu-nbd" "tidefs" "ratio"
printf '%-44s %12s %12s %8s\n' "multi-conn advertised" "$Q_MULTI" "$T_MULTI" ""
printf '%-44s %12s %12s %8s\n' "sequential write, nbdcopy (MiB/s)" "$Q_WRITE" "$T_WRITE" "$(ratio "$T_WRITE" "$Q_WRITE")"
printf '%-44s %12s %12s %8s\n' "sequential read, nbdcopy (MiB/s)" "$Q_READ" "$T_READ" "$(ratio "$T_READ" "$Q_READ")"
printf '%-44s %12s %12s %8s\n' "random 4 KiB writes (IOPS)" "$Q_IOPS" "$T_IOPS" "$(ratio "$T_IOPS" "$Q_IOPS")"
printf '%-44s %12s %12s %8s\n' "sequential overwrite (MiB/s)" "$Q_REWRITE" "$T_REWRITE" "$(ratio "$T_REWRITE" "$Q_REWRITE")"
echo
printf '%-44s %12s %12s %8s\n' "tidefs with snapshots" "none" "snapshots" "ratio"
printf '%-44s %12s %12s %8s\n' "random 4 KiB writes, 1 snapshot (IOPS)" "$T_IOPS" "$T_IOPS_1SNAP" "$(ratio "$T_IOPS_1SNAP" "$T_IOPS")"
printf '%-44s %12s %12s %8s\n' "random 4 KiB writes, 100 snapshots (IOPS)" "$T_IOPS" "$T_IOPS_SNAP" "$(ratio "$T_IOPS_SNAP" "$T_IOPS")"
printf '%-44s %12s %12s %8s\n' "  100 snapshots against 1 snapshot" "$T_IOPS_1SNAP" "$T_IOPS_SNAP" "$(ratio "$T_IOPS_SNAP" "$T_IOPS_1SNAP")"
printf '%-44s %12s %12s %8s\n' "first write after snapshot, seq (MiB/s)" "$T_REWRITE" "$T_REWRITE_SNAP" "$(ratio "$T_REWRITE_SNAP" "$T_REWRITE")"
echo "pool after the run: fsck $FSCK"
