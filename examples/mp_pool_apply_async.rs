//! `Pool.apply_async`, `close`, `join` and `get`: a pool of 3 runs four `func(msg)` with
//! `apply_async` (prints `msg:`, sleeps 3 s, prints `end`) while the main program goes on
//! ("Mark~ Mark~"); then a pool of 4 runs three calls that return `"done" + msg`, and after
//! `close()` and `join()` the main program prints each result with `get()`.
//!
//! Ports the tutorial's seed 003, examples 7.1 and 7.3 (process pools).
//!
//! Run: `cargo run --example mp_pool_apply_async`

use std::time::Duration;

use concurrent_futures::multiprocessing::Pool;

fn func(msg: String) -> String {
    println!("msg: {msg}");
    std::thread::sleep(Duration::from_secs(3));
    println!("end");
    format!("done{msg}")
}

fn main() {
    // 7.1: apply_async does not block the main process.
    let pool = Pool::new(3); // multiprocessing.Pool(processes = 3)
    for i in 0..4 {
        let res = pool.apply_async(func, format!("hello {i}"));
        println!("{res:?}"); // <multiprocessing.pool.ApplyResult object at ...>
    }
    println!("Mark~ Mark~ Mark~~~~~~~~~~~~~~~~~~~~~~");
    pool.close();
    pool.join().expect("closed"); // join after close (or terminate), else an error
    println!("Sub-process(es) done.");

    // 7.3: keep the results and read them with get().
    let pool = Pool::new(4); // multiprocessing.Pool(processes=4)
    let mut result = Vec::new();
    for i in 0..3 {
        let msg = format!("hello {i}");
        result.push(pool.apply_async(func, msg)); // pool.apply_async(func, (msg, ))
    }
    pool.close();
    pool.join().expect("closed");
    for res in &result {
        println!("::: {}", res.get().expect("func failed")); // res.get()
    }
    println!("Sub-process(es) done.");
}
