#!/usr/bin/env bash
# Benchmark (not a test): whole-process timings of the CLI on a subvolume of many files
# (default 1,000,000; DIRS=100 gives 100,000):
#   - `tidefs snapshot create` (target: <= 10 ms)
#   - `tidefs diff` of two snapshots 12 paths apart (target: <= 50 ms)
#   - `tidefs send -p` of those 12 changes to /dev/null (target: <= 20 ms)
#
#   1. a host tree of DIRS dirs x 1000 files of 16 bytes, imported (`tidefs import`)
#   2. snapshot src@a; 12 changes with the CLI: 4 creates (one a directory), 2 modifies,
#      2 deletes, a rename, a move to another directory, and (through a FUSE mount, when
#      one is possible) a chmod of a file and of a directory; snapshot src@b
#   3. each command RUNS times (default 9): best and median; then, for information, the
#      send 3 times after dropping the page cache (as root)
#
# Usage: crates/tidefs/bench/many_files.sh [WORKDIR]
#        (TIDEFS=path/to/tidefs, DIRS=1000, RUNS=9, KEEP=1 keeps WORKDIR; the tree and
#        pool are reused when WORKDIR already holds them)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
DIRS=${DIRS:-1000}
WORK=${1:-/var/tmp/tidefs-cli-$DIRS}
RUNS=${RUNS:-9}
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
    echo "== generating $DIRS x 1000 files in $WORK/tree"
    rm -rf "$WORK/tree"
    python3 - "$WORK/tree" "$DIRS" <<'PY'
import os, sys
root = sys.argv[1]
for d in range(int(sys.argv[2])):
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
    echo "   import of $((DIRS * 1000)) files: $(echo "$(now) - $t0" | bc -l | xargs printf "%.1f") s"
    t snapshot create src@a >/dev/null

    echo "== 12 changes"
    printf 'created\n' > "$WORK/small"
    head -c 100000 /dev/urandom > "$WORK/bigger"
    t put "$WORK/small" src:/d0/new1 >/dev/null                # 1 create
    t put "$WORK/small" src:/d$((DIRS / 2))/new2 >/dev/null     # 2 create
    t mkdir src:/newdir >/dev/null                             # 3 create a directory
    t put "$WORK/small" src:/newdir/f >/dev/null               # 4 create in it
    t put "$WORK/small" src:/d2/f2 >/dev/null                  # 5 modify
    t put "$WORK/bigger" src:/d3/f3 >/dev/null                 # 6 modify (grows)
    t rm src:/d4/f4 >/dev/null                                 # 7 delete
    t rm "src:/d$((DIRS - 1))/f999" >/dev/null                 # 8 delete
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

echo "== whole-process timings at $((DIRS * 1000)) files, $RUNS runs each"
python3 - "$TIDEFS" "$POOL" "$RUNS" "$DIRS" <<'PY'
import statistics, subprocess, sys, time
tidefs, pool, runs, dirs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
t = [tidefs, "--pool", pool]

def timed(cmd):
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return (time.perf_counter() - t0) * 1000

def report(what, times, target):
    best, median = min(times), statistics.median(times)
    verdict = "meets" if median <= target else "misses"
    print(f"   {what}: best {best:.1f} ms, median {median:.1f} ms "
          f"(target <= {target} ms: {verdict}); runs: " + " ".join(f"{x:.1f}" for x in times))

# Each snapshot is deleted again untimed, so every run creates a fresh one.
snaps = []
for i in range(runs):
    snaps.append(timed(t + ["snapshot", "create", f"src@bench{i}"]))
    subprocess.run(t + ["snapshot", "delete", f"src@bench{i}"], check=True, stdout=subprocess.DEVNULL)
report(f"snapshot create at {dirs * 1000} files", snaps, 10)
report(f"diff src@a src@b at {dirs * 1000} files", [timed(t + ["diff", "src@a", "src@b"]) for _ in range(runs)], 50)
send = t + ["send", "-p", "src@a", "src@b", "-q", "-f", "/dev/null"]
report(f"incremental send of 12 changes at {dirs * 1000} files", [timed(send) for _ in range(runs)], 20)
# For information: with the pool's pages out of the page cache (needs root).
cold = []
for _ in range(3):
    try:
        subprocess.run(["sync"], check=True)
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        break
    cold.append(timed(send))
if cold:
    print("   send with the page cache dropped first (ms): " + " ".join(f"{x:.1f}" for x in cold))
PY
if [ "${KEEP:-1}" != 1 ]; then rm -rf "$WORK"; fi
