//! Program end waits for the work accepted by pools still alive (in a `static`, leaked), as
//! Python's interpreter exit does (CPython's `test_interpreter_shutdown` and
//! `test_hang_gh83386`, ported), and gives up after the exit timeout on a task that never
//! ends.
//!
//! Each scenario runs in a child: this test binary re-executed with only the `child` test,
//! which reads the scenario from the environment, builds its pools in statics and returns;
//! the harness then exits, and the end of that process is what is tested. Tasks wait on a
//! gate (a file lock) that the parent opens only once the child's `main` work is over.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{LazyLock, mpsc};
use std::time::{Duration, Instant};

use common::{Gate, LONG, marker, watchdog};
use concurrent_futures::{Executor, ProcessPoolExecutor, ThreadPoolExecutor};

static THREADS: LazyLock<ThreadPoolExecutor> = LazyLock::new(|| ThreadPoolExecutor::new(1));
static PROCESSES: LazyLock<ProcessPoolExecutor> = LazyLock::new(|| ProcessPoolExecutor::new(1));

fn exit_now(code: i32) -> u8 {
    std::process::exit(code)
}

/// The child's last word before its pools are waited for: an `atexit` handler registered
/// after the pools', so it runs before theirs (handlers run in reverse order).
extern "C" fn say_exiting() {
    let line = b"<<exiting>>\n";
    // SAFETY: writes a valid buffer of `line.len()` bytes to stdout; no Rust state touched.
    unsafe { libc::write(1, line.as_ptr().cast(), line.len()) };
}

/// Prints the outcome of the held task from the child process when it completes (the
/// proof that it completed before the child ended: a dead process prints nothing).
fn report(fut: &concurrent_futures::Future<bool>) {
    fut.add_done_callback(|f| println!("<<task done {:?}>>", f.result()));
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is set by the parent"))
}

/// The child's side: starts the scenario's work, says so, and returns (ending the process).
#[test]
fn child() {
    let Ok(scenario) = std::env::var("EXIT_WAIT_SCENARIO") else {
        return; // run directly: nothing to do
    };
    let gate = || Some(env("EXIT_WAIT_GATE"));
    let held = || (gate(), env("EXIT_WAIT_MARK_A"));
    match scenario.as_str() {
        // test_interpreter_shutdown: a pool in a static, never shut down.
        "static_threads" => {
            report(&THREADS.submit(common::hold_then_touch, held()));
        }
        "static_processes" => {
            report(&PROCESSES.submit(common::hold_then_touch, held()));
        }
        // test_hang_gh83386: shutdown(wait=False), then the program ends.
        "shutdown_nowait_threads" => {
            report(&THREADS.submit(common::hold_then_touch, held()));
            THREADS.shutdown(false);
        }
        "shutdown_nowait_processes" => {
            report(&PROCESSES.submit(common::hold_then_touch, held()));
            PROCESSES.shutdown(false);
        }
        // cancel_futures=True: the pending task is cancelled, the running one completes.
        "cancel_pending_threads" => {
            let running = THREADS.submit(common::hold_then_touch, held());
            report(&running);
            common::eventually("the first task runs", || running.running());
            THREADS.submit(common::hold_then_touch, (None, env("EXIT_WAIT_MARK_B")));
            THREADS.shutdown_with(false, true);
        }
        // `std::process::exit` instead of returning: the same wait, and its status stays.
        "process_exit_leaked_threads" => {
            let pool = Box::leak(Box::new(ThreadPoolExecutor::new(1)));
            report(&pool.submit(common::hold_then_touch, held()));
            // SAFETY: `say_exiting` is a plain `extern "C" fn()` that does not unwind.
            unsafe { libc::atexit(say_exiting) };
            println!("<<main returns>>");
            std::process::exit(3);
        }
        "leaked_processes" => {
            let pool = Box::leak(Box::new(ProcessPoolExecutor::new(1)));
            report(&pool.submit(common::hold_then_touch, held()));
        }
        // A task that never ends: the program ends after the exit timeout.
        "never_ends" => {
            concurrent_futures::set_exit_timeout(Some(Duration::from_millis(500)));
            let t = THREADS.submit(common::procs::forever, ());
            let p = PROCESSES.submit(common::procs::forever, ());
            common::eventually("both tasks run", || t.running() && p.running());
            println!("<<pids {:?}>>", PROCESSES.pids());
        }
        // A task that ends the program does not wait for its own pool.
        "exit_from_task" => {
            // (the default exit timeout, 60 s, is longer than the parent waits)
            let pool = Box::leak(Box::new(ThreadPoolExecutor::new(2)));
            let held = pool.submit(common::hold_then_touch, held());
            common::eventually("the held task runs", || held.running());
            pool.submit(exit_now, 7).result_timeout(LONG).unwrap();
            unreachable!("the task ends the program");
        }
        other => panic!("unknown scenario {other}"),
    }
    // SAFETY: `say_exiting` is a plain `extern "C" fn()` that does not unwind.
    unsafe { libc::atexit(say_exiting) };
    println!("<<main returns>>");
}

struct Run {
    child: Child,
    lines: mpsc::Receiver<String>,
    gate: Gate,
    a: String,
    b: String,
}

