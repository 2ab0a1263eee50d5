#!/usr/bin/env bash
# Benchmark (not a test): tidefs send/receive against btrfs send/receive, in one run.
#
#   T100k = 100 dirs x 10 subdirs x 100 files of 100 random bytes
#   1. full send of T100k to /dev/null             (target: tidefs <= 0.5 x btrfs)
#   2. full receive of that stream                  (target: tidefs <= 0.33 x btrfs)
#   3. incremental send of 12 changes, whole process (target: <= 20 ms; the same at
#      1,000,000 files: crates/tidefs/bench/many_files.sh)
#   4. send of a new 2 GiB file, throughput, page cache dropped first (target: >= btrfs)
#
# Needs root (loop mount of a btrfs image) and btrfs-progs. Usage:
#   crates/tidefs-send/bench/compare.sh [WORKDIR]    (TIDEFS=path/to/tidefs, BIG_MIB=2048)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
WORK=${1:-$(mktemp -d /tmp/tidefs-send-bench.XXXXXX)}
BIG_MIB=${BIG_MIB:-2048}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
TIDEFS=${TIDEFS:-$TARGET/release/tidefs}
if [ ! -x "$TIDEFS" ]; then
    (cd "$ROOT" && cargo build --release -p tidefs)
fi
command -v mkfs.btrfs >/dev/null || { echo "btrfs-progs missing (apt-get install -y btrfs-progs)"; exit 1; }
mkdir -p "$WORK"
MNT="$WORK/mnt"
cleanup() {
    mountpoint -q "$MNT" && umount "$MNT" || true
    [ -n "${LOOPDEV:-}" ] && losetup -d "$LOOPDEV" 2>/dev/null || true
}
trap cleanup EXIT

now() { date +%s.%N; }
elapsed() { echo "$2 - $1" | bc -l | xargs printf "%.3f"; }
timeit() { local t0; t0=$(now); "$@"; elapsed "$t0" "$(now)"; }

echo "== generating T100k in $WORK/t100k"
rm -rf "$WORK/t100k"
python3 - "$WORK/t100k" <<'PY'
import os, sys
root = sys.argv[1]
for d in range(100):
    for s in range(10):
        p = os.path.join(root, f"d{d}", f"s{s}")
        os.makedirs(p)
        for f in range(100):
            with open(os.path.join(p, f"f{f}"), "wb") as fh:
                fh.write(os.urandom(100))
PY
python3 - "$WORK/big.bin" "$BIG_MIB" <<'PY'
import os, sys
with open(sys.argv[1], "wb") as f:
    block = os.urandom(1 << 20)
    for i in range(int(sys.argv[2])):
        f.write(block[i % 97:] + block[:i % 97])
PY
sync

echo "== btrfs"
truncate -s 12G "$WORK/btrfs.img"
mkfs.btrfs -q -f "$WORK/btrfs.img"
mkdir -p "$MNT"
mount -o loop "$WORK/btrfs.img" "$MNT"
btrfs -q subvolume create "$MNT/src"
cp -a "$WORK/t100k/." "$MNT/src/"
btrfs -q subvolume snapshot -r "$MNT/src" "$MNT/s1"
sync
B_SEND=$(timeit sh -c "btrfs -q send '$MNT/s1' > /dev/null")
btrfs -q send -f "$WORK/btrfs-s1.stream" "$MNT/s1"
mkdir -p "$MNT/recv"
sync; echo 3 > /proc/sys/vm/drop_caches || true
B_RECV=$(timeit sh -c "btrfs -q receive -f '$WORK/btrfs-s1.stream' '$MNT/recv' && sync")
for i in $(seq 0 11); do echo "change $i" > "$MNT/src/d$i/s0/f$i"; done
btrfs -q subvolume snapshot -r "$MNT/src" "$MNT/s2"
sync
B_INC=$(timeit sh -c "btrfs -q send -p '$MNT/s1' '$MNT/s2' > /dev/null")
cp "$WORK/big.bin" "$MNT/src/big.bin"
btrfs -q subvolume snapshot -r "$MNT/src" "$MNT/s3"
# Both sides read the big file cold: a send usually runs long after the data was written
# (and tidefs writes bulk data around the page cache, btrfs through it).
sync; echo 3 > /proc/sys/vm/drop_caches || true
B_BIG=$(timeit sh -c "btrfs -q send -p '$MNT/s2' '$MNT/s3' > /dev/null")

