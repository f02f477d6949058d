//! What happens to workers when their parent dies or the user presses Ctrl-C. Each test
//! runs a helper process (this test binary again, running the ignored `helper` test) that
//! builds a pool, reports its workers' pids, and waits to be killed.

mod common;

use common::procs::exited;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use common::{eventually, watchdog};
use concurrent_futures::{Executor, ProcessPoolExecutor};

const HELPER: &str = "CF_LIFECYCLE_HELPER";

/// Runs only inside the helper process.
#[test]
#[ignore = "helper process for the other tests of this file"]
fn helper() {
    if std::env::var_os(HELPER).is_none() {
        return;
    }
    let pool = ProcessPoolExecutor::new(2);
    assert_eq!(pool.submit(common::double, 1).result(), Ok(2));
    let pids: Vec<String> = pool.pids().iter().map(u32::to_string).collect();
    println!("PIDS {}", pids.join(" "));
    // Wait to be killed (stdin stays open).
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

#[allow(
    clippy::zombie_processes,
    reason = "the child is returned to the caller, which waits for it"
)]
fn start_helper(own_group: bool) -> (Child, Vec<u32>) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "helper",
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(HELPER, "1")
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    if own_group {
        cmd.process_group(0);
    }
    // As from a terminal: Ctrl-C's default action, whatever this test process inherited
    // (a shell's background job ignores SIGINT).
    // SAFETY: `signal` is async-signal-safe, so it may run between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the helper ended early"
        );
        // The harness prints "test helper ... " without a newline first.
        if let Some((_, rest)) = line.split_once("PIDS ") {
            let pids = rest
                .split_whitespace()
                .map(|p| p.parse().unwrap())
                .collect();
            return (child, pids);
        }
    }
}

#[test]
fn workers_exit_when_the_parent_is_killed() {
    let _w = watchdog("workers_exit_when_the_parent_is_killed");
    let (mut helper, pids) = start_helper(false);
    assert_eq!(pids.len(), 2);
    assert!(pids.iter().all(|&p| !exited(p)));
    helper.kill().unwrap(); // SIGKILL: no destructor, no shutdown runs
    helper.wait().unwrap();
    let t = Instant::now();
    eventually("the orphaned workers exit", || {
        pids.iter().all(|&p| exited(p))
    });
    eprintln!(
        "workers exited {:?} after their parent was killed",
        t.elapsed()
    );
}

#[test]
fn ctrl_c_ends_parent_and_workers_without_stray_output() {
    let _w = watchdog("ctrl_c_ends_parent_and_workers_without_stray_output");
    let (mut helper, pids) = start_helper(true);
    let mut stderr = helper.stderr.take().unwrap();
    // SAFETY: kill(2) on the helper's own process group (it leads it), as a terminal
    // does on Ctrl-C.
    unsafe {
        libc::kill(-(helper.id() as i32), libc::SIGINT);
    }
    let status = helper.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(libc::SIGINT),
        "the parent ends on Ctrl-C"
    );
    eventually("the workers exit", || pids.iter().all(|&p| exited(p)));
    let mut err = String::new();
    stderr.read_to_string(&mut err).unwrap();
    assert!(err.trim().is_empty(), "stray output on Ctrl-C: {err}");
}
