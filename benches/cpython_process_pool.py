"""CPython's side of `cargo bench --bench process_pool`: the same workloads on
concurrent.futures.ProcessPoolExecutor (and multiprocessing.Pool for `map`, with
chunksize 1000), two workers. Prints one `name value` line per measurement; the Rust bench
runs this script once per round, between its own measurements.

Usage: python3 cpython_process_pool.py ROUND_TRIPS TASKS MAP_ITEMS BIG_BYTES
"""

import concurrent.futures as cf
import multiprocessing as mp
import statistics
import sys
import time

WORKERS = 2


def trivial(x):
    return x + 1


def length(b):
    return len(b)


def start_to_first_result(method):
    t = time.perf_counter()
    with cf.ProcessPoolExecutor(WORKERS, mp_context=mp.get_context(method)) as pool:
        pool.submit(trivial, 1).result()
        elapsed = time.perf_counter() - t
    return elapsed


def main():
    round_trips, tasks, map_items, big = (int(a) for a in sys.argv[1:5])
    print(f"start_fork_s {start_to_first_result('fork')}")
    print(f"start_spawn_s {start_to_first_result('spawn')}")
    with cf.ProcessPoolExecutor(WORKERS, mp_context=mp.get_context("fork")) as pool:
        pool.submit(trivial, 0).result()
        times = []
        for i in range(round_trips):
            t = time.perf_counter()
            pool.submit(trivial, i).result()
            times.append(time.perf_counter() - t)
        print(f"round_trip_p50_s {statistics.median(times)}")

        t = time.perf_counter()
        futures = [pool.submit(trivial, i) for i in range(tasks)]
        for f in futures:
            f.result()
        print(f"tasks_per_s {tasks / (time.perf_counter() - t)}")

        payload = bytes(big)
        pool.submit(length, b"warm").result()
        t = time.perf_counter()
        assert pool.submit(length, payload).result() == big
        print(f"big_arg_bytes_per_s {big / (time.perf_counter() - t)}")
    with mp.get_context("fork").Pool(WORKERS) as pool:
        pool.map(trivial, range(1000), chunksize=1000)
        t = time.perf_counter()
        n = len(pool.map(trivial, range(map_items), chunksize=1000))
        print(f"map_items_per_s {n / (time.perf_counter() - t)}")


if __name__ == "__main__":
    main()
