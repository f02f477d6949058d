//! File descriptors: queued tasks cost none (one channel pair per worker carries every
//! task); a shortage of them is a transient error of the task that met it, never a broken
//! pool; a pool of a thousand workers fits under the usual soft limit of 1024.
//! Alone in its test binary, so that no other test opens descriptors meanwhile; the tests
//! that change `RLIMIT_NOFILE` run in a child process of their own (this binary re-run).

mod common;

use std::io::Write;
use std::process::Command;
use std::time::Instant;

use common::procs::{children, open_fds};
use common::{Gate, LONG, eventually, hold, watchdog};
use concurrent_futures::{Executor, ProcessPoolExecutor, Shortage, TaskError};

#[test]
fn queued_tasks_use_no_more_descriptors() {
    let _w = watchdog("queued_tasks_use_no_more_descriptors");
    let pool = ProcessPoolExecutor::new(2);
    for n in [20_000u64, 1_000_000] {
        let before = open_fds();
        let futs: Vec<_> = (0..n).map(|i| pool.submit(common::double, i)).collect();
        let during = open_fds();
        for (i, f) in futs.iter().enumerate() {
            assert_eq!(f.result_timeout(LONG), Ok(2 * i as u64));
        }
        assert!(
            during <= before + 2,
            "descriptors grew from {before} to {during} with {n} queued tasks"
        );
    }
}

// ===== helpers run in a child process =====

const HELPER: &str = "CF_PROCESS_FDS_HELPER";

/// Runs the ignored test `name` in a child process (this binary) and returns its stdout,
/// after checking that it passed.
fn run_helper(name: &str) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            name,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && stdout.contains("HELPER DONE"),
        "helper {name} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn soft_nofile() -> (u64, u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` writes one `rlimit`.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    (lim.rlim_cur, lim.rlim_max)
}

fn set_soft_nofile(soft: u64) {
    let (_, hard) = soft_nofile();
    let lim = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: `setrlimit` reads one `rlimit`; the helper process is alone in using it.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
}

const MIB: usize = 1 << 20;

/// Waits on the gate, then returns 1 MiB (a result that travels as a shared memory file).
fn big_after_gate(args: (String, u64)) -> Vec<u8> {
    let tag = hold(args);
    vec![tag as u8; MIB]
}

fn big(tag: u64) -> Vec<u8> {
    vec![tag as u8; MIB]
}

fn crash(_: ()) -> u8 {
    std::process::abort()
}

// ===== a descriptor shortage =====

/// At the descriptor limit, the kernel cannot give this process the shared memory file of a
/// large result (it truncates the message's descriptors): that task fails with
/// `TaskError::Shortage`, its worker is not blamed (it was killed, before, as if it had sent
/// an oversized message), and small results in flight still arrive. Workers that crash
/// then cannot be replaced: the replacements are tried again (the pool was `Broken` for
/// good, before), work waits queued, and once the limit is raised the replacements start,
/// the queued work runs and large results arrive again.
#[test]
fn a_descriptor_shortage_fails_only_the_results_it_cost_and_the_pool_recovers() {
    let _w = watchdog("a_descriptor_shortage_fails_only_the_results_it_cost");
    let out = run_helper("fd_shortage_helper");
    assert!(
        out.contains("SHORTAGE 100 SMALL 100 DIED 2 QUEUED 100 RECOVERED 100"),
        "{out}"
    );
}

