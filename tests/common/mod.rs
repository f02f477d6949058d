//! Helpers shared by the integration tests: a watchdog that fails a hung test, a gate that
//! holds tasks until the test opens it (across threads and processes alike), and the task
//! functions of the behavioural suite.
#![allow(dead_code)]

#[cfg(target_os = "linux")]
pub mod faults;
#[cfg(target_os = "linux")]
pub mod procs;
#[cfg(feature = "tracing")]
pub mod recorder;
pub mod suite;

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Upper bound for any single wait in a test: generous, so that only a bug reaches it.
#[cfg(not(miri))]
pub const LONG: Duration = Duration::from_secs(30);
/// Under Miri, code runs a few hundred times slower than native.
#[cfg(miri)]
pub const LONG: Duration = Duration::from_secs(900);

/// Aborts the test process if the guard is not dropped within `LONG * 2`, so a deadlock
/// fails CI with a message instead of hanging it.
pub struct Watchdog(Option<mpsc::Sender<()>>);

pub fn watchdog(name: &'static str) -> Watchdog {
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(LONG * 2) {
            eprintln!("watchdog: test `{name}` hung for {:?}; aborting", LONG * 2);
            std::process::abort();
        }
    });
    Watchdog(Some(tx))
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.0.take());
    }
}

/// Holds tasks until opened: the test takes an exclusive lock on a file, tasks block
/// taking a shared lock on it (a real blocking wait in the kernel, no polling). Works for
/// threads and processes alike, since each open file description locks on its own.
pub struct Gate {
    path: PathBuf,
    #[cfg(not(miri))]
    file: Option<File>,
    #[cfg(miri)]
    file: Option<String>,
}

static GATES: AtomicUsize = AtomicUsize::new(0);

impl Gate {
    pub fn closed() -> Gate {
        let path = std::env::temp_dir().join(format!(
            "cf-gate-{}-{}",
            std::process::id(),
            GATES.fetch_add(1, Ordering::Relaxed)
        ));
        #[cfg(not(miri))]
        let file = {
            let file = File::create(&path).expect("create gate file");
            file.lock().expect("lock gate");
            file
        };
        // Miri runs no blocking `flock`: threads of this process wait on a condvar instead.
        #[cfg(miri)]
        let file = miri_gate::close(&path);
        Gate {
            path,
            file: Some(file),
        }
    }

    pub fn path(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    pub fn open(&mut self) {
        if let Some(f) = self.file.take() {
            #[cfg(not(miri))]
            f.unlock().expect("unlock gate");
            #[cfg(miri)]
            miri_gate::open(f);
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.open();
        #[cfg(not(miri))]
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Gates for the tests Miri runs (thread pools only): the closed gates of this process.
#[cfg(miri)]
mod miri_gate {
    use std::collections::HashSet;
    use std::path::Path;
    use std::sync::{Condvar, Mutex};

    static CLOSED: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    static OPENED: Condvar = Condvar::new();

    pub fn close(path: &Path) -> String {
        let key = path.to_string_lossy().into_owned();
        CLOSED
            .lock()
            .unwrap()
            .get_or_insert_default()
            .insert(key.clone());
        key
    }

    pub fn open(key: String) {
        CLOSED.lock().unwrap().get_or_insert_default().remove(&key);
        OPENED.notify_all();
    }

    pub fn wait(key: &str) {
        let mut closed = CLOSED.lock().unwrap();
        while closed.get_or_insert_default().contains(key) {
            closed = OPENED.wait(closed).unwrap();
        }
    }
}

/// Waits (bounded) until `cond` holds; for conditions no event signals, such as "the
/// workers have picked up the blocking tasks". Fails the test after `LONG`.
pub fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + LONG;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::yield_now();
    }
}

/// Joins a `multiprocessing::Process` within `LONG`; its exit code.
#[cfg(target_os = "linux")]
pub fn join(p: &concurrent_futures::multiprocessing::Process) -> i32 {
    p.join_timeout(LONG)
        .expect("started")
        .expect("the child did not exit in time")
}

/// A fresh path for a marker file.
pub fn marker(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "cf-mark-{tag}-{}-{}",
        std::process::id(),
        GATES.fetch_add(1, Ordering::Relaxed)
    ))
}

// ===== task functions (plain `fn` items, so every backend can run them) =====

pub fn double(x: u64) -> u64 {
    x * 2
}

pub fn fib(n: u64) -> u64 {
    if n < 2 { n } else { fib(n - 1) + fib(n - 2) }
}

/// Blocks until the gate at `path` opens, then returns `tag`.
pub fn hold(args: (String, u64)) -> u64 {
    let (path, tag) = args;
    #[cfg(not(miri))]
    File::open(&path)
        .expect("open gate file")
        .lock_shared()
        .expect("wait on gate");
    #[cfg(miri)]
    miri_gate::wait(&path);
    tag
}

/// Panics with a recognisable message when `x` is odd.
pub fn fail_on_odd(x: u64) -> u64 {
    if x % 2 == 1 {
        panic!("odd input {x}");
    }
    x
}

pub fn always_panic(_: ()) -> u64 {
    panic!("task exploded")
}

/// Waits on the gate (if any), then creates the marker file.
pub fn hold_then_touch(args: (Option<String>, String)) -> bool {
    let (gate, marker) = args;
    if let Some(gate) = gate {
        hold((gate, 0));
    }
    touch(marker)
}

/// Creates the file at `path` (proof that the task ran).
pub fn touch(path: String) -> bool {
    File::create(path).is_ok()
}

pub fn process_id(_: ()) -> u32 {
    std::process::id()
}

pub fn echo_bytes(b: Vec<u8>) -> usize {
    b.len()
}
