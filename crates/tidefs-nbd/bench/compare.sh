#!/usr/bin/env bash
# Compares the tidefs NBD server with qemu-nbd, in one run, on this machine:
#   - sequential write of a large random image with nbdcopy (flushed at the end),
#   - sequential read of it back with nbdcopy (to null:),
#   - random 4 KiB write IOPS with the crate's load driver (benches/random_write.rs).
# Servers: tidefs with a memory export, tidefs with a file export, and qemu-nbd serving a
# raw file; both files live in the same directory, all servers listen on Unix sockets.
#
# Needs: nbdcopy (libnbd-bin), qemu-nbd (qemu-utils), cargo.
# Knobs (environment): IMAGE_MIB (default 1024), SECONDS_RANDOM (default 10),
# CONNECTIONS (default 4), QUEUE_DEPTH (default 16), READ_RUNS (default 3), BENCH_DIR (default: a new directory
# under /var/tmp, removed at the end).
set -euo pipefail

IMAGE_MIB=${IMAGE_MIB:-1024}
SECONDS_RANDOM=${SECONDS_RANDOM:-10}
CONNECTIONS=${CONNECTIONS:-4}
READ_RUNS=${READ_RUNS:-3}
QUEUE_DEPTH=${QUEUE_DEPTH:-16}
REPO=$(cd "$(dirname "$0")/../../.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}

for tool in nbdcopy nbdinfo qemu-nbd cargo; do
    command -v "$tool" >/dev/null || { echo "compare.sh: $tool is missing" >&2; exit 1; }
done

if [[ -n ${BENCH_DIR:-} ]]; then
    WORK=$BENCH_DIR
    mkdir -p "$WORK"
else
    WORK=$(mktemp -d /var/tmp/tidefs-nbd-bench.XXXXXX)
fi
SERVER_PID=
cleanup() {
    if [[ -n $SERVER_PID ]]; then kill "$SERVER_PID" 2>/dev/null || true; fi
    if [[ -z ${BENCH_DIR:-} ]]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT

echo "== building (release)"
(cd "$REPO" && cargo build --quiet --release -p tidefs-nbd --example nbd_serve)
(cd "$REPO" && cargo bench --quiet -p tidefs-nbd --bench random_write --no-run 2>/dev/null)
NBD_SERVE=$TARGET_DIR/release/examples/nbd_serve

echo "== making a ${IMAGE_MIB} MiB random source image in $WORK"
head -c "$((IMAGE_MIB * 1024 * 1024))" /dev/urandom >"$WORK/source.raw"

now() { date +%s.%N; }
mib_per_s() { awk -v mib="$IMAGE_MIB" -v t0="$1" -v t1="$2" 'BEGIN { printf "%.0f", mib / (t1 - t0) }'; }

# Waits (bounded) until the server answers on its socket.
wait_for_socket() {
    for _ in $(seq 1 200); do
        if nbdinfo --size "nbd+unix:///disk?socket=$1" >/dev/null 2>&1; then return 0; fi
        sleep 0.05
    done
    echo "compare.sh: server on $1 did not come up" >&2
    exit 1
}

RESULTS=()

# measure NAME: the server is already running on $WORK/nbd.sock.
measure() {
    local name=$1 uri="nbd+unix:///disk?socket=$WORK/nbd.sock" t0 t1 write read iops multi
    wait_for_socket "$WORK/nbd.sock"
    multi=$(nbdinfo --can multi-conn "$uri" && echo yes || echo no)
    t0=$(now); nbdcopy --flush "$WORK/source.raw" "$uri"; t1=$(now)
    write=$(mib_per_s "$t0" "$t1")
    # Reads are repeated (the first one can be disturbed by the write just before);
    # the best of READ_RUNS is reported.
    read=0
    for _ in $(seq 1 "$READ_RUNS"); do
        t0=$(now); nbdcopy "$uri" null:; t1=$(now)
        read=$(awk -v a="$read" -v b="$(mib_per_s "$t0" "$t1")" 'BEGIN { print (b > a ? b : a) }')
    done
    iops=$(cd "$REPO" && cargo bench --quiet -p tidefs-nbd --bench random_write -- \
        --unix "$WORK/nbd.sock" --export disk --connections "$CONNECTIONS" \
        --queue-depth "$QUEUE_DEPTH" --seconds "$SECONDS_RANDOM" 2>/dev/null |
        sed -n 's/.*: \([0-9]*\) IOPS.*/\1/p')
    RESULTS+=("$(printf '%-20s %16s %15s %19s %11s' "$name" "$write" "$read" "$iops" "$multi")")
    echo "   $name: write $write MiB/s, read $read MiB/s, random 4K writes $iops IOPS"
}

stop_server() {
    kill "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
    rm -f "$WORK/nbd.sock"
}

echo "== tidefs, memory export"
"$NBD_SERVE" --unix "$WORK/nbd.sock" --memory "${IMAGE_MIB}M" --name disk 2>/dev/null &
SERVER_PID=$!
measure "tidefs (memory)"
stop_server

echo "== tidefs, file export"
rm -f "$WORK/target.raw"; truncate -s "${IMAGE_MIB}M" "$WORK/target.raw"
"$NBD_SERVE" --unix "$WORK/nbd.sock" --file "$WORK/target.raw" --name disk 2>/dev/null &
SERVER_PID=$!
measure "tidefs (file)"
stop_server

echo "== qemu-nbd, raw file"
rm -f "$WORK/target.raw"; truncate -s "${IMAGE_MIB}M" "$WORK/target.raw"
qemu-nbd --format=raw --export-name=disk --socket="$WORK/nbd.sock" --persistent \
    --shared=16 "$WORK/target.raw" 2>/dev/null &
SERVER_PID=$!
measure "qemu-nbd (file)"
stop_server

echo
echo "image ${IMAGE_MIB} MiB; random writes: $CONNECTIONS connections x $QUEUE_DEPTH in flight, ${SECONDS_RANDOM} s; $(nproc) CPUs"
printf '%-20s %16s %15s %19s %11s\n' "server" "seq write MiB/s" "seq read MiB/s*" "rand 4K write IOPS" "multi-conn"
printf '%s\n' "${RESULTS[@]}"
echo "* best of $READ_RUNS reads; file-backed reads come from the page cache, as the image was just written"
