//! `MpiPoolExecutor` under a real `mpirun` (feature `mpi`; needs Open MPI or MPICH).
//!
//! This test binary has no libtest harness: MPI is initialized once per process, and every
//! rank must take part in every pool session, so the binary runs its cases itself. Run by
//! `cargo test`, it is the *driver*: it never touches MPI; it starts each scenario as a job
//! (`mpirun -n 3 <this binary>` with `CF_MPI_CASE` set, or the binary alone for the
//! singleton case), with a deadline, and checks how the job ended. Inside a job, rank 0
//! runs the case; the other ranks serve.
//!
//! * `suite`: the shared behavioural suite, one pool session per test, plus the MPI-only
//!   behaviour (tasks on other ranks, stealing, payloads, callbacks that wait, idle CPU);
//! * `singleton`: started without mpirun, the pool runs on local processes;
//! * `dynamic*`: the pool spawns its own workers (`max_workers`, `"mpi:2"`), from a program
//!   started alone or by `mpirun -n 1`: the suite, a worker that crashes, a client killed
//!   while its workers run tasks (none may outlive it), three pools alive at once, a worker
//!   spawned on a named host;
//! * `crash`, `exit`, `stopped`, `absent`, `fingerprint`: a rank that dies, exits, stops
//!   answering, never joins, or runs another executable. The job must end (or the error
//!   come) in bounded time, with a clear message, and leave no process behind.
//!
//! Arguments select checks by a part of their name (`cargo test --features mpi --test mpi --
//! crash`). `.ci/mpi-two-hosts` runs some of them across two simulated hosts, with
//! `CF_MPI_OTHER_HOST` naming the host of the workers.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Gate, LONG};
use concurrent_futures::{
    BuildError, Bytes, Executor, ExitStatus, MpiPoolExecutor, Shared, SubmitError, TaskError,
};
use serde::{Deserialize, Serialize};

const CASE: &str = "CF_MPI_CASE";
/// Set (to a host name) when the job's ranks after rank 0 run on another host.
const OTHER_HOST: &str = "CF_MPI_OTHER_HOST";

fn main() {
    match std::env::var(CASE) {
        Err(_) => drive(),
        Ok(case) => {
            let _w = common::watchdog("mpi case");
            let code = match case.as_str() {
                "suite" => suite(),
                "singleton" => singleton(),
                "dynamic" => dynamic(),
                "dynamic_spec" => dynamic_spec(),
                "dynamic_crash" => dynamic_crash(),
                "dynamic_orphans" => dynamic_orphans(),
                "dynamic_static" => dynamic_static(),
                "dynamic_refused" => dynamic_refused(),
                "dynamic_many" => dynamic_many(),
                "dynamic_host" => dynamic_host(),
                "crash" => crash(),
                "exit" => exit_in_task(),
                "stopped" => stopped(),
                "absent" => absent(),
                "fingerprint" => fingerprint(),
                "idle_yield" => idle_yield(),
                #[cfg(feature = "tracing")]
                "tracing" => tracing_case(),
                other => {
                    eprintln!("unknown case {other}");
                    2
                }
            };
            std::process::exit(code);
        }
    }
}

// ===== the driver =====

/// What a job printed and how it ended.
struct Job {
    code: Option<i32>,
    output: String,
}

fn is_open_mpi() -> bool {
    Command::new("mpirun")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("Open MPI"))
        .unwrap_or(false)
}

/// `mpirun` with the flags a small machine (and root, in containers) needs.
fn mpirun() -> Command {
    let mut cmd = Command::new("mpirun");
    if is_open_mpi() {
        cmd.arg("--oversubscribe");
        // SAFETY: `geteuid` has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            cmd.arg("--allow-run-as-root");
        }
        cmd.args(["-x", CASE]);
        if std::env::var_os(OTHER_HOST).is_some() {
            cmd.args(["-x", OTHER_HOST]);
        }
    }
    cmd
}

/// Runs `cmd` to its end, or kills it after `limit`; its output, stdout and stderr merged.
fn run_job(mut cmd: Command, case: &str, limit: Duration) -> Job {
    let start = Instant::now();
    use std::os::unix::process::CommandExt;
    let mut child = cmd
        .env(CASE, case)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start mpirun: is Open MPI (openmpi-bin) or MPICH installed?");
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        let _ = tx.send(s);
    });
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        let _ = tx2.send(s);
    });
    // Both pipes close when the job's processes are all gone.
    let mut output = String::new();
    for _ in 0..2 {
        match rx.recv_timeout(limit.saturating_sub(start.elapsed())) {
            Ok(s) => output.push_str(&s),
            Err(_) => {
                // Leave nothing behind: the job's process group, and every rank it named.
                // SAFETY: `kill` takes plain integers.
                unsafe {
                    libc::kill(-(child.id() as i32), libc::SIGKILL);
                    for pid in printed_pids(&output) {
                        libc::kill(pid as i32, libc::SIGKILL);
                    }
                }
                let _ = child.wait();
                panic!("case `{case}` did not end within {limit:?}; output so far:\n{output}");
            }
        }
    }
    let status = child.wait().expect("wait for mpirun");
    Job {
        code: status.code(),
        output,
    }
}

/// This binary started alone (a singleton); as root, with Open MPI's leave to run as root,
/// which the runtime it starts for `MPI_Comm_spawn` needs.
fn alone() -> Command {
    let mut cmd = Command::new(exe());
    // SAFETY: `geteuid` has no preconditions.
    if is_open_mpi() && unsafe { libc::geteuid() } == 0 {
        cmd.env("OMPI_ALLOW_RUN_AS_ROOT", "1")
            .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
    }
    cmd
}

fn mpi_job(case: &str, ranks: u32, limit: Duration) -> Job {
    let mut cmd = mpirun();
    cmd.args(["-n", &ranks.to_string()]).arg(exe());
    run_job(cmd, case, limit)
}

fn exe() -> PathBuf {
    std::env::current_exe().expect("current exe")
}

/// The pids a case printed as `pids: 1 2 3`.
fn printed_pids(output: &str) -> Vec<u32> {
    output
        .lines()
        .filter_map(|l| l.strip_prefix("pids:"))
        .flat_map(|l| l.split_whitespace().map(|p| p.parse().expect("a pid")))
        .collect()
}

fn assert_all_gone(pids: &[u32], case: &str) {
    assert!(!pids.is_empty(), "case `{case}` printed no pids");
    common::eventually("every rank of the job is gone", || {
        pids.iter()
            .all(|p| !Path::new(&format!("/proc/{p}")).exists())
    });
}

fn drive() {
    if std::env::args().any(|a| a == "--list") {
        // Test listers (nextest) ask what is inside: one test, this driver.
        println!("mpi: test");
        return;
    }
    // Arguments select checks by a part of their name, as libtest's filters do.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let mut passed = 0;
    let mut failed = Vec::new();
    let checks: &[(&str, fn())] = &[
        ("suite under mpirun -n 3", check_suite),
        ("singleton: local workers", check_singleton),
        (
            "dynamic mode from a singleton: the suite on spawned workers",
            check_dynamic,
        ),
        (
            "dynamic mode under mpirun -n 1, from a spec",
            check_dynamic_spec,
        ),
        (
            "dynamic mode: a spawned worker that crashes ends the job",
            check_dynamic_crash,
        ),
        (
            "dynamic mode: a killed client leaves no worker behind",
            check_dynamic_orphans,
        ),
        (
            "program end runs the accepted tasks of a pool in a static",
            check_dynamic_static,
        ),
        (
            "dynamic mode: a spawn the MPI library refuses is an error, and the end is clean",
            check_dynamic_refused,
        ),
        (
            "dynamic mode: three pools alive at once, each started while the others work",
            check_dynamic_many,
        ),
        (
            "dynamic mode: a worker spawned on a named host runs there",
            check_dynamic_host,
        ),
        ("a worker rank that crashes ends the job", check_crash),
        ("a task that exits its rank ends the job", check_exit),
        ("a stopped rank fails pending futures", check_stopped),
        ("a rank that never starts: start fails", check_absent),
        (
            "a rank running another executable is refused",
            check_fingerprint,
        ),
        (
            "Open MPI's yield in empty polls is off while pools poll, unless asked for",
            check_idle_yield,
        ),
        #[cfg(feature = "tracing")]
        (
            "tracing: a closed span per task, started on a worker rank",
            check_tracing,
        ),
    ];
    for (name, check) in checks {
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let started = Instant::now();
        match std::panic::catch_unwind(check) {
            Ok(()) => {
                passed += 1;
                println!("check {name} ... ok ({:.1?})", started.elapsed());
            }
            Err(_) => {
                println!("check {name} ... FAILED");
                failed.push(*name);
            }
        }
    }
    println!("\nmpi: {passed} passed, {} failed", failed.len());
    if !failed.is_empty() {
        std::process::exit(1);
    }
}

fn check_idle_yield() {
    if !is_open_mpi() {
        return; // an Open MPI setting
    }
    // Three ranks on a small machine: Open MPI turns the yield on by itself when a node is
    // oversubscribed; whatever it chose, the pool polls without it.
    let job = mpi_job("idle_yield", 3, LONG * 2);
    assert_eq!(job.code, Some(0), "{}", job.output);
    assert_eq!(
        job.output.matches("yields when idle: false").count(),
        3,
        "{}",
        job.output
    );
    // Asked for explicitly: left as asked, on every rank.
    let mut cmd = mpirun();
    cmd.args(["--mca", "mpi_yield_when_idle", "1", "-n", "3"])
        .arg(exe());
    let job = run_job(cmd, "idle_yield", LONG * 2);
    assert_eq!(job.code, Some(0), "{}", job.output);
    assert_eq!(
        job.output.matches("yields when idle: true").count(),
        3,
        "{}",
        job.output
    );
}

fn check_suite() {
    let job = mpi_job("suite", 3, Duration::from_secs(600));
    print!("{}", job.output);
    assert_eq!(job.code, Some(0), "the suite failed under mpirun");
    assert!(job.output.contains(" passed, 0 failed"), "no summary line");
}

