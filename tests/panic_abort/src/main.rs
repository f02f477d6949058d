//! Run without arguments, checks that a task's panic in a program built with
//! `panic = "abort"` is printed before the process aborts: it runs itself once per pool
//! (`thread`, `process`) and reads the child's stderr. Exits non-zero with the reason if not.

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use concurrent_futures::{Executor, ProcessPoolExecutor, TaskError, ThreadPoolExecutor};

const PANIC_LINE: u32 = line!() + 3;
fn boom(x: u32) -> u32 {
    if x == 7 {
        panic!("task {x} failed");
    }
    x
}

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("thread") => {
            let pool = ThreadPoolExecutor::new(2);
            let r = pool.submit(boom, 7).result();
            // Not reached: the panic aborts the process.
            println!("the task's panic did not abort: {r:?}");
        }
        Some("process") => {
            // The worker aborts; the pool reports its death.
            let pool = ProcessPoolExecutor::new(1);
            match pool.submit(boom, 7).result() {
                Err(TaskError::WorkerDied { .. }) => println!("worker died"),
                other => println!("unexpected: {other:?}"),
            }
        }
        Some(other) => panic!("unknown mode {other}"),
        None => {
            check("thread", |status, _| status.signal() == Some(SIGABRT));
            check("process", |status, out| {
                status.success() && out.contains("worker died")
            });
            println!(
                "panic = \"abort\": a task's panic is printed before the abort, on both pools"
            );
        }
    }
}

/// The signal `std::process::abort` raises.
const SIGABRT: i32 = 6;

/// Runs this program in `mode` (at most 60 s) and checks its stderr and how it ended.
fn check(mode: &str, ended_well: impl Fn(std::process::ExitStatus, &str) -> bool) {
    let exe = std::env::current_exe().expect("this program's path");
    let mut child = Command::new(exe)
        .arg(mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run this program again");
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).map(|_| s)
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{mode}: the child did not end within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    out.read_to_string(&mut stdout).expect("the child's stdout");
    let stderr = reader.join().unwrap().expect("the child's stderr");
    let location = format!("src/main.rs:{PANIC_LINE}:");
    for wanted in [
        "task 7 failed",
        location.as_str(),
        "a task panicked in a program built with `panic = \"abort\"`",
    ] {
        assert!(
            stderr.contains(wanted),
            "{mode}: stderr lacks {wanted:?}\n--- stderr:\n{stderr}--- stdout:\n{stdout}"
        );
    }
    assert!(
        ended_well(status, &stdout),
        "{mode}: ended with {status:?}\n--- stderr:\n{stderr}--- stdout:\n{stdout}"
    );
    println!("{mode}: printed, then {status:?}");
}
