//! A `Semaphore` between processes: `Semaphore(2)` shared by three processes that hold it
//! 0, 2 and 4 seconds: at most two hold it at once, the third waits for a release.
//!
//! Ports the tutorial's seed 003, section 3 (Semaphore).
//!
//! Run: `cargo run --example mp_semaphore` (about 6 s)

use std::time::Duration;

use concurrent_futures::multiprocessing::{Process, Semaphore, current_process};

fn worker((s, i): (Semaphore, u64)) {
    let permit = s.acquire(); // s.acquire()
    println!("{}acquire", current_process().name());
    std::thread::sleep(Duration::from_secs(i));
    println!("{}release\n", current_process().name());
    drop(permit); // s.release()
}

fn main() {
    let s = Semaphore::new(2);
    let children: Vec<_> = (0..3)
        .map(|i| Process::new(worker, (s.clone(), i * 2)))
        .collect();
    for p in &children {
        p.start().expect("cannot start");
    }
    for p in &children {
        p.join().expect("started");
    }
}
