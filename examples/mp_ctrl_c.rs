//! Ctrl-C with workers running: a program whose main thread waits on workers must still
//! stop on Ctrl-C, and leave no orphans. (In Python the main thread blocked in `join` may
//! not even see the KeyboardInterrupt.)
//!
//! Ports the tutorial's seed 003, its note on Ctrl-C.
//!
//! The example plays both sides. It starts itself again as the "program" (in a process
//! group of its own, as a shell runs a job), which starts a pool of 2 worker processes busy
//! with endless tasks and 3 child processes, prints their pids, and blocks in `join`. Then
//! it does what the terminal does on Ctrl-C: sends SIGINT to the program's process group.
//! The program stops at once, and every one of its worker and child processes is gone.
//!
//! Run: `cargo run --example mp_ctrl_c`

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use concurrent_futures::multiprocessing::{Pool, Process};

fn forever(_: ()) {
    loop {
        std::thread::park();
    }
}

fn busy(_: ()) -> u64 {
    loop {
        std::thread::park();
    }
}

/// The program that gets the Ctrl-C.
fn program() {
    let pool = Pool::new(2);
    let _stuck: Vec<_> = (0..2).map(|_| pool.apply_async(busy, ())).collect();
    let children: Vec<_> = (0..3).map(|_| Process::new(forever, ())).collect();
    for p in &children {
        p.start().expect("cannot start");
    }
    let mut pids: Vec<u32> = pool.executor().pids();
    pids.extend(children.iter().filter_map(Process::pid));
    println!(
        "PIDS {}",
        pids.iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    );
    for p in &children {
        p.join().expect("started"); // the main thread waits on its workers
    }
}

fn dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|s| s.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("--program") {
        return program();
    }
    let mut prog = Command::new(std::env::current_exe().expect("own path"))
        .arg("--program")
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("cannot start the program");
    let mut line = String::new();
    BufReader::new(prog.stdout.take().expect("piped"))
        .read_line(&mut line)
        .expect("the program's pids");
    let pids: Vec<u32> = line
        .trim()
        .strip_prefix("PIDS ")
        .expect("a PIDS line")
        .split(' ')
        .map(|p| p.parse().expect("a pid"))
        .collect();
    println!(
        "program {} waits on {} worker processes; pressing Ctrl-C",
        prog.id(),
        pids.len()
    );
    let status = Command::new("kill")
        .args(["-INT", "--", &format!("-{}", prog.id())])
        .status()
        .expect("cannot run kill");
    assert!(status.success(), "kill failed");
    let deadline = Instant::now() + Duration::from_secs(30);
    let ended = loop {
        if let Some(status) = prog.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the program ignored Ctrl-C");
        std::thread::sleep(Duration::from_millis(10));
    };
    println!("the program stopped: {ended}");
    while !pids.iter().all(|&p| dead(p)) {
        assert!(Instant::now() < deadline, "orphans left: {pids:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    println!("workers and children left behind: 0 of {}", pids.len());
}
