//! Faults a task can cause in its worker process, and bursts of them mixed with ordinary
//! tasks whose side effects are counted. Shared by `tests/faults.rs` (which asserts) and
//! `examples/faults.rs` (which prints the table in the README).
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use concurrent_futures::{Executor, ProcessPoolExecutor, TaskError};
use serde::{Deserialize, Serialize};

/// What a faulty task does to its worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Fault {
    /// SIGKILL to itself (as the OOM killer would).
    Kill,
    /// `std::process::abort()`.
    Abort,
    /// SIGSEGV.
    Segfault,
    /// `std::process::exit(7)` in the middle of a task.
    Exit,
    /// Unbounded recursion.
    StackOverflow,
    /// Runs longer than the pool's time limit.
    Hang,
    /// Forges results for tasks it does not hold, on every socket it can find.
    Forge,
    /// Sends a message larger than any the protocol allows.
    HugeMessage,
    /// Sends a result record whose length points past its message.
    BadLength,
    /// Truncates every shared memory file it can find, then returns normally.
    Truncate,
    /// Appends results to its worker's result log for the 64 tasks after its own (those
    /// queued behind it in the same worker), then dies with SIGKILL.
    ForgeLog,
}

impl Fault {
    pub const ALL: [Fault; 11] = [
        Fault::Kill,
        Fault::Abort,
        Fault::Segfault,
        Fault::Exit,
        Fault::StackOverflow,
        Fault::Hang,
        Fault::Forge,
        Fault::HugeMessage,
        Fault::BadLength,
        Fault::Truncate,
        Fault::ForgeLog,
    ];

    /// Whether the worker survives the fault (the task then completes normally).
    pub fn survivable(self) -> bool {
        matches!(self, Fault::Truncate)
    }

    /// Whether `err` is the error this fault must produce.
    pub fn right_error(self, outcome: &Result<u64, TaskError>, limit: Duration) -> bool {
        match (self, outcome) {
            (Fault::Truncate, Ok(v)) => *v == FAULT_VALUE,
            (Fault::Hang, Err(TaskError::TimeLimit(d))) => *d == limit,
            (Fault::Hang, _) => false,
            (_, Err(TaskError::WorkerDied { .. })) => true,
            _ => false,
        }
    }
}

/// What a faulty task returns if it survives.
pub const FAULT_VALUE: u64 = 0xFA17;

/// The value forged results carry (no ordinary task returns it: theirs are even).
pub const FORGED_VALUE: u64 = 0xF0F1;

/// Appends one line to the side-effect journal (one `write` of a short line with
/// `O_APPEND`: atomic between processes).
fn journal(path: &str, line: String) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .expect("open journal");
    f.write_all(line.as_bytes()).expect("write journal");
}

/// An ordinary task: records that it ran, returns its id doubled.
pub fn ordinary((journal_path, id): (String, u64)) -> u64 {
    journal(&journal_path, format!("o{id}\n"));
    id * 2
}

/// Recurses until the stack runs out (the bound is never reached).
fn recurse(depth: u64) -> u64 {
    let pad = std::hint::black_box([depth; 64]);
    if std::hint::black_box(depth) == u64::MAX {
        return pad[3];
    }
    recurse(depth + 1).wrapping_add(pad[3])
}

/// Sends `parts` as one message on socket `fd`, ignoring errors.
fn send_raw(fd: i32, bytes: &[u8]) {
    // SAFETY: `send` reads `bytes.len()` bytes from a live slice; a descriptor that is not a
    // connected socket gives an error, ignored (this task is hostile on purpose).
    unsafe {
        libc::send(fd, bytes.as_ptr().cast(), bytes.len(), libc::MSG_NOSIGNAL);
    }
}

