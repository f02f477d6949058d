//! A process lock around writes to one file: two processes append four lines each to one
//! file, one holding the lock with a guard (`with lock:`), the other with acquire/release.
//! Each process's lines come out together.
//!
//! Ports the tutorial's seed 003, section 2 (Lock).
//!
//! Run: `cargo run --example mp_lock_file`

use std::io::Write;
use std::path::PathBuf;

use concurrent_futures::multiprocessing::{Lock, Process};

fn worker_with((lock, f): (Lock, PathBuf)) {
    let _held = lock.acquire().expect("holder died"); // with lock:
    let mut fs = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&f)
        .expect("open");
    for _ in 0..4 {
        writeln!(fs, "Lockd acquired via with").expect("write");
    }
}

fn worker_no_with((lock, f): (Lock, PathBuf)) {
    let held = lock.acquire().expect("holder died"); // lock.acquire()
    let mut fs = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&f)
        .expect("open");
    for _ in 0..4 {
        writeln!(fs, "Lock acquired directly").expect("write");
    }
    held.release(); // finally: lock.release()
}

fn main() {
    let lock = Lock::new();
    let f = std::env::temp_dir().join(format!("file-{}.txt", std::process::id()));
    let w = Process::new(worker_with, (lock.clone(), f.clone()));
    let nw = Process::new(worker_no_with, (lock.clone(), f.clone()));
    w.start().expect("cannot start");
    nw.start().expect("cannot start");
    println!("end");
    w.join().expect("started");
    nw.join().expect("started");
    print!("{}", std::fs::read_to_string(&f).expect("read"));
    let _ = std::fs::remove_file(&f);
}
