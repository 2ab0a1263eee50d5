#!/usr/bin/env python3
"""Small-file workloads for compare.sh: create N files of 100 bytes with P processes, or
stat them all. Prints one line: "<what> <count> <seconds> <per second>"."""
import os
import sys
import time
from multiprocessing import Process

PAYLOAD = b"x" * 100


def create(root, start, count):
    d = os.path.join(root, "p%d" % start)
    os.makedirs(d, exist_ok=True)
    for i in range(count):
        fd = os.open(os.path.join(d, "f%d" % i), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, PAYLOAD)
        os.close(fd)


def stat_all(root, procs, per):
    for p in range(procs):
        d = os.path.join(root, "p%d" % p)
        for i in range(per):
            os.lstat(os.path.join(d, "f%d" % i))


def main():
    what, root, count, procs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    per = count // procs
    t = time.perf_counter()
    if what == "create":
        ps = [Process(target=create, args=(root, p, per)) for p in range(procs)]
        for p in ps:
            p.start()
        for p in ps:
            p.join()
            if p.exitcode != 0:
                sys.exit("a creating process failed")
    elif what == "stat":
        stat_all(root, procs, per)
    else:
        sys.exit("usage: files.py create|stat ROOT COUNT PROCS")
    s = time.perf_counter() - t
    print("%s %d %.3f %.0f" % (what, count, s, count / s))


if __name__ == "__main__":
    main()