fn check_singleton() {
    let job = run_job(Command::new(exe()), "singleton", LONG * 2);
    assert_eq!(job.code, Some(0), "singleton case failed:\n{}", job.output);
}

fn check_dynamic() {
    let job = run_job(alone(), "dynamic", Duration::from_secs(600));
    print!("{}", job.output);
    assert_eq!(job.code, Some(0), "the dynamic suite failed");
    assert!(job.output.contains(" passed, 0 failed"), "no summary line");
    assert_all_gone(&printed_pids(&job.output), "dynamic");
}

fn check_dynamic_spec() {
    let mut cmd = mpirun();
    cmd.args(["-n", "1"]).arg(exe());
    let job = run_job(cmd, "dynamic_spec", LONG * 2);
    assert_eq!(job.code, Some(0), "{}", job.output);
    said_and_left_nothing(&job, "dynamic_spec", "dynamic_spec: ok");
}

fn check_dynamic_crash() {
    let job = run_job(alone(), "dynamic_crash", LONG * 2);
    assert!(
        job.output.contains(") died; MPI cannot continue"),
        "{}",
        job.output
    );
    assert_eq!(job.code, Some(1), "{}", job.output);
    said_and_left_nothing(
        &job,
        "dynamic_crash",
        "dynamic_crash: the future failed as expected",
    );
}

fn check_dynamic_orphans() {
    let job = run_job(alone(), "dynamic_orphans", LONG * 2);
    // The client killed itself; its workers must not outlive it.
    said_and_left_nothing(&job, "dynamic_orphans", "dynamic_orphans: holding");
}

/// The job printed `line`, and every process it named is gone.
fn said_and_left_nothing(job: &Job, case: &str, line: &str) {
    assert!(job.output.contains(line), "{}", job.output);
    assert_all_gone(&printed_pids(&job.output), case);
}

fn check_dynamic_static() {
    let dir = common::marker("static");
    std::fs::create_dir_all(&dir).expect("marker dir");
    let mut cmd = alone();
    cmd.env("CF_MPI_MARKS", &dir);
    let job = run_job(cmd, "dynamic_static", LONG * 2);
    let ran = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(job.code, Some(0), "{}", job.output);
    assert_eq!(
        ran, STATIC_TASKS,
        "accepted tasks lost at exit:\n{}",
        job.output
    );
    said_and_left_nothing(&job, "dynamic_static", "dynamic_static: returning");
}

fn check_dynamic_many() {
    let job = run_job(alone(), "dynamic_many", LONG * 2);
    assert_eq!(job.code, Some(0), "{}", job.output);
    said_and_left_nothing(&job, "dynamic_many", "dynamic_many: ok");
}

/// The host to spawn on: `CF_MPI_OTHER_HOST`, a host of the job's hostfile other than
/// rank 0's (the two-host CI run, `.ci/mpi-two-hosts`, sets it), else this one.
fn spawn_host() -> String {
    std::env::var(OTHER_HOST).unwrap_or_else(|_| hostname(()))
}

fn check_dynamic_host() {
    let host = spawn_host();
    let mut cmd = mpirun();
    cmd.env(OTHER_HOST, &host).args(["-n", "1"]).arg(exe());
    let job = run_job(cmd, "dynamic_host", LONG * 2);
    assert_eq!(job.code, Some(0), "{}", job.output);
    said_and_left_nothing(
        &job,
        "dynamic_host",
        &format!("dynamic_host: the worker runs on {host}"),
    );
}

fn check_dynamic_refused() {
    let job = run_job(alone(), "dynamic_refused", LONG * 2);
    assert_eq!(job.code, Some(0), "{}", job.output);
    said_and_left_nothing(&job, "dynamic_refused", "dynamic_refused: ok");
}

fn check_crash() {
    let job = mpi_job("crash", 3, LONG * 2);
    assert_ne!(job.code, Some(0), "the job went on after a rank crashed");
    assert!(
        job.output.contains("signal 6") || job.output.contains("Aborted"),
        "mpirun did not say how the rank died:\n{}",
        job.output
    );
    if let Ok(other) = std::env::var(OTHER_HOST) {
        let said = format!("crash: the worker ranks run on {other}");
        assert!(job.output.contains(&said), "{}", job.output);
    }
    assert_all_gone(&printed_pids(&job.output), "crash");
}

fn check_exit() {
    let job = mpi_job("exit", 3, LONG * 2);
    assert_ne!(job.code, Some(0));
    assert!(
        job.output
            .contains("exiting in the middle of a pool session"),
        "no clear message:\n{}",
        job.output
    );
    assert_all_gone(&printed_pids(&job.output), "exit");
}

fn check_stopped() {
    let verdict = common::marker("verdict");
    let mut cmd = mpirun();
    cmd.args(["-x", "CF_MPI_VERDICT", "-n", "3"])
        .arg(exe())
        .env("CF_MPI_VERDICT", &verdict);
    let job = run_job(cmd, "stopped", LONG * 2);
    let said = std::fs::read_to_string(&verdict).unwrap_or_default();
    let _ = std::fs::remove_file(&verdict);
    assert_eq!(
        said, "stopped: futures failed as expected",
        "rank 0 did not see the stopped rank fail its futures:\n{}",
        job.output
    );
    assert!(
        job.output.contains("has not answered for"),
        "{}",
        job.output
    );
    assert_ne!(job.code, Some(0));
    assert_all_gone(&printed_pids(&job.output), "stopped");
}

fn check_absent() {
    let job = mpi_job("absent", 3, LONG * 2);
    said_and_left_nothing(&job, "absent", "absent: start failed as expected");
}

fn check_fingerprint() {
    // Rank 0 runs this binary, rank 1 an example: two different executables.
    let other = exe()
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("examples").join("mpi_map"))
        .expect("target dir");
    assert!(
        other.exists(),
        "{} is missing: run the MPI tests with `cargo test --features mpi`, which builds the \
         examples too",
        other.display()
    );
    let mut cmd = mpirun();
    cmd.args(["-n", "1"])
        .arg(exe())
        .args([":", "-n", "1"])
        .arg(&other);
    let job = run_job(cmd, "fingerprint", LONG * 2);
    assert_eq!(job.code, Some(0), "{}", job.output);
    assert!(
        job.output.contains("fingerprint: refused as expected"),
        "{}",
        job.output
    );
    assert!(
        job.output.contains("runs a different executable"),
        "{}",
        job.output
    );
}

// ===== inside a job =====

fn print_pids(pool: &MpiPoolExecutor) {
    let mut pids = vec![std::process::id()];
    pids.extend(pool.ranks().iter().map(|r| r.pid));
    println!(
        "pids: {}",
        pids.iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    );
}

/// Every rank goes through the same list; rank 0 runs each test in a new session.
fn suite() -> i32 {
    let mut tests: Vec<Test> = SUITE.to_vec();
    tests.push((
        "tasks_run_on_other_ranks",
        tasks_run_on_other_ranks as fn(&_),
    ));
    tests.extend_from_slice(POOL_CHECKS);
    tests.push(("idle_ranks_do_not_spin", idle_ranks_do_not_spin));
    let (mut passed, mut failed, mut client) = (0, 0, false);
    for (name, test) in tests {
        let Some(pool) = MpiPoolExecutor::start() else {
            continue; // a worker rank: that session is over, on to the next
        };
        client = true;
        if run_test(name, test, pool) {
            passed += 1;
        } else {
            failed += 1;
        }
    }
    // Sessions with an initializer (rank 0's runs on every worker rank): a failed one
    // breaks its pool only, and the next session's runs on the same ranks.
    let broken = MpiPoolExecutor::builder()
        .initializer(bad_init)
        .start()
        .expect("a pool whose initializer fails still starts");
    if let Some(pool) = broken {
        let ok = run_test(
            "failed_initializer_breaks_the_pool",
            failed_initializer_breaks_the_pool,
            pool,
        );
        (passed, failed) = (passed + usize::from(ok), failed + usize::from(!ok));
    }
    let token = new_init_token();
    let with_init = MpiPoolExecutor::builder()
        .initializer_with(record_init, token)
        .start()
        .expect("start a pool with an initializer");
    if let Some(pool) = with_init {
        let ok = run_test(
            "initializer_runs_once_on_every_rank_before_its_first_task",
            initializer_ran_once_everywhere,
            pool,
        );
        (passed, failed) = (passed + usize::from(ok), failed + usize::from(!ok));
    }
    // A session with settings of its own (every rank builds it alike).
    let configured = MpiPoolExecutor::builder()
        .window(1)
        .idle_backoff_cap(Duration::from_micros(200))
        .start()
        .expect("start a configured pool");
    if let Some(pool) = configured {
        if run_test(
            "window_limits_tasks_in_flight",
            window_limits_tasks_in_flight,
            pool,
        ) {
            passed += 1;
        } else {
            failed += 1;
        }
    }
    if client {
        println!("\nsuite: {passed} passed, {failed} failed");
    }
    i32::from(failed > 0)
}

/// A named test of a pool session on rank 0.
type Test = (&'static str, fn(&MpiPoolExecutor));

/// Runs `test` on `pool`, then ends the session; says how it went. True if it passed.
fn run_test(name: &str, test: fn(&MpiPoolExecutor), pool: MpiPoolExecutor) -> bool {
    let started = Instant::now();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| test(&pool)));
    drop(pool);
    match outcome {
        Ok(()) => println!("test {name} ... ok ({:.1?})", started.elapsed()),
        Err(_) => println!("test {name} ... FAILED"),
    }
    outcome.is_ok()
}

