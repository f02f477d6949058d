//! A `Queue` between processes: a writer process puts with `block=False`; the main process
//! reads what it wrote after joining it; a full bounded queue and an empty one report
//! `queue.Full` and `queue.Empty`.
//!
//! Ports the tutorial's seed 003, section 5 (Queue).
//!
//! Run: `cargo run --example mp_queue_full_empty`

use std::time::Duration;

use concurrent_futures::multiprocessing::{Process, Queue};

fn writer_proc(q: Queue<u32>) {
    q.put_nowait(1).expect("room in the queue"); // q.put(1, block = False)
}

fn reader_proc(q: Queue<u32>) {
    println!("reader got {}", q.get().expect("an item")); // q.get()
}

fn main() {
    let q = Queue::new(0);
    let writer = Process::new(writer_proc, q.clone());
    writer.start().expect("cannot start");
    writer.join().expect("started");
    let reader = Process::new(reader_proc, q.clone());
    reader.start().expect("cannot start");
    reader.join().expect("started");

    let bounded = Queue::new(1);
    bounded.put(1).expect("room");
    println!(
        "put(block=False) on a full queue: {:?}",
        bounded.put_nowait(2)
    );
    println!(
        "put(timeout=0.1) on a full queue: {:?}",
        bounded.put_timeout(2, Duration::from_millis(100))
    );
    bounded.get().expect("an item");
    println!(
        "get(block=False) on an empty queue: {:?}",
        bounded.get_nowait()
    );
    println!(
        "get(timeout=0.1) on an empty queue: {:?}",
        bounded.get_timeout(Duration::from_millis(100))
    );
}
