//! A process lock: ten processes each print "hello N" while holding one shared lock, so the
//! prints never interleave.
//!
//! Ports the tutorial's seed 000, the process lock.
//!
//! Run: `cargo run --example mp_lock_print`

use concurrent_futures::multiprocessing::{Lock, Process};

fn func1((lock_1, name): (Lock, u32)) {
    let held = lock_1.acquire().expect("the lock's holder died"); // lock_1.acquire()
    println!("hello {name}"); // no longer parallel here: one process at a time
    held.release(); // lock_1.release()
}

fn main() {
    let lock = Lock::new(); // multiprocessing.Lock()
    let mut children = Vec::new();
    for num in 0..10 {
        let p = Process::new(func1, (lock.clone(), num)); // Process(target=func1, args=(lock, num))
        p.start().expect("cannot start a process");
        children.push(p);
    }
    // Python joins non-daemonic children at exit; dropping the handles does the same.
    for p in &children {
        p.join().expect("started");
    }
}
