"""CPython's side of `cargo bench --bench multiprocessing`: the same workloads on Python's
multiprocessing (fork context, as on Linux by default before 3.14). Prints one `name value`
line per measurement.

Usage: python3 cpython_multiprocessing.py STARTS QUEUE_ITEMS PIPE_TRIPS LOCK_PAIRS INCREMENTS
       [HANDOFFS]
"""

import multiprocessing as mp
import statistics
import sys
import time


def noop():
    pass


def producer(q, n):
    for i in range(n):
        q.put(i)


def echo(conn, n):
    for _ in range(n):
        conn.send(conn.recv())


def increment(v, n):
    for _ in range(n):
        with v.get_lock():
            v.value += 1


def ping(to_child, to_parent, n):
    for _ in range(n):
        to_child.acquire()
        to_parent.release()


def main():
    starts, items, trips, pairs, incs = (int(a) for a in sys.argv[1:6])
    handoffs = int(sys.argv[6]) if len(sys.argv) > 6 else 0
    ctx = mp.get_context("fork")
    times = []
    for _ in range(starts):
        t = time.perf_counter()
        p = ctx.Process(target=noop)
        p.start()
        p.join()
        times.append(time.perf_counter() - t)
    print(f"start_join_s {statistics.median(times)}")

    q = ctx.Queue()
    t = time.perf_counter()
    p = ctx.Process(target=producer, args=(q, items))
    p.start()
    for _ in range(items):
        q.get()
    p.join()
    print(f"queue_s {time.perf_counter() - t}")

    a, b = ctx.Pipe()
    p = ctx.Process(target=echo, args=(b, trips))
    p.start()
    t = time.perf_counter()
    for i in range(trips):
        a.send(i)
        a.recv()
    print(f"pipe_s {time.perf_counter() - t}")
    p.join()

    lock = ctx.Lock()
    t = time.perf_counter()
    for _ in range(pairs):
        lock.acquire()
        lock.release()
    print(f"lock_s {time.perf_counter() - t}")

    v = ctx.Value("q", 0)
    t = time.perf_counter()
    ps = [ctx.Process(target=increment, args=(v, incs)) for _ in range(2)]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
    assert v.value == 2 * incs
    print(f"value_s {time.perf_counter() - t}")

    if handoffs:
        to_child, to_parent = ctx.Semaphore(0), ctx.Semaphore(0)
        p = ctx.Process(target=ping, args=(to_child, to_parent, handoffs))
        p.start()
        t = time.perf_counter()
        for _ in range(handoffs):
            to_child.release()
            to_parent.acquire()
        print(f"semaphore_s {time.perf_counter() - t}")
        p.join()


if __name__ == "__main__":
    main()
