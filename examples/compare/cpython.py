"""CPython's side of `cargo run --release -p compare`: the same workloads on
concurrent.futures.ThreadPoolExecutor and ProcessPoolExecutor (pool sizes as Python's
defaults: threads min(32, cpus + 4), processes cpus). The Rust tool runs this script once
per repetition, between its own measurements, and reads one JSON object per line:
{"workload": ..., "backend": ..., "wall": seconds, "cpu": seconds}.

Usage: python3 cpython.py SPEC_JSON   (the workloads and their sizes, written by the tool)
"""

import concurrent.futures as cf
import json
import multiprocessing as mp
import os
import sys
import time


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def io_wait(ms):
    time.sleep(ms / 1000)
    return ms


def tiny(x):
    return (x * 2654435761) % (1 << 64)


def cheap(x):
    return (x * x + 7) % 1000003


def checksum(b):
    return len(b) + b[0]


def cpu_seconds(pids):
    """CPU time of this process and of `pids`: the sum over their threads of the time on a
    CPU the scheduler accounts (/proc/PID/task/*/schedstat), as the Rust side measures."""
    total = 0.0
    for pid in ["self"] + [str(p) for p in pids]:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                    total += int(f.read().split()[0]) / 1e9
            except (OSError, ValueError, IndexError):
                pass
    return total


def prepare(w):
    """The payload workload's arguments, built before the clock starts: one buffer per task,
    as on the Rust side."""
    if w["kind"] != "payload":
        return None
    size, count = w["args"]
    return [bytes([1]) * size for _ in range(count)]


def run(pool, w, blobs):
    kind, args = w["kind"], w["args"]
    if kind == "map":
        n, chunk = args
        items = range(n)
        if isinstance(pool, cf.ProcessPoolExecutor):
            return sum(1 for _ in pool.map(cheap, items, chunksize=chunk))
        return sum(1 for _ in pool.map(cheap, items))
    func = {"cpu": fib, "skewed": fib, "io": io_wait, "tiny": tiny, "payload": checksum}[kind]
    if kind == "payload":
        # Each buffer is handed over and no reference kept here: it is freed inside the timed
        # part once its task is done, as the Rust rows free theirs (their tasks take them by
        # value).
        futures = []
        while blobs:
            futures.append(pool.submit(func, blobs.pop()))
    else:
        futures = [pool.submit(func, a) for a in args]
    return sum(1 for f in futures if f.result() is not None)


def main():
    spec = json.loads(sys.argv[1])
    cpus = os.cpu_count() or 1
    pools = {
        "cpython-threads": cf.ThreadPoolExecutor(min(32, cpus + 4)),
        "cpython-processes": cf.ProcessPoolExecutor(cpus, mp_context=mp.get_context("fork")),
    }
    for pool in pools.values():  # start the workers before measuring
        list(pool.map(tiny, range(64)))
    for w in spec["workloads"]:
        for name, pool in pools.items():
            pids = list(getattr(pool, "_processes", {}) or {})
            if spec.get("warmup"):
                run(pool, w, prepare(w))
            blobs = prepare(w)
            c, t = cpu_seconds(pids), time.perf_counter()
            run(pool, w, blobs)
            wall, cpu = time.perf_counter() - t, cpu_seconds(pids) - c
            print(json.dumps({"workload": w["key"], "backend": name, "wall": wall, "cpu": cpu}))
            sys.stdout.flush()
    for pool in pools.values():
        pool.shutdown()


if __name__ == "__main__":
    main()
