//! Data isolation between processes, shared memory between threads: a child process changes
//! its copy of a global (`func1` adds 10) or of its argument (`func2` adds 100) and the
//! main process's `count` stays 0; then a thread changes the process's shared number from
//! 1000 to 200, which the main thread sees (threads share their process's memory).
//!
//! Ports the tutorial's seed 002, data isolation and threads.
//!
//! Run: `cargo run --example mp_process_isolation`

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use concurrent_futures::multiprocessing::Process;

static COUNT: AtomicI64 = AtomicI64::new(0);

fn func1(_: ()) {
    COUNT.fetch_add(10, Ordering::SeqCst); // global count; count += 10
    println!("func1:{}", COUNT.load(Ordering::SeqCst));
}

fn func2(mut count: i64) {
    count += 100;
    println!("func2:{count}");
}

static NUMBER: AtomicI64 = AtomicI64::new(1000);

fn main() {
    let pro_obj1 = Process::new(func1, ());
    let pro_obj2 = Process::new(func2, COUNT.load(Ordering::SeqCst));
    pro_obj1.start().expect("cannot start");
    pro_obj1.join().expect("started");
    pro_obj2.start().expect("cannot start");
    pro_obj2.join().expect("started");
    println!("Main process:{}", COUNT.load(Ordering::SeqCst)); // 0: processes share nothing

    let thread_obj = std::thread::spawn(|| {
        NUMBER.store(200, Ordering::SeqCst); // global number; number = 200
        println!("Sub thread start");
        std::thread::sleep(Duration::from_secs(1));
        println!("Sub thread end");
    });
    thread_obj.join().expect("the thread panicked");
    println!("Main process (main thread)");
    println!("{}", NUMBER.load(Ordering::SeqCst)); // 200: threads share their process
}