#[test]
#[ignore = "helper process for a_descriptor_shortage_fails_only_the_results_it_cost..."]
fn fd_shortage_helper() {
    if std::env::var_os(HELPER).is_none() {
        return;
    }
    let pool = ProcessPoolExecutor::new(2);
    assert_eq!(
        pool.submit(big, 1).result_timeout(LONG).map(|v| v.len()),
        Ok(MIB)
    );
    let workers = pool.pids();
    assert_eq!(workers.len(), 2);
    let (soft, _) = soft_nofile();
    // A burst in flight, held until the limit is down: large results (memfds) mixed with
    // small ones (inline), so that messages carry both.
    let mut gate = Gate::closed();
    let mut large = Vec::new();
    let mut small = Vec::new();
    for i in 0..200u64 {
        if i % 2 == 0 {
            large.push(pool.submit(big_after_gate, (gate.path(), i)));
        } else {
            small.push((i, pool.submit(hold, (gate.path(), i))));
        }
    }
    // No new descriptor at all from here on: every number below 3 is taken.
    set_soft_nofile(3);
    gate.open();
    let mut shortage = 0;
    for f in &large {
        match f.result_timeout(LONG) {
            Err(TaskError::Shortage(Shortage::Descriptors)) => shortage += 1,
            other => panic!(
                "expected a descriptor shortage, got {:?}",
                other.map(|v| v.len())
            ),
        }
    }
    let mut delivered = 0;
    for (i, f) in &small {
        assert_eq!(f.result_timeout(LONG), Ok(*i), "a small result was lost");
        delivered += 1;
    }
    // The workers were not blamed.
    assert_eq!(pool.pids(), workers);
    // Both workers crash while the limit is down: each crash fails its own task only, and
    // no replacement can start; the pool is not broken.
    let mut died = 0;
    for _ in 0..2 {
        match pool.submit(crash, ()).result_timeout(LONG) {
            Err(TaskError::WorkerDied { .. }) => died += 1,
            other => panic!("expected WorkerDied, got {other:?}"),
        }
        // Submissions are accepted, and (while a worker is left) run.
        if pool.pids().len() == 1 {
            let futs: Vec<_> = (0..50u64).map(|i| pool.submit(common::double, i)).collect();
            for (i, f) in futs.iter().enumerate() {
                assert_eq!(f.result_timeout(LONG), Ok(2 * i as u64));
            }
        }
    }
    eventually("both workers are gone", || pool.pids().is_empty());
    // With no worker, work waits in the queue for the replacements.
    let queued: Vec<_> = (0..100u64)
        .map(|i| pool.submit(common::double, i))
        .collect();
    assert!(
        queued.iter().all(|f| !f.done()),
        "a task ran without a worker"
    );
    // The shortage ends: the replacements start, the queued work runs, and large results
    // arrive again.
    set_soft_nofile(soft);
    let mut ran = 0;
    for (i, f) in queued.iter().enumerate() {
        assert_eq!(f.result_timeout(LONG), Ok(2 * i as u64));
        ran += 1;
    }
    eventually("both replacements start", || pool.pids().len() == 2);
    let futs: Vec<_> = (0..100u64).map(|i| pool.submit(big, i)).collect();
    let mut recovered = 0;
    for (i, f) in futs.iter().enumerate() {
        let v = f
            .result_timeout(LONG)
            .expect("a large result after the shortage");
        assert!(v.len() == MIB && [0, MIB - 1].iter().all(|&j| v[j] == i as u8));
        recovered += 1;
    }
    pool.shutdown(true);
    assert!(
        children().is_empty(),
        "workers left behind: {:?}",
        children()
    );
    println!(
        "SHORTAGE {shortage} SMALL {delivered} DIED {died} QUEUED {ran} RECOVERED {recovered}"
    );
    println!("HELPER DONE");
}

// ===== a thousand workers under a soft limit of 1024 =====

/// Appends the task's number to the journal (its side effect, counted by the test) and
/// returns this worker's soft descriptor limit.
fn journal(args: (String, u64)) -> (u64, u64) {
    let (path, i) = args;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open journal");
    // One `write` of a few bytes to a file opened for appending: never interleaved.
    f.write_all(format!("{i}\n").as_bytes()).expect("append");
    (i, soft_nofile().0)
}

/// A `Process` target: exits with 0 if its soft descriptor limit is `want`, else 1.
fn exit_unless_soft_limit(want: u64) {
    std::process::exit(i32::from(soft_nofile().0 != want));
}

/// Each worker costs the parent four descriptors: under a soft limit of 1024, 300 workers
/// failed with "Too many open files" before; the pool raises the soft limit to the hard one
/// at its first start, and gives the old one back to the workers.
#[test]
fn a_thousand_workers_fit_under_a_soft_limit_of_1024() {
    let _w = watchdog("a_thousand_workers_fit_under_a_soft_limit_of_1024");
    let (_, hard) = soft_nofile();
    if hard < 8192 {
        eprintln!("skipped: the hard descriptor limit ({hard}) is below what 1,000 workers need");
        return;
    }
    let out = run_helper("thousand_workers_helper");
    assert!(
        out.contains("WORKERS 1000 TASKS 2000 ONCE 2000 LIMIT 1024"),
        "{out}"
    );
}