/// The pool's own checks, on the ranks of a job and on spawned workers alike.
const POOL_CHECKS: &[Test] = &[
    (
        "panics_fail_the_task_and_the_rank_lives",
        panics_fail_the_task_and_the_rank_lives,
    ),
    ("large_payloads_both_ways", large_payloads_both_ways),
    (
        "an_unknown_table_id_fails_its_task",
        an_unknown_table_id_fails_its_task,
    ),
    (
        "a_shared_table_reaches_each_rank_once",
        a_shared_table_reaches_each_rank_once,
    ),
    (
        "a_table_captured_by_task_reaches_each_rank_once",
        a_table_captured_by_task_reaches_each_rank_once,
    ),
    (
        "bursts_of_tables_dropped_in_flight_are_released_on_every_rank",
        bursts_of_tables_dropped_in_flight_are_released_on_every_rank,
    ),
    ("values_that_cannot_cross", values_that_cannot_cross),
    (
        "idle_rank_takes_work_queued_behind_a_long_task",
        idle_rank_takes_work_queued_behind_a_long_task,
    ),
    (
        "callback_may_wait_on_another_task",
        callback_may_wait_on_another_task,
    ),
    ("map_of_many_items", map_of_many_items),
    (
        "max_workers_is_0_after_shutdown",
        max_workers_is_0_after_shutdown,
    ),
    (
        "cancel_running_leaves_a_running_task_alone",
        cancel_running_leaves_a_running_task_alone,
    ),
    (
        "captured_tasks_run_on_the_ranks",
        captured_tasks_run_on_the_ranks,
    ),
    (
        "stats_count_what_the_pool_did",
        stats_count_what_the_pool_did,
    ),
    ("timeline_has_a_bar_per_task", timeline_has_a_bar_per_task),
];

/// A rank is never killed: `cancel_running` on a task sent to a rank returns false and the
/// task runs to its end; a task still queued on rank 0 is cancelled as by `cancel()`.
fn cancel_running_leaves_a_running_task_alone(pool: &MpiPoolExecutor) {
    let mut gate = Gate::closed();
    let held: Vec<_> = (0..pool.max_workers() as u64)
        .map(|i| pool.submit(common::hold, (gate.path(), i)))
        .collect();
    for f in &held {
        common::eventually("the held tasks are sent", || f.running());
    }
    let behind: Vec<_> = (0..200).map(|i| pool.submit(quick, i)).collect();
    let queued = behind
        .iter()
        .rev()
        .find(|f| f.state() == concurrent_futures::State::Pending)
        .expect("a task still queued on rank 0");
    assert!(queued.cancel_running(), "queued: cancelled as by cancel()");
    assert!(queued.cancelled());
    for f in &held {
        assert!(!f.cancel_running(), "a rank's task cannot be stopped");
        assert!(f.running());
    }
    gate.open();
    for (i, f) in held.iter().enumerate() {
        assert_eq!(f.result_timeout(LONG), Ok(i as u64), "it ran to its end");
    }
    let cancelled = behind.iter().filter(|f| f.cancelled()).count();
    assert_eq!(cancelled, 1);
    for f in behind.iter().filter(|f| !f.cancelled()) {
        assert!(f.result_timeout(LONG).is_ok());
    }
}

/// A task written with `task!` runs on the worker ranks through `submit`, `map` and
/// `map_unordered`, its captures (a struct-like tuple and a buffer larger than a message's
/// inline part) sent with it; a closure that captures values is refused with a typed error.
fn captured_tasks_run_on_the_ranks(pool: &MpiPoolExecutor) {
    let settings = (3u64, String::from("rank"));
    let big = vec![2u8; 100 << 10];
    let task = concurrent_futures::task!([settings, big] |x: u64| -> (u64, String, u32) {
        let sum: u64 = big.iter().map(|&b| u64::from(b)).sum();
        (x * settings.0 + sum, settings.1.clone(), std::process::id())
    });
    let want = |x: u64| x * 3 + 2 * (100 << 10);
    let (v, label, pid) = pool.submit(task.clone(), 2).result_timeout(LONG).unwrap();
    assert_eq!((v, label.as_str()), (want(2), "rank"));
    assert_ne!(pid, std::process::id(), "the task ran on another rank");
    let opts = concurrent_futures::MapOptions::new().chunksize(10);
    let out: Vec<u64> = pool
        .map_with(task.clone(), 0..200, opts)
        .map(|r| r.unwrap().0)
        .collect();
    assert_eq!(out, (0..200).map(want).collect::<Vec<_>>());
    let mut out: Vec<u64> = pool
        .map_unordered(task, 0..50)
        .map(|r| r.unwrap().0)
        .collect();
    out.sort_unstable();
    assert_eq!(out, (0..50).map(want).collect::<Vec<_>>());
    let k = 3u64;
    assert!(matches!(
        pool.try_submit(move |x: u64| x * k, 1),
        Err(SubmitError::CapturingClosure { .. })
    ));
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// The timeline: one bar per task or chunk recorded, with its outcome, on a worker's row,
/// within the time the test waited (a bar is placed no later than its result arrived), as
/// long as the worker ran it; nothing once recording stopped.
fn timeline_has_a_bar_per_task(pool: &MpiPoolExecutor) {
    let before = Instant::now();
    pool.start_recording();
    let ok: Vec<_> = (0..20).map(|i| pool.submit(common::double, i)).collect();
    let bad: Vec<_> = (0..3)
        .map(|_| pool.submit(common::always_panic, ()))
        .collect();
    let slow = pool.submit(sleep_ms, 20);
    for (i, f) in ok.iter().enumerate() {
        assert_eq!(f.result_timeout(LONG), Ok(2 * i as u64));
    }
    for f in &bad {
        assert!(matches!(
            f.result_timeout(LONG),
            Err(TaskError::Panicked(_))
        ));
    }
    assert_eq!(slow.result_timeout(LONG), Ok(20));
    let chunks = concurrent_futures::MapOptions::new().chunksize(10);
    assert_eq!(pool.map_with(common::double, 0..50u64, chunks).count(), 50);
    let bound = before.elapsed();
    pool.stop_recording();
    pool.submit(common::double, 1).result_timeout(LONG).unwrap();
    let t = pool.take_timeline();
    assert_eq!(t.workers, pool.max_workers());
    assert_eq!(t.tasks.len(), 29, "{:?}", t.tasks);
    let named = |n: &str| t.tasks.iter().filter(|s| s.name == n).count();
    assert_eq!((named("task"), named("map")), (24, 5));
    let ended = |o| t.tasks.iter().filter(|s| s.outcome == o).count();
    assert_eq!(
        (
            ended(concurrent_futures::TaskOutcome::Ok),
            ended(concurrent_futures::TaskOutcome::Panicked)
        ),
        (26, 3)
    );
    for s in &t.tasks {
        assert!(
            s.worker < t.workers && s.start <= s.end && s.end <= bound,
            "{s:?} ({bound:?})"
        );
    }
    assert!(
        t.tasks
            .iter()
            .any(|s| s.end - s.start >= Duration::from_millis(20)),
        "the 20 ms task's bar: {:?}",
        t.tasks
    );
    assert!(t.marks.is_empty());
    // While recording, calls are timed: each worker's busy time is the length of its bars
    // (at least: a bar placed before the timeline's zero is cut there).
    let stats = pool.stats();
    for (row, w) in stats.workers.iter().enumerate() {
        let bars: Duration = (t.tasks.iter().filter(|s| s.worker == row))
            .map(|s| s.end - s.start)
            .sum();
        assert!(w.busy >= bars, "worker {row}: {stats:?}");
        assert_eq!(w.busy.is_zero(), bars.is_zero(), "worker {row}: {stats:?}");
    }
    assert!(
        stats
            .workers
            .iter()
            .any(|w| w.busy >= Duration::from_millis(20))
    );
}

/// The statistics: every task submitted is counted once, as done or failed (a panic), the
/// counts add up once the session is over, and bytes crossed both ways.
fn stats_count_what_the_pool_did(pool: &MpiPoolExecutor) {
    let fresh = pool.stats();
    assert_eq!((fresh.submitted, fresh.bytes_sent), (0, 0), "{fresh:?}");
    let ok: Vec<_> = (0..30).map(|i| pool.submit(common::double, i)).collect();
    let bad: Vec<_> = (0..5)
        .map(|_| pool.submit(common::always_panic, ()))
        .collect();
    for (i, f) in ok.iter().enumerate() {
        assert_eq!(f.result_timeout(LONG), Ok(2 * i as u64));
    }
    for f in &bad {
        assert!(matches!(
            f.result_timeout(LONG),
            Err(TaskError::Panicked(_))
        ));
    }
    let chunks = concurrent_futures::MapOptions::new().chunksize(10);
    assert_eq!(
        pool.map_with(common::double, 0..100u64, chunks).count(),
        100
    );
    let ranks = pool.ranks().len();
    pool.shutdown(true);
    let stats = pool.stats();
    assert!(stats.settled(), "{stats:?}");
    assert_eq!((stats.queued, stats.running), (0, 0), "{stats:?}");
    // One entry per worker rank; every task and chunk ran on one of them, once.
    assert_eq!(stats.workers.len(), ranks, "{stats:?}");
    let ran: u64 = stats.workers.iter().map(|w| w.tasks_run).sum();
    assert_eq!(ran, 45, "{stats:?}");
    let stolen: u64 = stats.workers.iter().map(|w| w.stolen).sum();
    let given: u64 = stats.workers.iter().map(|w| w.given_away).sum();
    assert_eq!(stolen, given, "{stats:?}");
    // 35 tasks and 10 chunks of `map`.
    assert_eq!(
        (stats.submitted, stats.done, stats.failed, stats.cancelled),
        (45, 40, 5, 0)
    );
    assert!(
        stats.bytes_sent > 0 && stats.bytes_received > 0,
        "{stats:?}"
    );
    assert_eq!((stats.worker_deaths, stats.worker_restarts), (0, 0));
}

/// As mpi4py's `num_workers`: the workers of a pool that was shut down are not its own any
/// more.
fn max_workers_is_0_after_shutdown(pool: &MpiPoolExecutor) {
    assert_eq!(pool.max_workers(), pool.ranks().len());
    assert!(pool.max_workers() > 0);
    assert_eq!(pool.submit(common::double, 4).result_timeout(LONG), Ok(8));
    pool.shutdown(true);
    assert_eq!(pool.max_workers(), 0);
    assert!(matches!(
        pool.try_submit(common::double, 1),
        Err(SubmitError::Shutdown)
    ));
}

// ----- initializers -----

/// The tokens of the initializers this process ran, in order.
static INIT_LOG: std::sync::Mutex<Vec<u64>> = std::sync::Mutex::new(Vec::new());
/// The token rank 0 gave the current pool's initializer.
static INIT_TOKEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A token no earlier initializer of this job used.
fn new_init_token() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    INIT_TOKEN.store(t, std::sync::atomic::Ordering::SeqCst);
    t
}

