//! A mutex between threads: ten threads each read a shared number (100), sleep a second,
//! and write it back minus one. Without the lock every thread reads 100 and the result is
//! 99; with the lock the updates happen one after another and the result is 90.
//!
//! Ports the tutorial's seed 002, the thread mutex.
//!
//! Run: `cargo run --example thread_lock` (about 11 s)

use std::sync::{Arc, Mutex};
use std::time::Duration;

fn run(with_lock: bool) -> i64 {
    let lock = Arc::new(Mutex::new(())); // threading.Lock()
    let number = Arc::new(Mutex::new(100i64)); // the record to modify (each access atomic)
    let list1: Vec<_> = (0..10)
        .map(|_| {
            let (lock, number) = (lock.clone(), number.clone());
            std::thread::spawn(move || {
                let _held = with_lock.then(|| lock.lock().expect("poisoned")); // lock.acquire()
                let number2 = *number.lock().expect("poisoned");
                std::thread::sleep(Duration::from_secs(1));
                *number.lock().expect("poisoned") = number2 - 1;
            }) // lock.release() when `_held` drops
        })
        .collect();
    for t in list1 {
        t.join().expect("a thread panicked");
    }
    *number.lock().expect("poisoned")
}

fn main() {
    println!("without the mutex: {}", run(false)); // 99
    println!("with the mutex: {}", run(true)); // 90
}