/// A faulty task: records that it started, then does `fault`.
pub fn faulty((journal_path, id, fault): (String, u64, Fault)) -> u64 {
    journal(&journal_path, format!("f{id}\n"));
    match fault {
        Fault::Kill => {
            // SAFETY: sending a signal to this very process is always allowed.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        }
        Fault::Abort => std::process::abort(),
        Fault::Segfault => {
            // SAFETY: raising a signal is always allowed; this one ends the process on purpose.
            unsafe { libc::raise(libc::SIGSEGV) };
        }
        Fault::Exit => std::process::exit(7),
        Fault::StackOverflow => return recurse(0),
        Fault::Hang => super::procs::park_forever(),
        Fault::Forge => {
            // A result record (the crate's wire format) for every task id up to 10,000.
            let mut msg = vec![b'D'];
            for forged in 1..=10_000u64 {
                msg.extend_from_slice(&forged.to_le_bytes());
                msg.push(0);
                msg.extend_from_slice(&1u32.to_le_bytes());
                msg.push(0);
            }
            for fd in super::procs::fds_like("socket:") {
                send_raw(fd, &msg[..msg.len().min(100_000)]);
            }
            // Wait for the consequence (the time limit ends a worker the parent believed).
            loop {
                std::thread::park();
            }
        }
        Fault::HugeMessage => {
            // Longer than any message the protocol allows, within what a socket can send.
            let big = vec![b'D'; 300 << 10];
            for fd in super::procs::fds_like("socket:") {
                let size: libc::c_int = 8 << 20;
                // SAFETY: `setsockopt` reads one c_int; errors are ignored.
                unsafe {
                    libc::setsockopt(
                        fd,
                        libc::SOL_SOCKET,
                        libc::SO_SNDBUF,
                        (&size as *const libc::c_int).cast(),
                        std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                    );
                }
                send_raw(fd, &big);
            }
            loop {
                std::thread::park();
            }
        }
        Fault::BadLength => {
            let mut msg = vec![b'D'];
            msg.extend_from_slice(&id.to_le_bytes());
            msg.push(0);
            msg.extend_from_slice(&u32::MAX.to_le_bytes());
            msg.extend_from_slice(b"short");
            for fd in super::procs::fds_like("socket:") {
                send_raw(fd, &msg);
            }
            loop {
                std::thread::park();
            }
        }
        Fault::ForgeLog => {
            forge_log();
            // SAFETY: sending a signal to this very process is always allowed.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        }
        Fault::Truncate => {
            for fd in super::procs::fds_like("/memfd:") {
                // SAFETY: `ftruncate` on a descriptor of this process; a sealed file
                // refuses with an error, ignored.
                unsafe { libc::ftruncate(fd, 0) };
            }
            return FAULT_VALUE;
        }
    }
    // Only reached if the fault did not end the process (it must have): the time limit
    // ends it, which the report counts as the wrong error.
    loop {
        std::thread::park();
    }
}

/// Finds this worker's result log (the crate's wire format: a 128 KiB memory file mapped
/// shared and writable, `[started u64][committed u64][started_at u64][records]`), reads the
/// id of the task it runs (`started`), and commits, after the records already there, a
/// record of `Ok(FORGED_VALUE)` for each of the 64 ids after it, leaving `started` alone.
fn forge_log() {
    const LOG_SIZE: usize = 128 << 10;
    // Ok(FORGED_VALUE) as postcard encodes a `Result<u64, _>`: variant 0, then the value
    // as a LEB128 varint.
    let mut payload = vec![0u8];
    let mut v = FORGED_VALUE;
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            payload.push(byte);
            break;
        }
        payload.push(byte | 0x80);
    }
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    for line in maps.lines().filter(|l| l.contains("/memfd:")) {
        let mut words = line.split_whitespace();
        let (Some(range), Some(perms)) = (words.next(), words.next()) else {
            continue;
        };
        let Some((from, to)) = range.split_once('-') else {
            continue;
        };
        let (Ok(from), Ok(to)) = (
            usize::from_str_radix(from, 16),
            usize::from_str_radix(to, 16),
        ) else {
            continue;
        };
        if to - from != LOG_SIZE || !perms.starts_with("rw") {
            continue;
        }
        // SAFETY: a writable mapping of this process, LOG_SIZE bytes long, that stays mapped
        // while the worker lives; this task scribbles over it on purpose (the worker's main
        // thread runs this task, so it does not touch the log meanwhile).
        let log = unsafe { std::slice::from_raw_parts_mut(from as *mut u8, LOG_SIZE) };
        let started = u64::from_le_bytes(log[..8].try_into().unwrap());
        // After the records already there (results of tasks this worker did run).
        let committed = u64::from_le_bytes(log[8..16].try_into().unwrap()) as usize;
        let mut at = 24 + committed.min(LOG_SIZE / 2);
        for id in started + 1..=started + 64 {
            log[at..at + 8].copy_from_slice(&id.to_le_bytes());
            log[at + 8] = 0;
            log[at + 9..at + 13].copy_from_slice(&(payload.len() as u32).to_le_bytes());
            log[at + 13..at + 13 + payload.len()].copy_from_slice(&payload);
            at += 13 + payload.len();
        }
        log[8..16].copy_from_slice(&((at - 24) as u64).to_le_bytes());
    }
}