/// Shared state: refused at submission (needs serde's `rc` feature, on for the tests).
fn bump(total: std::sync::Arc<std::sync::Mutex<u64>>) -> u64 {
    let mut t = total.lock().unwrap();
    *t += 1;
    *t
}

fn keep_counter(_: std::sync::atomic::AtomicU64) {}

fn record_init(token: u64) {
    INIT_LOG.lock().unwrap().push(token);
}

/// This worker's pid and the initializers it ran.
fn init_log(_: ()) -> (u32, Vec<u64>) {
    (std::process::id(), INIT_LOG.lock().unwrap().clone())
}

fn bad_init() {
    panic!("no config");
}

static PLAIN_INITS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

fn count_init() {
    PLAIN_INITS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
}

/// This worker's pid and how many times `count_init` ran in it.
fn plain_inits(_: ()) -> (u32, u32) {
    (
        std::process::id(),
        PLAIN_INITS.load(std::sync::atomic::Ordering::SeqCst),
    )
}

/// Runs `task` until every worker of the pool answered (bounded); each worker's answer.
fn from_every_worker<R: concurrent_futures::Payload + Clone>(
    pool: &MpiPoolExecutor,
    task: fn(()) -> (u32, R),
) -> std::collections::HashMap<u32, R> {
    let pids: HashSet<u32> = pool.ranks().iter().map(|r| r.pid).collect();
    assert!(!pids.is_empty());
    let mut seen = std::collections::HashMap::new();
    let deadline = Instant::now() + LONG;
    while seen.len() < pids.len() {
        assert!(Instant::now() < deadline, "not every worker ran a task");
        let futs: Vec<_> = (0..20).map(|_| pool.submit(task, ())).collect();
        for f in futs {
            let (pid, r) = f.result_timeout(LONG).expect("the task ran");
            assert!(pids.contains(&pid), "a task ran outside the workers");
            seen.insert(pid, r);
        }
    }
    seen
}

/// Every worker ran this pool's initializer exactly once, before its first task.
fn initializer_ran_once_everywhere(pool: &MpiPoolExecutor) {
    let token = INIT_TOKEN.load(std::sync::atomic::Ordering::SeqCst);
    for (pid, log) in from_every_worker(pool, init_log) {
        assert_eq!(
            log.iter().filter(|&&t| t == token).count(),
            1,
            "worker {pid} ran this pool's initializer other than once: {log:?}"
        );
        assert_eq!(log.last(), Some(&token), "worker {pid}: {log:?}");
    }
}

/// A panicking initializer breaks the pool: every submission says why.
fn failed_initializer_breaks_the_pool(pool: &MpiPoolExecutor) {
    for _ in 0..3 {
        match pool.try_submit(common::double, 1) {
            Err(SubmitError::Broken(m)) => {
                assert!(m.contains("initializer failed"), "{m}");
                assert!(m.contains("no config"), "{m}");
            }
            other => panic!("expected a broken pool, got {other:?}"),
        }
    }
    let fut = pool.submit(common::double, 1);
    assert!(
        matches!(
            fut.result_timeout(LONG),
            Err(TaskError::Submit(SubmitError::Broken(_)))
        ),
        "{:?}",
        fut.result_timeout(LONG)
    );
}

/// The shared behavioural suite, for this backend.
const SUITE: &[Test] = suite_table!(MpiPoolExecutor);

/// With `window(1)`, each of the two ranks holds one task: the others stay pending (and
/// cancellable) until a rank has room.
fn window_limits_tasks_in_flight(pool: &MpiPoolExecutor) {
    let mut gate = Gate::closed();
    let futs: Vec<_> = (0..6)
        .map(|i| pool.submit(common::hold, (gate.path(), i)))
        .collect();
    common::eventually("both ranks hold a task", || {
        futs.iter().filter(|f| f.running()).count() == 2
    });
    let pending = futs
        .iter()
        .filter(|f| f.state() == concurrent_futures::State::Pending)
        .count();
    assert_eq!(pending, 4, "more tasks sent than the windows hold");
    assert!(futs[5].cancel(), "a task beyond the windows is cancellable");
    gate.open();
    for (i, f) in futs[..5].iter().enumerate() {
        assert_eq!(f.result_timeout(LONG), Ok(i as u64));
    }
    assert!(futs[5].cancelled());
}

fn whoami(_: ()) -> u32 {
    std::process::id()
}

fn tasks_run_on_other_ranks(pool: &MpiPoolExecutor) {
    assert_eq!(pool.max_workers(), 2);
    let ranks: HashSet<u32> = pool.ranks().iter().map(|r| r.pid).collect();
    assert_eq!(
        pool.ranks().iter().map(|r| r.rank).collect::<Vec<_>>(),
        vec![1, 2]
    );
    let futs: Vec<_> = (0..50).map(|_| pool.submit(whoami, ())).collect();
    let seen: HashSet<u32> = futs.iter().map(|f| f.result().unwrap()).collect();
    assert!(!seen.contains(&std::process::id()), "a task ran on rank 0");
    assert!(seen.is_subset(&ranks), "{seen:?} not in {ranks:?}");
}

fn panics_fail_the_task_and_the_rank_lives(pool: &MpiPoolExecutor) {
    let futs: Vec<_> = (0..4)
        .map(|_| pool.submit(common::always_panic, ()))
        .collect();
    for f in &futs {
        match f.result() {
            Err(TaskError::Panicked(p)) => {
                assert_eq!(p.message(), "task exploded");
                assert!(p.location().unwrap().contains("common/mod.rs"));
            }
            other => panic!("expected a panic, got {other:?}"),
        }
    }
    // Every rank still serves (asked until each answered: how 20 quick tasks spread over
    // the ranks depends on how fast each comes back, which a loaded machine changes).
    let served = from_every_worker(pool, pid_only);
    assert_eq!(served.len(), pool.ranks().len());
}

fn pid_only(_: ()) -> (u32, ()) {
    (std::process::id(), ())
}

fn checksum(b: Bytes) -> (usize, u64) {
    (b.len(), b.iter().map(|&x| u64::from(x)).sum())
}

fn make_bytes(n: usize) -> Bytes {
    Bytes::from((0..n).map(|i| (i % 251) as u8).collect::<Vec<u8>>())
}

fn large_payloads_both_ways(pool: &MpiPoolExecutor) {
    let n = 48 << 20;
    let data = make_bytes(n);
    let want: u64 = data.iter().map(|&x| u64::from(x)).sum();
    assert_eq!(pool.submit(checksum, data).result().unwrap(), (n, want));
    let back = pool.submit(make_bytes, 20 << 20).result().unwrap();
    assert_eq!(back.len(), 20 << 20);
    assert_eq!(back[251 * 3 + 7], 7);
    // A plain Vec<u8> crosses too.
    assert_eq!(
        pool.submit(common::echo_bytes, vec![1u8; 3 << 20]).result(),
        Ok(3 << 20)
    );
}

/// What a task saw of the table it read, on the rank that ran it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct TableSeen {
    sum: u64,
    pid: u32,
    /// Where the table's items are in that process.
    addr: usize,
    /// The tables the rank holds, and how many it was ever given.
    held: usize,
    installed: u64,
}

fn seen(table: &[u64], i: usize) -> TableSeen {
    let (held, installed) = concurrent_futures::__shared_tables_here();
    TableSeen {
        sum: stride_sum(table, i),
        pid: std::process::id(),
        addr: table.as_ptr() as usize,
        held,
        installed,
    }
}

fn stride_sum(table: &[u64], i: usize) -> u64 {
    table
        .iter()
        .skip(i)
        .step_by(16)
        .fold(0u64, |a, &x| a.wrapping_add(x))
}

fn table_seen((table, i): (Shared<[u64]>, usize)) -> TableSeen {
    seen(&table, i)
}

/// The pid of the rank that runs it, the tables it holds, and how many it was ever given.
fn tables_of_rank(_: ()) -> (u32, usize, u64) {
    let (held, installed) = concurrent_futures::__shared_tables_here();
    (std::process::id(), held, installed)
}

/// What every worker rank says (`tables_of_rank`), once `done` holds for all of them:
/// probes go out in rounds until each rank answered one that satisfies it, within `LONG`.
fn every_rank(
    pool: &MpiPoolExecutor,
    what: &str,
    done: impl Fn(usize, u64) -> bool,
) -> HashMap<u32, (usize, u64)> {
    let pids: HashSet<u32> = pool.ranks().iter().map(|r| r.pid).collect();
    let mut got = HashMap::new();
    let deadline = Instant::now() + LONG;
    while got.len() < pids.len() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting until {what}: {got:?}"
        );
        let probes: Vec<_> = (0..2 * pids.len())
            .map(|_| pool.submit(tables_of_rank, ()))
            .collect();
        for f in probes {
            let (pid, held, installed) = f.result_timeout(LONG).unwrap();
            assert!(pids.contains(&pid), "a probe ran in {pid}, not on a rank");
            if done(held, installed) {
                got.insert(pid, (held, installed));
            }
        }
    }
    got
}

fn table_data(items: usize, seed: u64) -> Vec<u64> {
    (0..items as u64)
        .map(|i| i.wrapping_mul(0x9E37_79B9).wrapping_add(seed))
        .collect()
}

