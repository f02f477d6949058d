//! `multiprocessing::Process`: lifecycle, exit codes, names, isolation, and the absence of
//! zombies and orphans.
#![cfg(target_os = "linux")]

mod common;

use common::procs::{exited as dead, gone as reaped, run_forever as forever};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::{LONG, eventually, join, watchdog};
use concurrent_futures::multiprocessing::{
    ConnectionError, Event, Pipe, Process, ProcessError, Queue, active_children, current_process,
};

fn noop(_: ()) {}

fn exit_with(code: i32) {
    std::process::exit(code)
}

fn panics(_: ()) {
    panic!("the target failed");
}

fn wait_for(e: Event) {
    e.wait();
}

#[test]
fn exit_codes_follow_python() {
    let _w = watchdog("exit_codes_follow_python");
    let ok = Process::new(noop, ());
    let failing = Process::new(panics, ());
    let exiting = Process::new(exit_with, 7);
    for p in [&ok, &failing, &exiting] {
        assert_eq!(p.exitcode(), None);
        p.start().unwrap();
    }
    assert_eq!(join(&ok), 0);
    assert_eq!(
        join(&failing),
        1,
        "a panicking target exits with 1, as an exception"
    );
    assert_eq!(join(&exiting), 7);

    let term = Process::new(forever, ());
    term.start().unwrap();
    assert!(term.is_alive());
    assert_eq!(term.exitcode(), None);
    term.terminate().unwrap();
    assert_eq!(join(&term), -libc::SIGTERM);
    let killed = Process::new(forever, ());
    killed.start().unwrap();
    killed.kill().unwrap();
    assert_eq!(join(&killed), -libc::SIGKILL);
    assert!(!killed.is_alive());
    // Signalling a finished child is harmless (it is reaped; its pid is not reused).
    killed.terminate().unwrap();
}

#[test]
fn misuse_is_an_error() {
    let p = Process::new(noop, ());
    assert_eq!(p.join(), Err(ProcessError::NotStarted));
    assert_eq!(p.terminate(), Err(ProcessError::NotStarted));
    assert!(!p.is_alive());
    p.start().unwrap();
    assert_eq!(p.start(), Err(ProcessError::AlreadyStarted));
    assert_eq!(p.set_daemon(true), Err(ProcessError::AlreadyStarted));
    assert_eq!(join(&p), 0);
}

fn report_identity(q: Queue<(String, u32, bool)>) {
    let me = current_process();
    q.put((me.name().to_string(), me.pid(), me.daemon()))
        .unwrap();
}

#[test]
fn names_pids_and_current_process() {
    let _w = watchdog("names_pids_and_current_process");
    let q = Queue::new(0);
    let named = Process::new(report_identity, q.clone()).with_name("block");
    let daemon = Process::new(report_identity, q.clone()).with_daemon(true);
    assert!(daemon.name().starts_with("Process-"));
    named.start().unwrap();
    daemon.start().unwrap();
    let mut got = vec![q.get_timeout(LONG).unwrap(), q.get_timeout(LONG).unwrap()];
    got.sort();
    let mut want = vec![
        ("block".to_string(), named.pid().unwrap(), false),
        (daemon.name(), daemon.pid().unwrap(), true),
    ];
    want.sort();
    assert_eq!(got, want);
    assert_ne!(named.pid(), Some(std::process::id()));
    assert_eq!(current_process().name(), "MainProcess");
    join(&named);
    join(&daemon);
}

static COUNT: AtomicU32 = AtomicU32::new(0);

fn add_ten(q: Queue<u32>) {
    COUNT.fetch_add(10, Ordering::SeqCst);
    q.put(COUNT.load(Ordering::SeqCst)).unwrap();
}

#[test]
fn memory_is_not_shared() {
    let _w = watchdog("memory_is_not_shared");
    let q = Queue::new(0);
    let p = Process::new(add_ten, q.clone());
    p.start().unwrap();
    assert_eq!(
        q.get_timeout(LONG),
        Ok(10),
        "the child changed its own copy"
    );
    join(&p);
    assert_eq!(COUNT.load(Ordering::SeqCst), 0, "the parent's stays 0");
}

#[test]
fn active_children_lists_running_children_only() {
    let _w = watchdog("active_children_lists_running_children_only");
    let e = Event::new();
    let p1 = Process::new(wait_for, e.clone());
    let p2 = Process::new(wait_for, e.clone());
    p1.start().unwrap();
    p2.start().unwrap();
    let pids: Vec<_> = active_children().iter().filter_map(Process::pid).collect();
    assert!(pids.contains(&p1.pid().unwrap()) && pids.contains(&p2.pid().unwrap()));
    e.set();
    join(&p1);
    join(&p2);
    let pids: Vec<_> = active_children().iter().filter_map(Process::pid).collect();
    assert!(!pids.contains(&p1.pid().unwrap()) && !pids.contains(&p2.pid().unwrap()));
}

