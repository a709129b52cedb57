"""Workload for `cargo xtask bench`: a real interpreter building and freeing large structures.

    python3 churn.py MS

Runs a short untimed warm-up, then whole iterations for MS milliseconds of CLOCK_MONOTONIC, and
prints `RESULT iters=N ns=ELAPSED ns_per_iter=X` on stderr. The timed loop is bracketed by
madvise(NULL, 0, MADV_NORMAL) calls, as in workloads.c, so a tracer's output shows where it is.
"""

import ctypes
import sys
import time

libc = ctypes.CDLL(None, use_errno=True)
libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]


def marker():
    libc.madvise(None, 0, 0)


def once():
    # Many small objects (pymalloc arenas), a big dict (one large resized table), and large
    # buffers (malloc'd above glibc's mmap threshold): then all of it freed.
    records = [{"id": i, "name": str(i), "tags": (i, i * 2)} for i in range(60_000)]
    index = {r["name"]: r for r in records}
    blobs = [bytearray(256 * 1024 + 4096 * i) for i in range(16)]
    text = ",".join(index.keys())
    del records, index, blobs, text


def main():
    limit = int(sys.argv[1]) * 1_000_000
    start = time.monotonic_ns()
    while time.monotonic_ns() - start < 50_000_000:
        once()
    marker()
    iters = 0
    start = time.monotonic_ns()
    while True:
        once()
        iters += 1
        elapsed = time.monotonic_ns() - start
        if elapsed >= limit:
            break
    marker()
    print(f"RESULT iters={iters} ns={elapsed} ns_per_iter={elapsed / iters:.2f}", file=sys.stderr)


main()