#[test]
#[ignore = "helper process for a_thousand_workers_fit_under_a_soft_limit_of_1024"]
fn thousand_workers_helper() {
    if std::env::var_os(HELPER).is_none() {
        return;
    }
    set_soft_nofile(1024);
    let fds_before = open_fds();
    let path = common::marker("journal");
    std::fs::File::create(&path).unwrap();
    let start = Instant::now();
    let pool = ProcessPoolExecutor::new(1000);
    eprintln!("1,000 workers started in {:?}", start.elapsed());
    let workers = pool.pids().len();
    let p = path.to_string_lossy().into_owned();
    let futs: Vec<_> = (0..2000u64)
        .map(|i| pool.submit(journal, (p.clone(), i)))
        .collect();
    let mut limits = std::collections::BTreeSet::new();
    for (i, f) in futs.iter().enumerate() {
        let (j, limit) = f.result_timeout(LONG).expect("task");
        assert_eq!(j, i as u64);
        limits.insert(limit);
    }
    pool.shutdown(true);
    drop(pool);
    eprintln!("2,000 tasks run and shut down after {:?}", start.elapsed());
    let mut runs = vec![0u32; 2000];
    for line in std::fs::read_to_string(&path).unwrap().lines() {
        runs[line.parse::<usize>().unwrap()] += 1;
    }
    let _ = std::fs::remove_file(&path);
    let once = runs.iter().filter(|&&n| n == 1).count();
    assert_eq!(once, 2000, "tasks not run exactly once");
    assert_eq!(limits.len(), 1, "workers saw different limits: {limits:?}");
    assert!(
        children().is_empty(),
        "workers left behind: {:?}",
        children()
    );
    assert!(open_fds() <= fds_before, "descriptors left behind");
    // This process keeps the raised limit; a `Process` child gets the original one back.
    assert!(
        soft_nofile().0 > 1024,
        "the pool did not raise the soft limit"
    );
    let child = concurrent_futures::multiprocessing::Process::new(exit_unless_soft_limit, 1024);
    child.start().unwrap();
    assert_eq!(
        common::join(&child),
        0,
        "a Process child kept the raised limit"
    );
    println!(
        "WORKERS {workers} TASKS {} ONCE {once} LIMIT {}",
        futs.len(),
        limits.iter().next().unwrap()
    );
    println!("HELPER DONE");
}

// ===== a failed start keeps its cause =====

/// A pool that cannot start its workers for want of descriptors fails to build with
/// `BuildError::Worker`, whose `source()` chain reaches the operating system's error
/// (`EMFILE`), not only its text.
#[test]
fn a_failed_start_keeps_the_os_error_as_its_source() {
    let _w = watchdog("a_failed_start_keeps_the_os_error_as_its_source");
    let out = run_helper("failed_start_source_helper");
    assert!(out.contains("SOURCE EMFILE"), "{out}");
}

#[test]
#[ignore = "helper process for a_failed_start_keeps_the_os_error_as_its_source"]
fn failed_start_source_helper() {
    use concurrent_futures::BuildError;
    use std::error::Error;
    if std::env::var_os(HELPER).is_none() {
        return;
    }
    // The hard limit too (the pool raises the soft one to it): no descriptor is left for a
    // worker's sockets, and this helper process cannot raise it back.
    let lowest_free = (0..).find(|n| !open_fd_numbers().contains(n)).unwrap();
    let lim = libc::rlimit {
        rlim_cur: lowest_free,
        rlim_max: lowest_free,
    };
    // SAFETY: `setrlimit` reads one `rlimit`; the helper process is alone in using it.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
    let err = ProcessPoolExecutor::builder()
        .max_workers(2)
        .build()
        .map(drop)
        .unwrap_err();
    let BuildError::Worker(failure) = &err else {
        panic!("expected BuildError::Worker, got {err:?}");
    };
    assert_eq!(
        err.to_string(),
        format!("could not start a worker process: {failure}")
    );
    // The chain: BuildError -> StartFailure -> io::Error.
    let first = err.source().expect("BuildError::Worker has a source");
    assert!(
        first
            .downcast_ref::<concurrent_futures::StartFailure>()
            .is_some()
    );
    let os = first
        .source()
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .unwrap_or_else(|| panic!("the source of {failure:?} is not an io::Error"));
    assert_eq!(os.raw_os_error(), Some(libc::EMFILE), "{os:?}");
    assert!(failure.to_string().contains(&os.to_string()), "{failure}");
    println!("SOURCE EMFILE");
    println!("HELPER DONE");
}

fn open_fd_numbers() -> Vec<u64> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .collect()
}