echo "== tidefs"
P1="$WORK/pool1"; P2="$WORK/pool2"
rm -rf "$P1" "$P2"
"$TIDEFS" --pool "$P1" init >/dev/null
"$TIDEFS" --pool "$P1" import "$WORK/t100k" src >/dev/null
"$TIDEFS" --pool "$P1" snapshot create src@s1 >/dev/null
T_SEND=$(timeit sh -c "'$TIDEFS' --pool '$P1' send src@s1 -q -f /dev/null")
"$TIDEFS" --pool "$P1" send src@s1 -q -f "$WORK/tidefs-s1.stream"
"$TIDEFS" --pool "$P2" init >/dev/null
T_RECV=$(timeit sh -c "'$TIDEFS' --pool '$P2' receive dst -q -f '$WORK/tidefs-s1.stream'")
echo "   (tidefs receive of the btrfs stream:"
T_RECV_B=$(timeit sh -c "'$TIDEFS' --pool '$P2' receive fromb -q -f '$WORK/btrfs-s1.stream'")
for i in $(seq 0 11); do echo "change $i" > "$WORK/chg"; "$TIDEFS" --pool "$P1" put "$WORK/chg" "src:/d$i/s0/f$i.new" >/dev/null; done
"$TIDEFS" --pool "$P1" snapshot create src@s2 >/dev/null
T_INC=$(timeit sh -c "'$TIDEFS' --pool '$P1' send -p src@s1 src@s2 -q -f /dev/null")
"$TIDEFS" --pool "$P1" put "$WORK/big.bin" src:/big.bin >/dev/null
"$TIDEFS" --pool "$P1" snapshot create src@s3 >/dev/null
sync; echo 3 > /proc/sys/vm/drop_caches || true
T_BIG=$(timeit sh -c "'$TIDEFS' --pool '$P1' send -p src@s2 src@s3 -q -f /dev/null")

ratio() { echo "$1 / $2" | bc -l | xargs printf "%.2f"; }
mibs() { echo "$BIG_MIB / $1" | bc -l | xargs printf "%.0f"; }
echo
printf "%-44s %10s %10s %8s  %s\n" "measure (seconds)" "tidefs" "btrfs" "ratio" "target"
printf "%-44s %10s %10s %8s  %s\n" "full send T100k > /dev/null" "$T_SEND" "$B_SEND" "$(ratio "$T_SEND" "$B_SEND")" "<= 0.50"
printf "%-44s %10s %10s %8s  %s\n" "full receive T100k" "$T_RECV" "$B_RECV" "$(ratio "$T_RECV" "$B_RECV")" "<= 0.33"
printf "%-44s %10s %10s %8s  %s\n" "tidefs receive of the btrfs stream" "$T_RECV_B" "-" "-" ""
printf "%-44s %10s %10s %8s  %s\n" "incremental send, 12 changes (whole process)" "$T_INC" "$B_INC" "$(ratio "$T_INC" "$B_INC")" "<= 0.020 s"
printf "%-44s %10s %10s %8s  %s\n" "send new ${BIG_MIB} MiB file" "$T_BIG" "$B_BIG" "$(ratio "$T_BIG" "$B_BIG")" ""
printf "%-44s %10s %10s %8s  %s\n" "  throughput MiB/s" "$(mibs "$T_BIG")" "$(mibs "$B_BIG")" "" ">= btrfs"