#[test]
fn join_timeout_returns_while_the_child_runs() {
    let _w = watchdog("join_timeout_returns_while_the_child_runs");
    let e = Event::new();
    let p = Process::new(wait_for, e.clone());
    p.start().unwrap();
    assert_eq!(p.join_timeout(Duration::from_millis(30)), Ok(None));
    assert!(p.is_alive());
    e.set();
    assert_eq!(join(&p), 0);
}

#[test]
fn no_zombies_after_join_or_drop() {
    let _w = watchdog("no_zombies_after_join_or_drop");
    // Joined: reaped.
    let p = Process::new(noop, ());
    p.start().unwrap();
    let pid = p.pid().unwrap();
    join(&p);
    assert!(reaped(pid), "a joined child is reaped");
    // Dropped without join: the drop waits for a non-daemonic child and reaps it.
    let p = Process::new(noop, ());
    p.start().unwrap();
    let pid = p.pid().unwrap();
    drop(p);
    assert!(
        reaped(pid),
        "a dropped non-daemonic child is joined and reaped"
    );
    // A running daemonic child whose handle is dropped is reaped when it ends.
    let e = Event::new();
    let p = Process::new(wait_for, e.clone()).with_daemon(true);
    p.start().unwrap();
    let pid = p.pid().unwrap();
    drop(p);
    assert!(!dead(pid), "a dropped daemonic child keeps running");
    e.set();
    eventually("the dropped daemon is reaped", || reaped(pid));
}

/// The middle process: starts a daemonic and a non-daemonic child that run forever, reports
/// their pids, then waits to be killed.
fn middle(q: Queue<u32>) {
    let daemon = Process::new(forever, ()).with_daemon(true);
    let regular = Process::new(forever, ());
    daemon.start().unwrap();
    regular.start().unwrap();
    q.put(daemon.pid().unwrap()).unwrap();
    q.put(regular.pid().unwrap()).unwrap();
    q.join_thread();
    forever(());
}

#[test]
fn no_orphans_when_the_parent_is_killed() {
    let _w = watchdog("no_orphans_when_the_parent_is_killed");
    let q = Queue::new(0);
    let parent = Process::new(middle, q.clone());
    parent.start().unwrap();
    let daemon = q.get_timeout(LONG).unwrap();
    let regular = q.get_timeout(LONG).unwrap();
    assert!(!dead(daemon) && !dead(regular));
    parent.kill().unwrap(); // SIGKILL: no chance to clean up
    assert_eq!(join(&parent), -libc::SIGKILL);
    eventually("the daemonic grandchild dies with its parent", || {
        dead(daemon)
    });
    eventually("the non-daemonic grandchild dies with its parent", || {
        dead(regular)
    });
}

#[test]
fn a_non_capturing_closure_crosses() {
    // A non-capturing closure is a fn item of this executable: it crosses.
    let p = Process::new(|x: u32| assert_eq!(x, 3), 3);
    p.start().unwrap();
    assert_eq!(join(&p), 0);
}

const HELPER: &str = "CF_MP_PROCESS_HELPER";

/// A start that the operating system refuses fails with `ProcessError::Spawn`, and a pipe it
/// refuses with `ConnectionError::Os`, whose `source()` chains reach the system's error (no
/// descriptor could be opened). Run in a child process of its
/// own (this binary re-run), since it lowers `RLIMIT_NOFILE`.
#[test]
fn failed_start_keeps_the_os_error() {
    let _w = watchdog("failed_start_keeps_the_os_error");
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "failed_start_helper",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("HELPER DONE"),
        "helper failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "run by failed_start_keeps_the_os_error, in a process of its own"]
fn failed_start_helper() {
    if std::env::var_os(HELPER).is_none() {
        return;
    }
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` writes one `rlimit`.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    let saved = lim;
    lim.rlim_cur = 0;
    // SAFETY: `setrlimit` reads one `rlimit`; this helper process is alone in using it.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
    let p = Process::new(noop, ());
    let err = p.start().unwrap_err();
    let pipe = Pipe::new::<u32>(true).unwrap_err();
    // SAFETY: as above; the limit is restored before anything else opens a descriptor.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &saved) }, 0);
    assert!(matches!(pipe, ConnectionError::Os(_)), "{pipe:?}");
    assert!(pipe.to_string().starts_with("pipe error: "), "{pipe}");
    assert!(
        os_error_beneath(&pipe).is_some(),
        "no operating-system error beneath {pipe}"
    );
    assert!(matches!(err, ProcessError::Spawn(_)), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("the child process could not be started: "),
        "{err}"
    );
    // (ipc-channel reports the refused socket as EBADF, from its use of the -1 it got.)
    assert!(
        os_error_beneath(&err).is_some(),
        "no operating-system error beneath {err}"
    );
    // With descriptors again, a new process starts.
    let again = Process::new(noop, ());
    again.start().unwrap();
    assert_eq!(join(&again), 0);
    println!("HELPER DONE");
}

/// The code of the last `std::io::Error` in `err`'s chain of sources.
fn os_error_beneath(err: &dyn std::error::Error) -> Option<i32> {
    let mut cause = err.source();
    let mut os = None;
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            os = io.raw_os_error();
        }
        cause = e.source();
    }
    os
}
