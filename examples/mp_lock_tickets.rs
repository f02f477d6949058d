//! A process lock around a read-modify-write of a file: `data.json` holds `{"number": 1}`;
//! nine buyers, each a process, check the balance and then buy under a process lock (read,
//! simulated network delay, write). Thanks to the lock exactly one succeeds.
//!
//! Ports the tutorial's seed 002, the ticket purchase.
//!
//! Run: `cargo run --example mp_lock_tickets`

use std::path::PathBuf;
use std::time::Duration;

use concurrent_futures::multiprocessing::{Lock, Process};

fn read_number(path: &PathBuf) -> u64 {
    let text = std::fs::read_to_string(path).expect("read data.json");
    // {"number": N}
    text.trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .split(':')
        .nth(1)
        .and_then(|n| n.trim().parse().ok())
        .expect("data.json holds {\"number\": N}")
}

fn now() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:06}", t.as_secs(), t.subsec_micros())
}

fn check_ticket(name: &str, path: &PathBuf) {
    println!(
        "[{}]user{name}Check tickets,Current balance:{}",
        now(),
        read_number(path)
    );
}

fn buy_ticket(name: &str, path: &PathBuf) {
    let number = read_number(path);
    if number > 0 {
        // Network delay of the purchase: random, up to a second.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        std::thread::sleep(Duration::from_nanos(u64::from(nanos % 1_000_000_000)));
        std::fs::write(path, format!("{{\"number\": {}}}", number - 1)).expect("write");
        println!("[{}]{name}Ticket snatch succeeded!", now());
    } else {
        println!("[{}]{name}Ticket grabbing failed!", now());
    }
}

fn main_task((name, lock, path): (String, Lock, PathBuf)) {
    check_ticket(&name, &path);
    let held = lock.acquire().expect("a buyer died holding the lock"); // lock.acquire()
    buy_ticket(&name, &path);
    held.release(); // lock.release()
}

fn main() {
    let dir = std::env::temp_dir().join(format!("tickets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("data.json");
    std::fs::write(&path, "{\"number\": 1}").expect("write data.json");

    let lock = Lock::new();
    let pro_list: Vec<Process> = (0..9)
        .map(|i| {
            Process::new(
                main_task,
                (format!("pro_obj{}", i + 1), lock.clone(), path.clone()),
            )
        })
        .collect();
    for p in &pro_list {
        p.start().expect("cannot start");
    }
    for p in &pro_list {
        p.join().expect("started");
    }
    let left = read_number(&path);
    println!("tickets left: {left} (one buyer succeeded)");
    assert_eq!(left, 0);
    let _ = std::fs::remove_dir_all(&dir);
}