/// Checks that the tasks read `table` whole, and that each rank that ran one was given it
/// once (`before`: what it was given before) and kept it at one address for all its tasks.
fn check_once(table: &[u64], seen: &[(usize, TableSeen)], before: &HashMap<u32, (usize, u64)>) {
    let mut per_rank: HashMap<u32, HashSet<(usize, u64)>> = HashMap::new();
    for (i, s) in seen {
        assert_eq!(s.sum, stride_sum(table, *i), "item {i}");
        assert_eq!(
            s.held, 1,
            "the rank holds the table while tasks read it: {s:?}"
        );
        let given = before.get(&s.pid).expect("a task ran on a rank").1;
        assert_eq!(
            s.installed,
            given + 1,
            "the rank was given the table once: {s:?}"
        );
        per_rank
            .entry(s.pid)
            .or_default()
            .insert((s.addr, s.installed));
    }
    for (pid, views) in per_rank {
        assert_eq!(
            views.len(),
            1,
            "rank pid {pid}: one copy for all tasks: {views:?}"
        );
    }
}

/// A 4 MiB table used by 200 tasks (100 submitted alone, 100 in a `map` whose chunks name
/// it for every item) reaches each rank once, kept there at one address for all its
/// tasks; after the last handle is dropped, every rank lets it go.
fn a_shared_table_reaches_each_rank_once(pool: &MpiPoolExecutor) {
    // (None held: the ranks let the table kept by the last session go when it ended.)
    let before = every_rank(pool, "every rank holds no table", |held, _| held == 0);
    KEPT.lock().unwrap().take();
    let data = table_data(1 << 19, 1);
    let table = Shared::new(data.clone());
    assert_eq!(table.len() * 8, 4 << 20);
    let sent_before = pool.stats().bytes_sent;
    let alone: Vec<_> = (0..100)
        .map(|i| (i % 16, pool.submit(table_seen, (table.clone(), i % 16))))
        .collect();
    let mut seen: Vec<(usize, TableSeen)> = alone
        .into_iter()
        .map(|(i, f)| (i, f.result_timeout(LONG).unwrap()))
        .collect();
    let opts = concurrent_futures::MapOptions::new().chunksize(10);
    seen.extend(
        pool.map_with(table_seen, (0..100).map(|i| (table.clone(), i % 16)), opts)
            .enumerate()
            .map(|(i, r)| (i % 16, r.unwrap())),
    );
    check_once(&data, &seen, &before);
    // What the pool sent (the statistics count every message): the table once per rank
    // that ran a task, and small messages.
    let sent = pool.stats().bytes_sent - sent_before;
    let ranks = pool.max_workers() as u64;
    assert!(
        sent >= 4 << 20 && sent < (ranks + 1) * (4 << 20),
        "{sent} bytes sent to {ranks} ranks for a table of 4 MiB"
    );
    drop(table);
    every_rank(pool, "every rank let the table go", |held, _| held == 0);
}

/// A table captured by `task!` reaches each rank once too, through `submit` and `map`.
fn a_table_captured_by_task_reaches_each_rank_once(pool: &MpiPoolExecutor) {
    let before = every_rank(pool, "every rank holds no table", |held, _| held == 0);
    let data = table_data(1 << 19, 2);
    let table = Shared::new(data.clone());
    // (The task holds the only handle.)
    let task = concurrent_futures::task!([table] |i: usize| -> TableSeen { seen(table, i) });
    let alone: Vec<_> = (0..100)
        .map(|i| (i % 16, pool.submit(task.clone(), i % 16)))
        .collect();
    let mut seen: Vec<(usize, TableSeen)> = alone
        .into_iter()
        .map(|(i, f)| (i, f.result_timeout(LONG).unwrap()))
        .collect();
    let opts = concurrent_futures::MapOptions::new().chunksize(10);
    seen.extend(
        pool.map_with(task.clone(), (0..100).map(|i| i % 16), opts)
            .enumerate()
            .map(|(i, r)| (i % 16, r.unwrap())),
    );
    check_once(&data, &seen, &before);
    drop(task);
    every_rank(pool, "every rank let the captured table go", |held, _| {
        held == 0
    });
}

/// The table's sum (from `salt`), and how many tables the rank holds.
fn sum_salted((table, salt): (Shared<[u64]>, u64)) -> (u64, usize) {
    let sum = table.iter().fold(salt, |a, &x| a.wrapping_add(x));
    (sum, concurrent_futures::__shared_tables_here().0)
}

/// Rounds of several tables (of 8 KiB to 1 MiB), each named by many tasks and dropped
/// while they are in flight: every task reads its own table whole, each rank is given each
/// table at most once, and in the end every rank holds none.
fn bursts_of_tables_dropped_in_flight_are_released_on_every_rank(pool: &MpiPoolExecutor) {
    let before = every_rank(pool, "every rank holds no table", |held, _| held == 0);
    let mut tables_made = 0u64;
    for round in 0..5u64 {
        let datas: Vec<Vec<u64>> = (0..4u64)
            .map(|t| table_data(1024 << (2 * t + round % 2), round * 10 + t))
            .collect();
        tables_made += datas.len() as u64;
        let tables: Vec<Shared<[u64]>> = datas.iter().cloned().map(Shared::new).collect();
        let futs: Vec<_> = (0..200u64)
            .map(|i| {
                let t = (i % 4) as usize;
                (t, i, pool.submit(sum_salted, (tables[t].clone(), i)))
            })
            .collect();
        let items: Vec<_> = (0..100u64)
            .map(|i| (tables[(i % 4) as usize].clone(), i))
            .collect();
        let mapped = pool.map(sum_salted, items);
        // The last handles go while the tasks are queued or running.
        drop(tables);
        for (t, i, f) in futs {
            let want = datas[t].iter().fold(i, |a, &x| a.wrapping_add(x));
            let (sum, held) = f.result_timeout(LONG).unwrap();
            assert_eq!(sum, want, "round {round} task {i}");
            assert!(held >= 1, "the rank holds the table its task reads");
        }
        for (i, r) in mapped.enumerate() {
            let t = i % 4;
            let want = datas[t].iter().fold(i as u64, |a, &x| a.wrapping_add(x));
            let (sum, held) = r.unwrap();
            assert_eq!(sum, want, "round {round} map item {i}");
            assert!(held >= 1, "the rank holds the table its task reads");
        }
    }
    let after = every_rank(pool, "every rank let every table go", |held, _| held == 0);
    for (pid, (_, installed)) in after {
        let given = installed - before[&pid].1;
        assert!(
            given <= tables_made,
            "rank pid {pid} was given {given} tables for {tables_made}"
        );
    }
}

/// Outlives the session of `an_unknown_table_id_fails_its_task`.
static KEPT: std::sync::Mutex<Option<Shared<[u64]>>> = std::sync::Mutex::new(None);

/// A table id that no rank was given fails the task that names it with a codec error, and
/// the rank goes on with real tables. The real table outlives the pool: the ranks let it
/// go when the session ends (the next session's first check finds none held).
fn an_unknown_table_id_fails_its_task(pool: &MpiPoolExecutor) {
    match pool.submit(forged_len, Forged(None)).result_timeout(LONG) {
        Err(TaskError::Codec(m)) => assert!(m.contains("unknown"), "{m}"),
        other => panic!("expected a codec error, got {other:?}"),
    }
    let table = Shared::new(table_data(5000, 3));
    let lens: Vec<_> = (0..4 * pool.max_workers())
        .map(|_| pool.submit(forged_len, Forged(Some(table.clone()))))
        .collect();
    for len in lens {
        assert_eq!(len.result_timeout(LONG), Ok(5000));
    }
    *KEPT.lock().unwrap() = Some(table);
}

/// A `Shared` as it is encoded, or an id that names no table.
#[derive(Debug)]
struct Forged(Option<Shared<[u64]>>);

impl Serialize for Forged {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Some(t) => t.serialize(s),
            None => s.serialize_newtype_variant("Shared", 0, "Id", &(u64::MAX - 7, 64u64)),
        }
    }
}

impl<'de> Deserialize<'de> for Forged {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Shared::deserialize(d).map(|t| Forged(Some(t)))
    }
}

fn forged_len(t: Forged) -> usize {
    t.0.map_or(0, |t| t.len())
}

/// Serializes only when it is allowed to.
#[derive(Debug, Clone)]
struct Picky(bool);

impl Serialize for Picky {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 {
            s.serialize_bool(true)
        } else {
            Err(serde::ser::Error::custom(
                "this value refuses to be encoded",
            ))
        }
    }
}

impl<'de> Deserialize<'de> for Picky {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        bool::deserialize(d).map(Picky)
    }
}

fn refuse_result(ok: bool) -> Picky {
    Picky(ok)
}

fn takes_picky(p: Picky) -> bool {
    p.0
}

fn values_that_cannot_cross(pool: &MpiPoolExecutor) {
    match pool.try_submit(takes_picky, Picky(false)) {
        Err(SubmitError::Codec(m)) => assert!(m.contains("refuses to be encoded"), "{m}"),
        other => panic!("expected a codec error, got {other:?}"),
    }
    match pool.submit(refuse_result, false).result() {
        Err(TaskError::Codec(m)) => assert!(m.contains("refuses to be encoded"), "{m}"),
        other => panic!("expected a codec error, got {other:?}"),
    }
    // Nothing else was lost.
    assert!(pool.submit(takes_picky, Picky(true)).result().unwrap());
    assert!(pool.submit(refuse_result, true).result().unwrap().0);
}

/// Reports the rank it ran on.
fn quick(i: u64) -> (u64, u32) {
    (i, std::process::id())
}

fn idle_rank_takes_work_queued_behind_a_long_task(pool: &MpiPoolExecutor) {
    let mut long_gate = Gate::closed();
    let mut short_gate = Gate::closed();
    let long = pool.submit(common::hold, (long_gate.path(), 1));
    common::eventually("the long task runs", || long.running());
    let short = pool.submit(common::hold, (short_gate.path(), 2));
    common::eventually("the short task runs", || short.running());
    // Both ranks are busy: these queue behind both tasks (and some stay pending).
    let futs: Vec<_> = (0..16).map(|i| pool.submit(quick, i)).collect();
    short_gate.open();
    // All finish while the long task still holds its rank: those queued behind it were
    // given back and ran on the rank that fell idle.
    let mut pids = HashSet::new();
    for f in &futs {
        let (_, pid) = f
            .result_timeout(LONG)
            .unwrap_or_else(|e| panic!("a task stuck behind the long one: {e}"));
        pids.insert(pid);
    }
    assert!(!long.done(), "the long task ended early");
    assert_eq!(pids.len(), 1, "everything ran on the rank that was free");
    assert_eq!(short.result_timeout(LONG), Ok(2));
    long_gate.open();
    assert_eq!(long.result_timeout(LONG), Ok(1));
}

