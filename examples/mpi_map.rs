//! The same generic code on the ranks of an MPI job: `map` (ordered and unordered, chunked),
//! `submit` with a callback, and `as_completed`.
//!
//! ```sh
//! cargo build --release --features mpi --example mpi_map
//! mpirun -n 4 target/release/examples/mpi_map                 # 1 client + 3 workers
//! # as root, or with more ranks than cores (Open MPI):
//! mpirun --allow-run-as-root --oversubscribe -n 3 target/release/examples/mpi_map
//! ```
//!
//! Started without mpirun, it runs on local worker processes instead.

use std::time::Instant;

use concurrent_futures::{Executor, MapOptions, MpiPoolExecutor, as_completed};

/// Primes below `n`, the slow way: a CPU-bound task.
fn count_primes((lo, hi): (u64, u64)) -> u64 {
    (lo.max(2)..hi)
        .filter(|&n| (2..).take_while(|d| d * d <= n).all(|d| n % d != 0))
        .count() as u64
}

fn square(x: u64) -> u64 {
    x * x
}

fn host(_: ()) -> (u32, String) {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    (std::process::id(), name.trim().to_string())
}

/// Written once for any backend: threads, processes or ranks.
fn run<E: Executor>(pool: &E) {
    let t = Instant::now();
    let blocks: Vec<(u64, u64)> = (0..64).map(|i| (i * 20_000, (i + 1) * 20_000)).collect();
    let primes: u64 = pool
        .map(count_primes, blocks.clone())
        .map(Result::unwrap)
        .sum();
    println!("primes below 1,280,000: {primes} ({:.1?})", t.elapsed());

    let t = Instant::now();
    let total: u64 = pool
        .map_with(square, 0..1_000_000u64, MapOptions::new().chunksize(10_000))
        .map(Result::unwrap)
        .sum();
    println!(
        "sum of 1,000,000 squares: {total} ({:.1?}, chunks of 10,000)",
        t.elapsed()
    );

    let t = Instant::now();
    let n = pool
        .map_unordered(count_primes, blocks)
        .filter(Result::is_ok)
        .count();
    println!("{n} blocks as they finished ({:.1?})", t.elapsed());

    let fut = pool.submit(count_primes, (0, 100_000));
    fut.add_done_callback(|f| {
        println!(
            "callback (on rank 0): {:?} primes below 100,000",
            f.result()
        )
    });
    fut.wait();

    let futs: Vec<_> = (0..pool.max_workers() * 4)
        .map(|_| pool.submit(host, ()))
        .collect();
    let mut seen: Vec<(u32, String)> = as_completed(&futs, None)
        .map(|f| f.unwrap().result().unwrap())
        .collect();
    seen.sort();
    seen.dedup();
    for (pid, host) in seen {
        println!("a task ran in pid {pid} on {host}");
    }
}

fn main() {
    // Rank 0 gets the pool; the other ranks serve tasks and get None when it shuts down.
    let Some(pool) = MpiPoolExecutor::start() else {
        return;
    };
    println!("{} workers: {:?}", pool.max_workers(), pool.ranks());
    run(&pool);
    pool.shutdown(true);
}
