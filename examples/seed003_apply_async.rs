//! Seed 003, example 7.3 ("use a process pool and look at the results"): a pool of 4
//! processes runs `func(msg)` for three messages (each prints `msg:`, sleeps 3 s, prints
//! `end` and returns `"done" + msg`); after `close()` and `join()` the main program prints
//! each result with `get()`.
//!
//! Run: `cargo run --example seed003_apply_async`

use std::time::Duration;

use concurrent_futures::{Executor, ProcessPoolExecutor};

fn func(msg: String) -> String {
    println!("msg: {msg}");
    std::thread::sleep(Duration::from_secs(3));
    println!("end");
    format!("done{msg}")
}

fn main() {
    let pool = ProcessPoolExecutor::new(4); // multiprocessing.Pool(processes=4)
    let mut result = Vec::new();
    for i in 0..3 {
        let msg = format!("hello {i}");
        result.push(pool.submit(func, msg)); // pool.apply_async(func, (msg,))
    }
    pool.shutdown(true); // pool.close(); pool.join()
    for res in &result {
        println!("::: {}", res.result().expect("func failed")); // res.get()
    }
    println!("Sub-process(es) done.");
}