impl Run {
    fn start(scenario: &str) -> Run {
        let gate = Gate::closed();
        let (a, b) = (marker("a"), marker("b"));
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child", "--nocapture", "--test-threads=1"])
            .env("EXIT_WAIT_SCENARIO", scenario)
            .env("EXIT_WAIT_GATE", gate.path())
            .env("EXIT_WAIT_MARK_A", &a)
            .env("EXIT_WAIT_MARK_B", &b)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Run {
            child,
            lines,
            gate,
            a: a.to_string_lossy().into_owned(),
            b: b.to_string_lossy().into_owned(),
        }
    }

    /// Waits for the child's line `<<{prefix}...>>` and returns what follows the prefix.
    fn expect(&self, prefix: &str) -> String {
        let deadline = Instant::now() + LONG;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("no <<{prefix}>> from the child: {e}"));
            // (libtest may print `test child ... ` before it on the same line)
            let tag = format!("<<{prefix}");
            if let Some(start) = line.find(&tag) {
                let rest = &line[start + tag.len()..];
                return rest[..rest.find(">>").unwrap()].trim().to_owned();
            }
        }
    }

    /// Waits (bounded) for the child to exit; its status and stderr.
    fn finish(mut self) -> (ExitStatus, String) {
        let mut stderr = self.child.stderr.take().unwrap();
        let pid = self.child.id();
        let (tx, rx) = mpsc::channel();
        let mut child = self.child;
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            let _ = tx.send((child.wait().unwrap(), text));
        });
        rx.recv_timeout(LONG).unwrap_or_else(|_| {
            // SAFETY: `kill` has no memory effects; `pid` is our unreaped child.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("the child did not exit within {LONG:?}")
        })
    }
}

/// The child reaches its end with the task held, the parent opens the gate only then, and
/// the task's completion is reported by the child before it ends.
fn waits_then_runs_the_held_task(scenario: &str) {
    let mut run = Run::start(scenario);
    run.expect("main returns");
    run.expect("exiting");
    assert!(!Path::new(&run.a).exists(), "the task waits on the gate");
    run.gate.open();
    assert_eq!(run.expect("task done"), "Ok(true)", "{scenario}");
    let a = run.a.clone();
    let (status, stderr) = run.finish();
    assert!(status.success(), "{scenario}: {status:?}\n{stderr}");
    let _ = std::fs::remove_file(a);
}

#[test]
fn a_static_thread_pool_runs_its_accepted_task_before_the_program_ends() {
    let _w = watchdog("static_threads");
    waits_then_runs_the_held_task("static_threads");
}

#[test]
fn a_static_process_pool_runs_its_accepted_task_before_the_program_ends() {
    let _w = watchdog("static_processes");
    waits_then_runs_the_held_task("static_processes");
}

#[test]
fn a_leaked_process_pool_runs_its_accepted_task_before_the_program_ends() {
    let _w = watchdog("leaked_processes");
    waits_then_runs_the_held_task("leaked_processes");
}

#[test]
fn process_exit_waits_too_and_keeps_its_status() {
    let _w = watchdog("process_exit_leaked_threads");
    let mut run = Run::start("process_exit_leaked_threads");
    run.expect("exiting");
    run.gate.open();
    assert_eq!(run.expect("task done"), "Ok(true)");
    let a = run.a.clone();
    let (status, stderr) = run.finish();
    assert_eq!(status.code(), Some(3), "{stderr}");
    let _ = std::fs::remove_file(a);
}

#[test]
fn shutdown_without_wait_still_runs_accepted_work_at_exit_threads() {
    let _w = watchdog("shutdown_nowait_threads");
    waits_then_runs_the_held_task("shutdown_nowait_threads");
}

#[test]
fn shutdown_without_wait_still_runs_accepted_work_at_exit_processes() {
    let _w = watchdog("shutdown_nowait_processes");
    waits_then_runs_the_held_task("shutdown_nowait_processes");
}

#[test]
fn cancel_futures_drops_pending_work_and_exit_waits_for_the_running_task() {
    let _w = watchdog("cancel_pending_threads");
    let mut run = Run::start("cancel_pending_threads");
    run.expect("exiting");
    run.gate.open();
    assert_eq!(
        run.expect("task done"),
        "Ok(true)",
        "the running task completed"
    );
    let (a, b) = (run.a.clone(), run.b.clone());
    let (status, stderr) = run.finish();
    assert!(status.success(), "{status:?}\n{stderr}");
    assert!(!Path::new(&b).exists(), "the cancelled task never ran");
    let _ = std::fs::remove_file(a);
}

#[test]
fn a_task_that_never_ends_delays_the_end_by_the_exit_timeout_only() {
    let _w = watchdog("never_ends");
    let run = Run::start("never_ends");
    let pids: Vec<u32> = run
        .expect("pids")
        .trim_matches(['[', ']'])
        .split(", ")
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 1);
    run.expect("main returns");
    let (status, stderr) = run.finish();
    assert!(status.success(), "{status:?}\n{stderr}");
    assert!(
        stderr.contains("waited 500ms for the tasks of 2 live pool(s)"),
        "the program says what it gave up on: {stderr}"
    );
    // The worker process was killed, not left behind (and was reaped once its parent ended).
    common::eventually("the worker process has ended", || {
        common::procs::exited(pids[0])
    });
}

#[test]
fn exit_from_a_task_does_not_wait_for_its_own_pool() {
    let _w = watchdog("exit_from_task");
    let run = Run::start("exit_from_task");
    let (status, stderr) = run.finish();
    assert_eq!(status.code(), Some(7), "{stderr}");
}