/// Threads that keep every CPU busy until dropped (the tests' "under CPU load").
pub struct CpuLoad {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl CpuLoad {
    pub fn start() -> CpuLoad {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let threads = (0..cpus)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        x = std::hint::black_box(
                            x.wrapping_mul(6364136223846793005).wrapping_add(1),
                        );
                    }
                })
            })
            .collect();
        CpuLoad { stop, threads }
    }
}

impl Drop for CpuLoad {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// What one burst showed.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub faults: usize,
    /// Faulty tasks that failed with the error their fault must give.
    pub right_error: usize,
    pub ordinary: usize,
    /// Ordinary tasks that did not return their value.
    pub ordinary_lost: usize,
    /// Tasks (of either kind) whose side effect appears more than once, or an ordinary
    /// task's never.
    pub ran_twice: usize,
    pub never_ran: usize,
    /// Left behind once the pool is gone: child processes, descriptors, memory files.
    pub leaked_processes: usize,
    pub leaked_fds: isize,
    pub leaked_memfds: isize,
}

/// The time limit of the pools of a burst (for `Fault::Hang`).
pub const LIMIT: Duration = Duration::from_millis(500);

/// Child processes of this process (zombies included).
pub fn children() -> Vec<u32> {
    super::procs::children()
}

/// Open descriptors of this process, and how many are memory files.
pub fn open_fds() -> (isize, isize) {
    (
        super::procs::open_fds() as isize,
        super::procs::fds_like("/memfd:").len() as isize,
    )
}

/// Submits `ordinary` tasks with `faults` faulty ones spread among them, all at once, on a
/// pool of `workers`; checks every outcome and every side effect; then drops the pool and
/// counts what it left behind.
pub fn burst(fault: Fault, faults: usize, ordinary_tasks: usize, workers: usize) -> Report {
    let journal_path = std::env::temp_dir()
        .join(format!(
            "cf-faults-{}-{:?}-{}",
            std::process::id(),
            fault,
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ))
        .to_string_lossy()
        .into_owned();
    let (fds_before, memfds_before) = open_fds();
    let mut report = Report {
        faults,
        ordinary: ordinary_tasks,
        ..Report::default()
    };
    {
        let pool = ProcessPoolExecutor::builder()
            .max_workers(workers)
            .task_timeout(LIMIT)
            .build()
            .expect("pool");
        let total = faults + ordinary_tasks;
        let every = total / faults.max(1);
        let mut futures = Vec::with_capacity(total);
        let (mut f, mut o) = (0, 0);
        for i in 0..total as u64 {
            let faulty_now = faults > 0 && f < faults && (i as usize % every == every / 2);
            if faulty_now || o >= ordinary_tasks {
                f += 1;
                futures.push((
                    true,
                    i,
                    pool.submit(faulty, (journal_path.clone(), i, fault)),
                ));
            } else {
                o += 1;
                futures.push((false, i, pool.submit(ordinary, (journal_path.clone(), i))));
            }
        }
        for (is_fault, id, fut) in &futures {
            let outcome = fut.result_timeout(Duration::from_secs(120));
            if *is_fault {
                if fault.right_error(&outcome, LIMIT) {
                    report.right_error += 1;
                }
            } else if outcome != Ok(id * 2) {
                if std::env::var_os("CF_FAULTS_DEBUG").is_some() {
                    eprintln!("ordinary task {id}: {outcome:?}");
                }
                report.ordinary_lost += 1;
            }
        }
        let journal = std::fs::read_to_string(&journal_path).unwrap_or_default();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for line in journal.lines() {
            *seen.entry(line).or_default() += 1;
        }
        report.ran_twice = seen.values().filter(|&&n| n > 1).count();
        report.never_ran = futures
            .iter()
            .filter(|(is_fault, id, _)| {
                let key = format!("{}{id}", if *is_fault { 'f' } else { 'o' });
                !seen.contains_key(key.as_str())
            })
            .count();
        drop(futures);
        drop(pool);
    }
    let _ = std::fs::remove_file(&journal_path);
    report.leaked_processes = children().len();
    let (fds_after, memfds_after) = open_fds();
    report.leaked_fds = fds_after - fds_before;
    report.leaked_memfds = memfds_after - memfds_before;
    report
}
