#!/usr/bin/env bash
# Benchmark (not a test): incremental send of 12 changes from a subvolume of 1,000,000
# files, timed as a whole process (target: <= 20 ms).
#
#   1. a host tree of 1000 dirs x 1000 files of 16 bytes, imported (`tidefs import`)
#   2. snapshot src@a; 12 changes with the CLI: 4 creates (one a directory), 2 modifies,
#      2 deletes, a rename, a move to another directory, and (through a FUSE mount, when
#      one is possible) a chmod of a file and of a directory; snapshot src@b
#   3. `tidefs send -p src@a src@b -f /dev/null`, RUNS times (default 5): best and median;
#      then, for information, 3 runs each after dropping the page cache (as root)
#
# Usage: crates/tidefs-send/bench/incremental_1m.sh [WORKDIR]
#        (TIDEFS=path/to/tidefs, RUNS=5, KEEP=1 keeps WORKDIR; the tree and pool are
#        reused when WORKDIR already holds them)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
WORK=${1:-/tmp/tidefs-inc1m}
RUNS=${RUNS:-5}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
TIDEFS=${TIDEFS:-$TARGET/release/tidefs}
if [ ! -x "$TIDEFS" ]; then
    (cd "$ROOT" && cargo build --release -p tidefs)
fi
mkdir -p "$WORK"
POOL="$WORK/pool"
t() { "$TIDEFS" --pool "$POOL" "$@"; }
now() { date +%s.%N; }

if [ ! -f "$WORK/tree.done" ]; then
    echo "== generating 1000 x 1000 files in $WORK/tree"
    rm -rf "$WORK/tree"
    python3 - "$WORK/tree" <<'PY'
import os, sys
root = sys.argv[1]
for d in range(1000):
    p = os.path.join(root, f"d{d}")
    os.makedirs(p)
    for f in range(1000):
        fd = os.open(os.path.join(p, f"f{f}"), os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, b"%015d\n" % (d * 1000 + f))
        os.close(fd)
PY
    touch "$WORK/tree.done"
fi

if [ ! -f "$WORK/pool.done" ]; then
    rm -rf "$POOL"
    t init >/dev/null
    echo "== importing"
    t0=$(now)
    t import "$WORK/tree" src >/dev/null
    echo "   import of 1,000,000 files: $(echo "$(now) - $t0" | bc -l | xargs printf "%.1f") s"
    t snapshot create src@a >/dev/null

    echo "== 12 changes"
    printf 'created\n' > "$WORK/small"
    head -c 100000 /dev/urandom > "$WORK/bigger"
    t put "$WORK/small" src:/d0/new1 >/dev/null                # 1 create
    t put "$WORK/small" src:/d500/new2 >/dev/null              # 2 create
    t mkdir src:/newdir >/dev/null                             # 3 create a directory
    t put "$WORK/small" src:/newdir/f >/dev/null               # 4 create in it
    t put "$WORK/small" src:/d2/f2 >/dev/null                  # 5 modify
    t put "$WORK/bigger" src:/d3/f3 >/dev/null                 # 6 modify (grows)
    t rm src:/d4/f4 >/dev/null                                 # 7 delete
    t rm src:/d999/f999 >/dev/null                             # 8 delete
    t mv src:/d6/f6 src:/d6/f6.renamed >/dev/null              # 9 rename
    t mv src:/d7/f7 src:/d8/f7.moved >/dev/null                # 10 move
    MNT="$WORK/mnt"
    mkdir -p "$MNT"
    if t mount src "$MNT" --background >/dev/null 2>&1; then
        chmod 600 "$MNT/d9/f9"                                 # 11 chmod a file
        chmod 700 "$MNT/d10"                                   # 12 chmod a directory
        t umount "$MNT" >/dev/null
    else
        echo "   (no FUSE mount here: a rename of a directory and a delete instead of the chmods)"
        t mv src:/d9 src:/d9.renamed >/dev/null                # 11
        t rm src:/d10/f10 >/dev/null                           # 12
    fi
    t snapshot create src@b >/dev/null
    touch "$WORK/pool.done"
fi

echo "== what changed (tidefs diff src@a src@b)"
t diff src@a src@b | sed 's/^/   /'
t send -p src@a src@b -q -f "$WORK/inc.stream"
echo "   stream: $(stat -c %s "$WORK/inc.stream") bytes, $(t receive --dump -f "$WORK/inc.stream" | wc -l) commands"

echo "== timing: tidefs send -p src@a src@b -f /dev/null, whole process, $RUNS runs"
python3 - "$TIDEFS" "$POOL" "$RUNS" <<'PY'
import statistics, subprocess, sys, time
tidefs, pool, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
cmd = [tidefs, "--pool", pool, "send", "-p", "src@a", "src@b", "-q", "-f", "/dev/null"]
times = []
for _ in range(runs):
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    times.append((time.perf_counter() - t0) * 1000)
print("   runs (ms): " + " ".join(f"{t:.1f}" for t in times))
best, median = min(times), statistics.median(times)
verdict = "meets" if median <= 20 else "misses"
print(f"   incremental send, 12 changes at 1,000,000 files: best {best:.1f} ms, median {median:.1f} ms "
      f"(target <= 20 ms: {verdict})")
# For information: with the pool's pages out of the page cache (needs root).
cold = []
for _ in range(3):
    try:
        subprocess.run(["sync"], check=True)
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        break
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    cold.append((time.perf_counter() - t0) * 1000)
if cold:
    print("   with the page cache dropped first (ms): " + " ".join(f"{t:.1f}" for t in cold))
PY
if [ "${KEEP:-1}" != 1 ]; then rm -rf "$WORK"; fi
