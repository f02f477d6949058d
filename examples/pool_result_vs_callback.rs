//! The two ways to wait for a task on `ThreadPoolExecutor(13)`:
//!
//! * synchronous: `pool.submit(task, name).result()` then `callback(ret)`, one task after
//!   another, so the program runs serially;
//! * asynchronous: `pool.submit(task, name).add_done_callback(callback)`: the main thread goes
//!   on at once and each callback runs when its task is done (taking the future, as Python's
//!   `callback(future)` does).
//!
//! Ports the tutorial's seed 004, the two ways to submit a task.
//!
//! Run: `cargo run --example pool_result_vs_callback`

use std::time::{Duration, Instant};

use concurrent_futures::{Executor, Future, ThreadPoolExecutor};
use serde::{Deserialize, Serialize};

/// What the task returns: Python's `{'name': name, 'ret': ret}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Reply {
    name: String,
    ret: String,
}

fn sync_task(name: String) -> Reply {
    println!("name: {name}");
    std::thread::sleep(Duration::from_secs(fastrand::u64(1..=3)));
    Reply {
        name,
        ret: "#".repeat(fastrand::usize(4..=6)),
    }
}

fn sync_callback(d: Reply) {
    println!("name: {}, size: {}", d.name, d.ret);
}

fn async_task(name: String) -> Reply {
    println!("{name} is doing ");
    std::thread::sleep(Duration::from_secs(fastrand::u64(1..=3)));
    Reply {
        name,
        ret: "#".repeat(fastrand::usize(4..=6)),
    }
}

/// Runs only after the task is done, with its future.
fn async_callback(future: &Future<Reply>) {
    let d = future.result().expect("task failed");
    println!("at last, name: {}, size: {}", d.name, d.ret);
}

fn main() {
    let pool = ThreadPoolExecutor::new(13);

    println!("-- synchronous: submit, then wait for the result, one by one");
    let start = Instant::now();
    let ret1 = pool
        .submit(sync_task, "linda".to_string())
        .result()
        .unwrap();
    sync_callback(ret1);
    let ret2 = pool.submit(sync_task, "tom".to_string()).result().unwrap();
    sync_callback(ret2);
    let ret3 = pool
        .submit(sync_task, "catherine".to_string())
        .result()
        .unwrap();
    sync_callback(ret3);
    println!(
        "synchronous: {:.1} s (the sum of the three)",
        start.elapsed().as_secs_f64()
    );

    println!("-- asynchronous: submit with a done-callback, do not wait");
    let start = Instant::now();
    pool.submit(async_task, "linda".to_string())
        .add_done_callback(async_callback);
    pool.submit(async_task, "tom".to_string())
        .add_done_callback(async_callback);
    pool.submit(async_task, "catherine".to_string())
        .add_done_callback(async_callback);
    pool.shutdown(true);
    println!(
        "asynchronous: {:.1} s (the longest of the three)",
        start.elapsed().as_secs_f64()
    );
}
