//! An `Event` between processes: process "block" waits for the event; process "non-block"
//! waits at most 2 s and reports the event not set; the main process sets it after 3 s,
//! which releases "block".
//!
//! Ports the tutorial's seed 003, section 4 (Event).
//!
//! Run: `cargo run --example mp_event` (about 3 s)

use std::time::Duration;

use concurrent_futures::multiprocessing::{Event, Process};

fn wait_for_event(e: Event) {
    println!("wait_for_event: starting");
    e.wait();
    println!("wait_for_event: e.is_set()->{}", e.is_set());
}

fn wait_for_event_timeout((e, t): (Event, u64)) {
    println!("wait_for_event_timeout:starting");
    e.wait_timeout(Duration::from_secs(t));
    println!("wait_for_event_timeout:e.is_set->{}", e.is_set());
}

fn main() {
    let e = Event::new();
    let w1 = Process::new(wait_for_event, e.clone()).with_name("block");
    let w2 = Process::new(wait_for_event_timeout, (e.clone(), 2)).with_name("non-block");
    w1.start().expect("cannot start");
    w2.start().expect("cannot start");
    std::thread::sleep(Duration::from_secs(3));
    e.set();
    println!("main: event is set");
    w1.join().expect("started");
    w2.join().expect("started");
}
