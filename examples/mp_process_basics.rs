//! `Process`: 1.1 one process with its pid, name and `is_alive`; 1.2 two processes, the CPU
//! count and `active_children`; 1.3 a process defined as a type with a `run` method; 1.4 a
//! daemonic process joined by the main process.
//!
//! Ports the tutorial's seed 003, section 1 (Process).
//!
//! Run: `cargo run --example mp_process_basics` (about 12 s)

use std::time::Duration;

use concurrent_futures::multiprocessing::{Process, active_children, cpu_count};
use serde::{Deserialize, Serialize};

fn ctime() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}s since the epoch", t.as_secs())
}

fn worker(interval: u64) {
    for _ in 0..3 {
        println!("The time is {}", ctime());
        std::thread::sleep(Duration::from_secs(interval));
    }
}

fn worker_1(interval: u64) {
    println!("worker_1");
    std::thread::sleep(Duration::from_secs(interval));
    println!("end worker_1");
}

fn worker_2(interval: u64) {
    println!("worker_2");
    std::thread::sleep(Duration::from_secs(interval));
    println!("end worker_2");
}

/// 1.3: `class ClockProcess(multiprocessing.Process)` with `run()`.
#[derive(Serialize, Deserialize)]
struct ClockProcess {
    interval: u64,
}

impl ClockProcess {
    fn run(self) {
        for _ in 0..3 {
            println!("the time is {}", ctime());
            std::thread::sleep(Duration::from_secs(self.interval));
        }
    }

    fn start(self) -> Process {
        let p = Process::new(ClockProcess::run, self);
        p.start().expect("cannot start");
        p
    }
}

fn daemon_worker(interval: u64) {
    println!("work start:{}", ctime());
    std::thread::sleep(Duration::from_secs(interval));
    println!("work end:{}", ctime());
}

fn main() {
    // 1.1
    let p = Process::new(worker, 1);
    p.start().expect("cannot start");
    println!("p.pid: {}", p.pid().expect("started"));
    println!("p.name: {}", p.name());
    println!("p.is_alive: {}", p.is_alive());
    p.join().expect("started");

    // 1.2
    let p1 = Process::new(worker_1, 2);
    let p2 = Process::new(worker_2, 3);
    p1.start().expect("cannot start");
    p2.start().expect("cannot start");
    println!("The number of CPU is:{}", cpu_count());
    for p in active_children() {
        println!(
            "child   p.name:{}\tp.id{}",
            p.name(),
            p.pid().expect("started")
        );
    }
    println!("END!!!!!!!!!!!!!!!!!");
    p1.join().expect("started");
    p2.join().expect("started");

    // 1.3
    ClockProcess { interval: 1 }
        .start()
        .join()
        .expect("started");

    // 1.4
    let p = Process::new(daemon_worker, 2).with_daemon(true); // p.daemon = True before start()
    p.start().expect("cannot start");
    p.join().expect("started");
    println!("end!");
}
