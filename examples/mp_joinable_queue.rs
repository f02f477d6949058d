//! A bounded queue between processes: a `JoinableQueue(3)` between two processes. The
//! producer stores 10, 20 and 30, then finds the queue full: `put` with a timeout and
//! `put_nowait` both report it (in the seed, a plain `put` blocks there forever). After it
//! exits, the consumer takes the three records and then finds the queue empty: `get` with a
//! timeout and `get_nowait` report it.
//!
//! Ports the tutorial's seed 002, the queue.
//!
//! Run: `cargo run --example mp_joinable_queue`

use std::time::Duration;

use concurrent_futures::multiprocessing::{JoinableQueue, Process, PutError};

fn task_put(queue: JoinableQueue<u32>) {
    for i in [10, 20, 30, 40] {
        // put() waits while the queue holds its 3 items: give up after a second.
        match queue.put_timeout(i, Duration::from_secs(1)) {
            Ok(()) => println!("Storage record:{i}"),
            Err(PutError::Full(i)) => println!("Queue full, {i} not stored (put blocked)"),
            Err(e) => println!("put failed: {e}"),
        }
    }
    // put_nowait() reports a full queue at once.
    match queue.put_nowait(1000) {
        Ok(()) => println!("Storage record:1000"),
        Err(e) => println!("put_nowait(1000): {e}"),
    }
}

fn task_get(queue: JoinableQueue<u32>) {
    for i in 0..5 {
        match queue.get_timeout(Duration::from_secs(1)) {
            Ok(v) => println!("Removed the first{}Record:{v}", i + 1),
            Err(e) => println!("get {}: {e} (get blocked)", i + 1),
        }
    }
    match queue.get_nowait() {
        Ok(v) => println!("get_nowait: {v}"),
        Err(e) => println!("get_nowait: {e}"),
    }
}

fn main() {
    let queue_obj = JoinableQueue::new(3); // JoinableQueue(3)
    let pro_obj1 = Process::new(task_put, queue_obj.clone());
    pro_obj1.start().expect("cannot start");
    pro_obj1.join().expect("started");
    let pro_obj2 = Process::new(task_get, queue_obj.clone());
    pro_obj2.start().expect("cannot start");
    pro_obj2.join().expect("started");
}
