//! `submit` on a thread pool: a pool of 4 runs 10 tasks (`pool.submit(task, 'linda%s' %
//! i)`), each printing its name and pid and sleeping 1–3 s; the main thread prints `主...`
//! at once. As in Python, the program still waits for every task before it exits (here:
//! dropping the pool is `shutdown(wait=true)`).
//!
//! Ports the tutorial's seed 004, its first program.
//!
//! The task is written once against the `Executor` trait, so switching the pool is one line.
//!
//! Run: `cargo run --example pool_submit`

use std::time::Duration;

use concurrent_futures::{Executor, ThreadPoolExecutor};

fn task(name: String) {
    println!("name: {name}, pid: {} is running", std::process::id());
    std::thread::sleep(Duration::from_secs(fastrand::u64(1..=3)));
}

fn main() {
    let pool = ThreadPoolExecutor::new(4); // 池子内部造线程, 并开启
    for i in 0..10 {
        pool.submit(task, format!("linda{i}")); // 异步调用
    }
    // pool.shutdown(true); // 类似 join()
    println!("主...");
}