fn callback_may_wait_on_another_task(pool: &MpiPoolExecutor) {
    let mut gate = Gate::closed();
    let later = pool.submit(common::hold, (gate.path(), 7));
    let first = pool.submit(common::double, 21);
    let (tx, rx) = mpsc::channel();
    // The callback runs on rank 0's MPI thread, and blocks there on `later`: the pool must
    // keep going meanwhile.
    first.add_done_callback(move |f| {
        let _ = tx.send((f.result(), later.result()));
    });
    common::eventually("the first task is done", || first.done());
    gate.open();
    let (a, b) = rx.recv_timeout(LONG).expect("the callback never finished");
    assert_eq!((a, b), (Ok(42), Ok(7)));
    // And the pool still works after it.
    assert_eq!(pool.submit(common::double, 1).result_timeout(LONG), Ok(2));
}

/// CPU time (user + system) a process has used, from `/proc/<pid>/stat`.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("a rank on this host");
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // SAFETY: `sysconf` has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    Duration::from_secs_f64(ticks / hz)
}

fn idle_ranks_do_not_spin(pool: &MpiPoolExecutor) {
    assert_eq!(pool.submit(common::double, 1).result(), Ok(2));
    let mut pids: Vec<u32> = pool.ranks().iter().map(|r| r.pid).collect();
    pids.push(std::process::id());
    let before: Vec<Duration> = pids.iter().map(|&p| cpu_time(p)).collect();
    let start = Instant::now();
    // Idle: nothing in flight. (A wait on a channel that nobody sends to, bounded.)
    let (_tx, rx) = mpsc::channel::<()>();
    let _ = rx.recv_timeout(Duration::from_secs(2));
    let wall = start.elapsed();
    for (p, b) in pids.iter().zip(before) {
        let used = cpu_time(*p) - b;
        // A blocking MPI receive would burn ~90% of a core; the backoff costs ~1%. The
        // bound is loose because the machine is shared; the benchmark reports the figure.
        assert!(
            used.as_secs_f64() < 0.25 * wall.as_secs_f64(),
            "pid {p} used {used:?} of CPU in {wall:?} while idle"
        );
    }
}

fn map_of_many_items(pool: &MpiPoolExecutor) {
    let sum: u64 = pool
        .map(common::double, 0..200_000u64)
        .map(Result::unwrap)
        .sum();
    assert_eq!(sum, 2 * (199_999 * 200_000 / 2));
    let mut out: Vec<u64> = pool
        .map_unordered(common::double, 0..10_000u64)
        .map(Result::unwrap)
        .collect();
    out.sort_unstable();
    assert_eq!(out, (0..10_000u64).map(|x| 2 * x).collect::<Vec<_>>());
}

fn singleton() -> i32 {
    // Not started by mpirun: the pool runs on local worker processes.
    let pool = MpiPoolExecutor::builder()
        .local_workers(2)
        .start()
        .expect("a singleton starts local workers")
        .expect("the only rank is the client");
    assert_eq!(pool.max_workers(), 2);
    assert!(pool.ranks().is_empty());
    let pid = pool.submit(whoami, ()).result().unwrap();
    assert_ne!(pid, std::process::id(), "tasks run in other processes");
    assert_eq!(pool.map(common::double, 0..100u64).count(), 100);
    // Local workers are a process pool's: a task sent to one can be stopped.
    let gate = Gate::closed();
    let held = pool.submit(common::hold, (gate.path(), 1));
    common::eventually("the held task is sent", || held.running());
    assert!(held.cancel_running(), "a local worker's task is stopped");
    assert_eq!(held.result_timeout(LONG), Err(TaskError::Cancelled));
    drop(gate);
    pool.shutdown(true);
    assert_eq!(pool.max_workers(), 0, "a pool shut down reports no workers");
    // An initializer runs in every local worker, once, before its first task.
    let pool = MpiPoolExecutor::builder()
        .local_workers(2)
        .initializer(count_init)
        .start()
        .expect("local workers with an initializer")
        .expect("the only rank is the client");
    let futs: Vec<_> = (0..20).map(|_| pool.submit(plain_inits, ())).collect();
    for f in futs {
        let (pid, inits) = f.result_timeout(LONG).unwrap();
        assert_ne!(pid, std::process::id());
        assert_eq!(inits, 1, "worker {pid} ran the initializer {inits} times");
    }
    drop(pool);
    // The local processes run an initializer with an argument too, once each, with the
    // value given (a large one crosses in shared memory).
    let token = new_init_token();
    let pool = MpiPoolExecutor::builder()
        .local_workers(2)
        .initializer_with(record_init, token)
        .start()
        .expect("local workers with an initializer and its argument")
        .expect("the only rank is the client");
    let futs: Vec<_> = (0..20).map(|_| pool.submit(init_log, ())).collect();
    for f in futs {
        let (pid, log) = f.result_timeout(LONG).unwrap();
        assert_ne!(pid, std::process::id());
        assert_eq!(log, vec![token], "worker {pid} ran {log:?}");
    }
    // A `Shared` table reaches each local worker once, by id, as on a process pool.
    let data = table_data(1 << 16, 4);
    let table = Shared::new(data.clone());
    let seen: Vec<TableSeen> = pool
        .map(table_seen, (0..40).map(|i| (table.clone(), i % 16)))
        .map(Result::unwrap)
        .collect();
    for (i, s) in seen.iter().enumerate() {
        assert_eq!(s.sum, stride_sum(&data, i % 16));
        // (New processes: this is the first table they were given.)
        assert_eq!((s.held, s.installed), (1, 1), "worker {}: {s:?}", s.pid);
    }
    // Shared state is refused there as on the ranks.
    let shared = pool.try_submit(bump, std::sync::Arc::new(std::sync::Mutex::new(0)));
    assert!(
        matches!(shared, Err(SubmitError::SharedState { .. })),
        "{shared:?}"
    );
    drop(pool);
    match MpiPoolExecutor::builder()
        .local_workers(2)
        .initializer_with(keep_counter, std::sync::atomic::AtomicU64::new(0))
        .start()
    {
        Err(BuildError::Initializer(SubmitError::SharedState { .. })) => {}
        other => panic!("expected a refusal, got {:?}", other.map(|p| p.is_some())),
    }
    // Asked for no local workers, it says why instead.
    match MpiPoolExecutor::builder().local_workers(0).start() {
        Err(BuildError::Mpi(m)) => assert!(m.to_string().contains("mpirun"), "{m}"),
        other => panic!("expected an error, got {:?}", other.map(|p| p.is_some())),
    }
    println!("singleton: ok");
    0
}

/// A dynamic pool of `n` workers (spawned, or kept from an earlier pool of this size).
fn spawned_pool(n: usize) -> MpiPoolExecutor {
    MpiPoolExecutor::builder()
        .max_workers(n)
        .start()
        .expect("spawn the workers")
        .expect("dynamic mode returns the pool on the caller")
}

/// Dynamic mode from a program started alone: every test of the suite on a pool of two
/// spawned workers (a session each: the workers are spawned once, then kept between
/// sessions), and the pool's own checks.
fn dynamic() -> i32 {
    let spawn = || spawned_pool(2);
    let pool = spawn();
    assert_eq!(pool.max_workers(), 2);
    let ranks = pool.ranks();
    assert_eq!(
        ranks.iter().map(|r| r.rank).collect::<Vec<_>>(),
        vec![0, 1],
        "spawned workers are ranks 0 and 1 of their group"
    );
    print_pids(&pool);
    let mut pids: HashSet<u32> = HashSet::new();
    for _ in 0..200 {
        pids.insert(pool.submit(whoami, ()).result_timeout(LONG).unwrap());
    }
    let expected: HashSet<u32> = ranks.iter().map(|r| r.pid).collect();
    assert!(
        !pids.is_empty() && pids.is_subset(&expected),
        "tasks ran in {pids:?}, not in the spawned workers {expected:?}"
    );
    assert!(!pids.contains(&std::process::id()));
    drop(pool);
    // The next pool of the same size takes the same workers, idle since; another size
    // spawns its own.
    let again = spawn();
    let again_pids: HashSet<u32> = again.ranks().iter().map(|r| r.pid).collect();
    assert_eq!(again_pids, expected, "the idle workers were not reused");
    drop(again);
    let three = spawned_pool(3);
    print_pids(&three);
    let three_pids: HashSet<u32> = three.ranks().iter().map(|r| r.pid).collect();
    assert_eq!(three_pids.len(), 3);
    assert!(three_pids.is_disjoint(&expected));
    assert_eq!(
        three
            .map(common::double, 0..300u64)
            .filter(Result::is_ok)
            .count(),
        300
    );
    drop(three);
    // A plain initializer, on the kept three, which never ran one.
    let three = MpiPoolExecutor::builder()
        .max_workers(3)
        .initializer(count_init)
        .start()
        .expect("start")
        .expect("the pool");
    for (pid, inits) in from_every_worker(&three, plain_inits) {
        assert!(
            three_pids.contains(&pid),
            "the kept workers were not reused"
        );
        assert_eq!(inits, 1, "worker {pid} ran the initializer {inits} times");
    }
    drop(three);
    assert!(matches!(
        MpiPoolExecutor::builder().max_workers(0).start(),
        Err(BuildError::ZeroWorkers)
    ));
    // An initializer on spawned workers; the kept workers run the next pool's, and a
    // failed one breaks its pool only (the workers serve the next).
    let first = new_init_token();
    let with_init = MpiPoolExecutor::builder()
        .max_workers(2)
        .initializer_with(record_init, first)
        .start()
        .expect("start")
        .expect("the pool");
    assert!(run_test(
        "initializer_runs_once_on_every_spawned_worker",
        initializer_ran_once_everywhere,
        with_init
    ));
    let broken = MpiPoolExecutor::builder()
        .max_workers(2)
        .initializer(bad_init)
        .start()
        .expect("a pool whose initializer fails still starts")
        .expect("the pool");
    let broken_pids: HashSet<u32> = broken.ranks().iter().map(|r| r.pid).collect();
    assert_eq!(broken_pids, expected, "the kept workers were not reused");
    assert!(run_test(
        "failed_initializer_breaks_the_pool",
        failed_initializer_breaks_the_pool,
        broken
    ));
    let second = new_init_token();
    let kept = MpiPoolExecutor::builder()
        .max_workers(2)
        .initializer_with(record_init, second)
        .start()
        .expect("start")
        .expect("the pool");
    let kept_pids: HashSet<u32> = kept.ranks().iter().map(|r| r.pid).collect();
    assert_eq!(kept_pids, expected, "the kept workers were not reused");
    for (pid, log) in from_every_worker(&kept, init_log) {
        assert_eq!(
            (
                log.iter().filter(|&&t| t == first).count(),
                log.iter().filter(|&&t| t == second).count(),
                log.last()
            ),
            (1, 1, Some(&second)),
            "worker {pid}: {log:?}"
        );
    }
    drop(kept);
    let mut tests: Vec<Test> = SUITE.to_vec();
    tests.extend_from_slice(POOL_CHECKS);
    let (mut passed, mut failed) = (0, 0);
    for (name, test) in tests {
        let pool = spawn();
        print_pids(&pool);
        if run_test(name, test, pool) {
            passed += 1;
        } else {
            failed += 1;
        }
    }
    println!("\ndynamic: {passed} passed, {failed} failed");
    i32::from(failed > 0)
}

