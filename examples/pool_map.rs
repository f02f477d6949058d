//! `map` and `shutdown`: `map(func, iterable)` replaces a `for` loop of `submit`s and
//! yields results in input order; `shutdown(wait=True)` (Python's `close()` + `join()`)
//! waits for everything submitted; submitting after it is an error.
//!
//! Ports the tutorial's seed 004, its basic methods.
//!
//! Run: `cargo run --example pool_map`

use std::time::Duration;

use concurrent_futures::{Executor, MapOptions, TaskError, ThreadPoolExecutor};

fn task(n: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(fastrand::u64(10..=50)));
    n * n
}

fn main() {
    let pool = ThreadPoolExecutor::new(4);

    // for i in range(10): pool.submit(task, i)  ->  pool.map(task, range(10))
    let squares: Vec<u64> = pool
        .map(task, 0..10)
        .collect::<Result<_, TaskError>>()
        .expect("a task failed");
    println!("map: {squares:?}");

    // chunksize groups items into one task each (Python's `chunksize=`).
    let opts = MapOptions::new().chunksize(5);
    let total: u64 = pool.map_with(task, 0..20, opts).map(Result::unwrap).sum();
    println!("map with chunksize=5: sum of squares = {total}");

    // Results in completion order instead of input order.
    let first = pool.map_unordered(task, 0..10).next().unwrap().unwrap();
    println!("map_unordered: first result to arrive = {first}");

    let pending: Vec<_> = (0..8).map(|i| pool.submit(task, i)).collect();
    pool.shutdown(true); // wait=True: every submitted task has finished
    println!(
        "after shutdown(wait=true): {} of {} done",
        pending.iter().filter(|f| f.done()).count(),
        pending.len()
    );
    match pool.try_submit(task, 1) {
        Err(e) => println!("submit after shutdown: {e}"),
        Ok(_) => unreachable!("a shut-down pool accepted a task"),
    }
}
