//! `AnyExecutor`: the backend chosen from a string runs the same generic code, and passes
//! the shared behavioural suite on threads and on processes; bad specs are typed errors.

mod common;

use std::process::Command;

use common::{LONG, watchdog};
use concurrent_futures::{AnyExecutor, Backend, Executor, SpecError, TaskError};
use serde::{Deserialize, Serialize};

mod threads {
    use super::*;
    executor_suite!("threads:2".parse::<AnyExecutor>().unwrap());
}

mod processes {
    use super::*;
    executor_suite!("processes:2".parse::<AnyExecutor>().unwrap());
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Job {
    id: u32,
    words: Vec<String>,
}

fn count_words(job: Job) -> (u32, usize, u32) {
    (job.id, job.words.len(), std::process::id())
}

/// The generic code a program writes once.
fn run<E: Executor>(pool: &E) -> (usize, Vec<u32>) {
    let jobs = (0..20).map(|id| Job {
        id,
        words: vec!["w".into(); id as usize],
    });
    let mut total = 0;
    let mut pids = Vec::new();
    for r in pool.map(count_words, jobs) {
        let (id, n, pid) = r.unwrap();
        assert_eq!(n, id as usize);
        total += n;
        pids.push(pid);
    }
    (total, pids)
}

#[test]
fn the_same_generic_code_runs_on_threads_and_processes_from_a_string() {
    let _w = watchdog("the_same_generic_code_runs_on_threads_and_processes_from_a_string");
    for spec in ["threads:2", "processes:2"] {
        let pool: AnyExecutor = spec.parse().unwrap();
        assert_eq!(pool.max_workers(), 2);
        let (total, pids) = run(&pool);
        assert_eq!(total, (0..20).sum::<usize>(), "{spec}");
        let here = std::process::id();
        match pool.backend() {
            Backend::Threads => assert!(pids.iter().all(|&p| p == here)),
            Backend::Processes => assert!(pids.iter().all(|&p| p != here)),
            other => panic!("{spec} gave {other}"),
        }
        pool.shutdown(true);
        assert!(
            pool.try_submit(
                count_words,
                Job {
                    id: 0,
                    words: vec![]
                }
            )
            .is_err()
        );
    }
}

#[test]
fn default_sizes_are_pythons() {
    let _w = watchdog("default_sizes_are_pythons");
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads: AnyExecutor = "threads".parse().unwrap();
    assert_eq!(threads.max_workers(), (cpus + 4).min(32));
    let processes: AnyExecutor = " Processes ".parse().unwrap();
    assert_eq!(processes.max_workers(), cpus);
    let rayon: AnyExecutor = "rayon:3".parse().unwrap();
    assert_eq!((rayon.backend(), rayon.max_workers()), (Backend::Rayon, 3));
    assert_eq!(
        rayon
            .submit(
                count_words,
                Job {
                    id: 1,
                    words: vec![]
                }
            )
            .result_timeout(LONG)
            .unwrap()
            .0,
        1
    );
}

#[test]
fn bad_specs_are_typed_errors_that_say_what_to_write() {
    let err = "thread:2".parse::<AnyExecutor>().unwrap_err();
    assert!(matches!(&err, SpecError::UnknownBackend { spec } if spec == "thread:2"));
    let msg = err.to_string();
    assert!(
        msg.contains("`threads`") && msg.contains("`processes`"),
        "{msg}"
    );

    let err = "processes:lots".parse::<AnyExecutor>().unwrap_err();
    assert!(matches!(err, SpecError::BadWorkers { .. }), "{err:?}");
    let err = "threads:0".parse::<AnyExecutor>().unwrap_err();
    assert!(matches!(err, SpecError::BadWorkers { .. }), "{err:?}");

    if cfg!(not(feature = "mpi")) {
        let err = "mpi".parse::<AnyExecutor>().unwrap_err();
        assert!(
            matches!(
                err,
                SpecError::NotBuilt {
                    backend: Backend::Mpi,
                    feature: "mpi"
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("cargo feature `mpi`"), "{err}");
    }
}

#[test]
fn pools_convert_into_any_executor() {
    let _w = watchdog("pools_convert_into_any_executor");
    let pool = AnyExecutor::from(concurrent_futures::ProcessPoolExecutor::new(1));
    assert_eq!(pool.backend(), Backend::Processes);
    let err = pool
        .submit(common::always_panic, ())
        .result_timeout(LONG)
        .unwrap_err();
    assert!(matches!(err, TaskError::Panicked(_)));
    assert!(format!("{pool:?}").starts_with("AnyExecutor(ProcessPoolExecutor"));
}

/// Run in a child process (the environment is process-wide): prints the backend and size.
#[test]
fn child_reports_from_env() {
    let Ok(var) = std::env::var("ANY_EXECUTOR_TEST_VAR") else {
        return; // only meaningful in the child started below
    };
    match AnyExecutor::from_env(&var) {
        Ok(pool) => println!("<<{} {}>>", pool.backend(), pool.max_workers()),
        Err(e) => println!("<<error {e}>>"),
    }
}

fn from_env_in_child(value: Option<&str>) -> String {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "child_reports_from_env",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("ANY_EXECUTOR_TEST_VAR", "ANY_EXECUTOR_TEST_SPEC")
    .env_remove("ANY_EXECUTOR_TEST_SPEC");
    if let Some(v) = value {
        cmd.env("ANY_EXECUTOR_TEST_SPEC", v);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let start = stdout.find("<<").expect("the child reports") + 2;
    let end = stdout[start..].find(">>").unwrap() + start;
    stdout[start..end].to_owned()
}

#[test]
fn from_env_reads_a_spec_and_defaults_to_threads() {
    let _w = watchdog("from_env_reads_a_spec_and_defaults_to_threads");
    assert_eq!(from_env_in_child(Some("processes:2")), "processes 2");
    assert_eq!(from_env_in_child(Some("threads:3")), "threads 3");
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let default = format!("threads {}", (cpus + 4).min(32));
    assert_eq!(from_env_in_child(None), default);
    assert_eq!(from_env_in_child(Some("  ")), default);
    assert!(from_env_in_child(Some("gpu")).starts_with("error unknown executor `gpu`"));
}