/// A dynamic pool of one worker, started within `LONG` (or failing).
fn pool_of_one() -> MpiPoolExecutor {
    MpiPoolExecutor::builder()
        .max_workers(1)
        .start_timeout(LONG)
        .start()
        .expect("a dynamic pool starts while others are alive")
        .expect("dynamic mode returns the pool on the caller")
}

/// The pid of a pool's only worker, as its tasks report it.
fn worker_pid(pool: &MpiPoolExecutor) -> u32 {
    let ranks = pool.ranks();
    let [rank] = &ranks[..] else {
        panic!("not one worker: {ranks:?}");
    };
    let futs: Vec<_> = (0..20).map(|_| pool.submit(whoami, ())).collect();
    for f in futs {
        assert_eq!(f.result_timeout(LONG), Ok(rank.pid));
    }
    rank.pid
}

/// Three dynamic pools alive at once (mpi4py's tests run three `MPIPoolExecutor(1)`): each
/// starts while the others are alive and one is busy (two of them from two threads at
/// once), each runs its tasks on its own worker, they shut down in any order, and a new
/// pool takes a kept worker.
fn dynamic_many() -> i32 {
    let mut gate = Gate::closed();
    let a = pool_of_one();
    print_pids(&a);
    let pa = worker_pid(&a);
    // `a`'s worker holds a task: its session is busy while the others start and work.
    let held = a.submit(common::hold, (gate.path(), 1));
    common::eventually("the first pool's worker holds its task", || held.running());
    let (b, c) = std::thread::scope(|s| {
        let c = s.spawn(pool_of_one);
        let b = pool_of_one();
        (b, c.join().expect("the second start panicked"))
    });
    print_pids(&b);
    print_pids(&c);
    let (pb, pc) = (worker_pid(&b), worker_pid(&c));
    assert_eq!(
        HashSet::from([pa, pb, pc]).len(),
        3,
        "the pools share workers"
    );
    assert!(!held.done(), "the held task ended early");
    // `b` ends first, while `a` still holds its task: its worker is kept, and a new pool
    // of one takes it.
    b.shutdown(true);
    assert_eq!(b.max_workers(), 0);
    let d = pool_of_one();
    assert_eq!(worker_pid(&d), pb, "the kept worker was not reused");
    gate.open();
    assert_eq!(held.result_timeout(LONG), Ok(1));
    assert_eq!(worker_pid(&a), pa);
    drop(c);
    drop(a);
    assert_eq!(worker_pid(&d), pb);
    drop(d);
    let e = pool_of_one();
    assert!(
        [pa, pb, pc].contains(&worker_pid(&e)),
        "a kept worker was not reused"
    );
    drop(e);
    println!("dynamic_many: ok");
    0
}

/// The host a task runs on (the kernel's host name, as `hostname` prints it).
fn hostname(_: ()) -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("the host name")
        .trim()
        .to_string()
}

/// A worker spawned with the `host` hint runs on that host: MPI says so, and so does the
/// kernel where its task runs.
fn dynamic_host() -> i32 {
    let host = spawn_host();
    let pool = MpiPoolExecutor::builder()
        .max_workers(1)
        .spawn_info("host", &host)
        .start_timeout(LONG)
        .start()
        .expect("spawn a worker on the named host")
        .expect("dynamic mode returns the pool on the caller");
    print_pids(&pool);
    let ranks = pool.ranks();
    assert_eq!(
        ranks.iter().map(|r| r.host.as_str()).collect::<Vec<_>>(),
        vec![host.as_str()]
    );
    assert_eq!(
        pool.submit(hostname, ()).result_timeout(LONG),
        Ok(host.clone())
    );
    assert_eq!(
        pool.submit(whoami, ()).result_timeout(LONG),
        Ok(ranks[0].pid)
    );
    drop(pool);
    println!(
        "dynamic_host: the worker runs on {host} (the client on {})",
        hostname(())
    );
    0
}

/// `"mpi:2"` under `mpirun -n 1`: the generic code of any pool, on spawned workers.
fn dynamic_spec() -> i32 {
    let pool: concurrent_futures::AnyExecutor = "mpi:2".parse().expect("mpi:2 starts");
    let concurrent_futures::AnyExecutor::Mpi(mpi) = &pool else {
        panic!("mpi:2 is not an MPI pool");
    };
    print_pids(mpi);
    assert_eq!(pool.max_workers(), 2);
    let total: u64 = pool
        .map(common::double, 0..1000u64)
        .map(Result::unwrap)
        .sum();
    assert_eq!(total, 999_000);
    drop(pool);
    println!("dynamic_spec: ok");
    0
}

/// More workers than slots, with Open MPI told to keep to its slots (one per core): the
/// spawn is refused, `start` says so, and the process still ends cleanly.
fn dynamic_refused() -> i32 {
    if !is_open_mpi() {
        println!("dynamic_refused: ok (the slot hint is Open MPI's)");
        return 0;
    }
    let too_many = std::thread::available_parallelism().map_or(1, |n| n.get()) + 1;
    match MpiPoolExecutor::builder()
        .max_workers(too_many)
        .spawn_info("map_by", "slot")
        .start()
    {
        Err(BuildError::Mpi(m)) => assert!(m.to_string().contains("cannot spawn"), "{m}"),
        Err(e) => panic!("expected BuildError::Mpi, got {e}"),
        Ok(_) => panic!("{too_many} workers on {} slots were spawned", too_many - 1),
    }
    // (Open MPI 4.1 refuses any later spawn of this process; its end must still be clean.)
    println!("pids: {}", std::process::id());
    println!("dynamic_refused: ok");
    0
}

/// A spawned worker dies: its task fails with `WorkerDied` at once, the pool is broken
/// (MPI cannot go on without the worker), and the process ends with status 1 when it exits.
fn dynamic_crash() -> i32 {
    let pool = spawned_pool(2);
    print_pids(&pool);
    pool.start_recording();
    let crashed = pool.submit(crash_now, ()).result_timeout(LONG);
    assert!(
        matches!(crashed, Err(TaskError::WorkerDied { .. })),
        "{crashed:?}"
    );
    assert!(matches!(
        pool.try_submit(common::double, 1),
        Err(SubmitError::Broken(_))
    ));
    // The statistics and the timeline count the lost worker once.
    let Err(TaskError::WorkerDied { pid, .. }) = crashed else {
        unreachable!()
    };
    let stats = pool.stats();
    assert_eq!((stats.worker_deaths, stats.failed), (1, 1), "{stats:?}");
    let marks = pool.take_timeline().marks;
    assert_eq!(marks.len(), 1, "{marks:?}");
    assert_eq!(
        (marks[0].kind, marks[0].pid),
        (concurrent_futures::MarkKind::Died, Some(pid))
    );
    drop(pool);
    println!("dynamic_crash: the future failed as expected");
    0
}

/// The client is killed while its workers run tasks: they must go too.
fn dynamic_orphans() -> i32 {
    let pool = spawned_pool(2);
    print_pids(&pool);
    let gate = Gate::closed();
    let futs: Vec<_> = (0..2)
        .map(|i| pool.submit(common::hold, (gate.path(), i)))
        .collect();
    common::eventually("both workers hold a task", || {
        futs.iter().all(|f| f.running())
    });
    println!("dynamic_orphans: holding");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    // SAFETY: raising a signal is always allowed; SIGKILL ends this process at once.
    unsafe {
        libc::raise(libc::SIGKILL);
    }
    1
}

const STATIC_TASKS: usize = 8;

/// A slow task that leaves a mark.
fn slow_mark(path: String) -> u64 {
    let v = common::fib(30);
    std::fs::write(path, v.to_string()).expect("write the mark");
    v
}

/// A pool in a `static`, its tasks accepted and far from done when `main` ends: program
/// end runs them (Python's exit waits for its executors), then MPI finalizes cleanly.
fn dynamic_static() -> i32 {
    static POOL: std::sync::OnceLock<MpiPoolExecutor> = std::sync::OnceLock::new();
    let dir = std::env::var("CF_MPI_MARKS").expect("CF_MPI_MARKS");
    let pool = POOL.get_or_init(|| spawned_pool(2));
    print_pids(pool);
    let futs: Vec<_> = (0..STATIC_TASKS)
        .map(|i| pool.submit(slow_mark, format!("{dir}/{i}")))
        .collect();
    let done = futs.iter().filter(|f| f.done()).count();
    assert!(
        done < STATIC_TASKS,
        "every task ran before exit: the test proves nothing"
    );
    println!("dynamic_static: returning with {done} of {STATIC_TASKS} tasks done");
    0
}

fn crash_now(_: ()) -> u32 {
    // (Not SIGSEGV: a rank runs `main`, so Rust's runtime handles SIGSEGV, and a raised one
    // returns.)
    std::process::abort()
}

fn crash() -> i32 {
    let Some(pool) = MpiPoolExecutor::start() else {
        return 0;
    };
    print_pids(&pool);
    if let Ok(other) = std::env::var(OTHER_HOST) {
        // The rank that crashes is on another host than rank 0.
        assert!(
            pool.ranks().iter().all(|r| r.host == other),
            "{:?} not all on {other}",
            pool.ranks()
        );
        println!("crash: the worker ranks run on {other}");
    }
    let fut = pool.submit(crash_now, ());
    // mpirun ends the job: this never returns.
    let _ = fut.result_timeout(LONG);
    println!("crash: the job survived a dead rank");
    1
}

fn exit_now(code: i32) -> u32 {
    std::process::exit(code)
}

fn exit_in_task() -> i32 {
    let Some(pool) = MpiPoolExecutor::start() else {
        return 0;
    };
    print_pids(&pool);
    let _ = pool.submit(exit_now, 0).result_timeout(LONG);
    println!("exit: the job survived a rank that left");
    1
}

fn stop_self(_: ()) -> u32 {
    // SAFETY: raising a signal is always allowed; SIGSTOP stops this whole process.
    unsafe {
        libc::raise(libc::SIGSTOP);
    }
    0
}

/// Leaves a mark (so the test knows it runs), then waits on the gate.
fn mark_then_hold((mark, gate): (String, String)) -> u64 {
    std::fs::write(mark, b"").expect("write the mark");
    common::hold((gate, 0))
}

fn stopped() -> i32 {
    let Some(pool) = MpiPoolExecutor::builder()
        .unresponsive_after(Duration::from_secs(3))
        .start()
        .expect("start")
    else {
        return 0;
    };
    print_pids(&pool);
    let gate = Gate::closed();
    // One rank is held (and really running the task: it leaves a mark first), then the
    // other stops; work queues behind both.
    let mark = common::marker("held");
    let held = pool.submit(
        mark_then_hold,
        (mark.to_string_lossy().into_owned(), gate.path()),
    );
    common::eventually("the held task runs", || mark.exists());
    let stop = pool.submit(stop_self, ());
    let stopped_pid = pool.ranks().iter().map(|r| r.pid).find(|&p| {
        common::eventually("a rank stops", || {
            pool.ranks().iter().any(|r| is_stopped(r.pid))
        });
        is_stopped(p)
    });
    let _ = std::fs::remove_file(&mark);
    let queued: Vec<_> = (0..200).map(|i| pool.submit(common::double, i)).collect();
    match stop.result_timeout(LONG) {
        Err(TaskError::WorkerDied { status, .. }) => assert_eq!(status, ExitStatus::Unknown),
        other => panic!("expected WorkerDied, got {other:?}"),
    }
    assert!(matches!(
        pool.try_submit(common::double, 1),
        Err(SubmitError::Broken(_))
    ));
    drop(gate); // the held task and those behind it on the healthy rank finish
    assert_eq!(held.result_timeout(LONG), Ok(0));
    // The rest failed: those sent to the stopped rank as WorkerDied, those still pending
    // as Broken. Nothing waits forever.
    let mut failed = 0;
    for (i, f) in queued.iter().enumerate() {
        match f.result_timeout(LONG) {
            Ok(v) => assert_eq!(v, 2 * i as u64),
            Err(TaskError::Broken(_)) | Err(TaskError::WorkerDied { .. }) => failed += 1,
            other => panic!("expected a value or a failure, got {other:?}"),
        }
    }
    assert!(failed > 0, "nothing pending failed");
    // The verdict goes to a file: what a rank prints last may be lost when a job is aborted.
    let verdict = std::env::var("CF_MPI_VERDICT").expect("a verdict path");
    std::fs::write(verdict, "stopped: futures failed as expected").expect("write the verdict");
    // End the job by ending the stopped rank (as a crash would): Open MPI's mpirun does not
    // reliably end a job while one of its processes is stopped, and finalizing would wait
    // for that rank. (At exit, rank 0 would abort the job itself.)
    let pid = stopped_pid.expect("a stopped rank");
    let others: Vec<u32> = pool.ranks().iter().map(|r| r.pid).collect();
    // SAFETY: `kill` takes plain integers.
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
    // mpirun ends the job now, as for a crash. If it has not within 20 s (it does not always
    // notice at once), the job is ended here: the other ranks, then this one, so that the
    // check measures how the futures failed, not how fast mpirun tears a job down.
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        std::thread::park_timeout(Duration::from_millis(100));
    }
    // SAFETY: as above; SIGKILL to this process ends it at once.
    unsafe {
        for p in others {
            libc::kill(p as i32, libc::SIGKILL);
        }
        libc::kill(std::process::id() as i32, libc::SIGKILL);
    }
    1
}

/// True if the process is stopped (state `T` in `/proc/<pid>/stat`).
fn is_stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.starts_with('T')))
        .unwrap_or(false)
}

fn absent() -> i32 {
    let rank0 = std::env::var("OMPI_COMM_WORLD_RANK")
        .or_else(|_| std::env::var("PMI_RANK"))
        .map(|r| r == "0")
        .expect("a rank number in the environment");
    if !rank0 {
        // Never joins (never even initializes MPI). Parks until the job is ended (the
        // watchdog ends it otherwise).
        println!("pids: {}", std::process::id());
        loop {
            std::thread::park();
        }
    }
    println!("pids: {}", std::process::id());
    match MpiPoolExecutor::builder()
        .start_timeout(Duration::from_secs(2))
        .start()
    {
        Err(BuildError::Mpi(m)) => {
            assert!(
                m.to_string()
                    .contains("did not call MpiPoolExecutor::start"),
                "{m}"
            );
            println!("absent: start failed as expected ({m})");
            0
        }
        other => panic!("expected a timeout, got {:?}", other.map(|p| p.is_some())),
    }
}

/// Prints whether Open MPI yields in empty polls on this rank, once the pool's session ran
/// (on rank 0) or was served (on the others): the setter returns the setting it replaces,
/// which is put back at once.
fn idle_yield() -> i32 {
    let pool = MpiPoolExecutor::start();
    if let Some(pool) = &pool {
        assert_eq!(pool.submit(common::double, 4).result_timeout(LONG), Ok(8));
    }
    // SAFETY: Open MPI's `bool opal_progress_set_yield_when_idle(bool)` (libopen-pal,
    // loaded with libmpi), found by name; null when absent. MPI is initialized and no MPI
    // call runs now: rank 0's session is idle, the others' is over.
    let yields = unsafe {
        let set = libc::dlsym(
            libc::RTLD_DEFAULT,
            c"opal_progress_set_yield_when_idle".as_ptr(),
        );
        assert!(!set.is_null(), "Open MPI's progress setter not found");
        let set = std::mem::transmute::<*mut libc::c_void, extern "C" fn(bool) -> bool>(set);
        let was = set(false);
        set(was);
        was
    };
    println!("yields when idle: {yields}");
    drop(pool);
    0
}

fn fingerprint() -> i32 {
    match MpiPoolExecutor::builder().start() {
        Err(BuildError::Mpi(m)) => {
            assert!(m.to_string().contains("different executable"), "{m}");
            println!("fingerprint: refused as expected ({m})");
            0
        }
        other => panic!("expected a refusal, got {:?}", other.map(|p| p.is_some())),
    }
}

#[cfg(feature = "tracing")]
fn check_tracing() {
    let job = mpi_job("tracing", 3, LONG * 2);
    assert_eq!(job.code, Some(0), "{}", job.output);
    assert!(job.output.contains("tracing: checked"), "{}", job.output);
}

/// Rank 0 records the spans and events of a session: one closed span per task with the
/// outcome of its future, `started` on a worker rank; a `worker_started` per worker rank.
#[cfg(feature = "tracing")]
fn tracing_case() -> i32 {
    use common::recorder::{self, count, open_task_spans, outcome_of, outcomes, task_spans};
    let rec = recorder::install();
    let Some(pool) = MpiPoolExecutor::start() else {
        return 0;
    };
    let ok: Vec<_> = (0..20).map(|i| pool.submit(common::double, i)).collect();
    let bad: Vec<_> = (0..3)
        .map(|_| pool.submit(common::always_panic, ()))
        .collect();
    let results: Vec<_> = ok
        .into_iter()
        .chain(bad)
        .map(|f| f.result_timeout(LONG))
        .collect();
    pool.shutdown(true);
    let spans = rec.wait_for("every task span closed", |r| {
        let spans = task_spans(r, "mpi");
        (spans.len() == results.len()).then_some(spans)
    });
    assert_eq!(open_task_spans(&rec.lock()), 0);
    let expected = count(results.iter().map(outcome_of));
    assert_eq!((expected["ok"], expected["panicked"]), (20, 3));
    assert_eq!(outcomes(&spans), expected);
    for s in &spans {
        for (name, fields) in &s.events {
            if name == "started" {
                assert!(["1", "2"].contains(&fields["worker"].as_str()), "{s:?}");
            }
        }
    }
    let r = rec.lock();
    let mut ranks: Vec<&str> = recorder::worker_events(&r, "worker_started", "mpi")
        .iter()
        .map(|e| e.fields["worker"].as_str())
        .collect();
    ranks.sort_unstable();
    assert_eq!(ranks, ["1", "2"]);
    println!("tracing: checked");
    0
}
