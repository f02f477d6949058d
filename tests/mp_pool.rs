//! `multiprocessing::Pool`: Python's Pool API over the process pool.
#![cfg(target_os = "linux")]

mod common;

use common::procs::forever;
use std::sync::mpsc;
use std::time::Duration;

use common::{LONG, watchdog};
use concurrent_futures::multiprocessing::{Pool, PoolError};
use concurrent_futures::{SubmitError, TaskError};

fn square(x: u64) -> u64 {
    x * x
}

fn worker_pid(_: ()) -> u32 {
    std::process::id()
}

fn boom(x: u32) -> u32 {
    if x == 3 {
        panic!("bad item {x}");
    }
    x
}

#[test]
fn apply_and_apply_async_with_callbacks_in_the_parent() {
    let _w = watchdog("apply_and_apply_async_with_callbacks_in_the_parent");
    let pool = Pool::new(2);
    assert_eq!(pool.apply(square, 9), Ok(81));
    let (tx, rx) = mpsc::channel();
    let results: Vec<_> = (0..10)
        .map(|_| {
            let tx = tx.clone();
            pool.apply_async(worker_pid, ())
                .callback(move |worker| tx.send((*worker, std::process::id())).unwrap())
        })
        .collect();
    pool.close();
    pool.join().unwrap();
    // join waited for the callbacks too: all ten are in.
    let seen: Vec<_> = rx.try_iter().collect();
    assert_eq!(seen.len(), 10);
    for (worker, ran_in) in seen {
        assert_ne!(worker, std::process::id(), "the task ran in a worker");
        assert_eq!(ran_in, std::process::id(), "the callback ran in the parent");
    }
    for r in &results {
        assert!(r.ready());
        assert_eq!(r.successful(), Some(true));
    }
}

#[test]
fn error_callback_and_failed_results() {
    let _w = watchdog("error_callback_and_failed_results");
    let pool = Pool::new(1);
    let (tx, rx) = mpsc::channel();
    let res = pool
        .apply_async(boom, 3)
        .callback(|_| panic!("no success callback for a failure"))
        .error_callback(move |e| tx.send(e.clone()).unwrap());
    let err = rx.recv_timeout(LONG).unwrap();
    assert!(matches!(err, TaskError::Panicked(_)));
    assert!(err.to_string().contains("bad item 3"));
    assert_eq!(res.get(), Err(err));
    assert_eq!(res.successful(), Some(false));
}

#[test]
fn map_family() {
    let _w = watchdog("map_family");
    let pool = Pool::new(2);
    let want: Vec<u64> = (0..100).map(|x| x * x).collect();
    assert_eq!(pool.map(square, 0..100).unwrap(), want);
    assert_eq!(pool.map_chunked(square, 0..100, 7).unwrap(), want);
    assert_eq!(
        pool.map_async(square, 0..100).get_timeout(LONG).unwrap(),
        want
    );
    assert_eq!(pool.map_async(square, Vec::new()).get(), Ok(vec![]));
    let lazy: Vec<u64> = pool.imap(square, 0..100).map(Result::unwrap).collect();
    assert_eq!(lazy, want);
    let mut any: Vec<u64> = pool
        .imap_unordered(square, 0..100)
        .map(Result::unwrap)
        .collect();
    any.sort();
    assert_eq!(any, want);
    fn add((a, b): (u64, u64)) -> u64 {
        a + b
    }
    assert_eq!(pool.starmap(add, vec![(1, 2), (3, 4)]), Ok(vec![3, 7]));
    assert_eq!(pool.starmap_async(add, vec![(5, 5)]).get(), Ok(vec![10]));
}

#[test]
fn map_fails_with_the_first_error_and_map_async_calls_error_callback() {
    let _w = watchdog("map_fails_with_the_first_error");
    let pool = Pool::new(2);
    let err = pool.map(boom, 0..10).unwrap_err();
    assert!(err.to_string().contains("bad item 3"), "{err}");
    let (tx, rx) = mpsc::channel();
    let res = pool
        .map_async(boom, 0..10)
        .error_callback(move |e| tx.send(e.to_string()).unwrap());
    assert!(rx.recv_timeout(LONG).unwrap().contains("bad item 3"));
    assert!(res.get().is_err());
}

#[test]
fn join_before_close_is_an_error_and_close_refuses_new_work() {
    let _w = watchdog("join_before_close_is_an_error");
    let pool = Pool::new(1);
    assert_eq!(pool.join(), Err(PoolError::StillRunning));
    let queued = pool.apply_async(square, 4);
    pool.close();
    assert_eq!(
        pool.apply(square, 2),
        Err(TaskError::Submit(SubmitError::Shutdown))
    );
    pool.join().unwrap();
    assert_eq!(
        queued.get(),
        Ok(16),
        "work submitted before close still runs"
    );
}

#[test]
fn terminate_stops_running_work() {
    let _w = watchdog("terminate_stops_running_work");
    let pool = Pool::new(1);
    let stuck = pool.apply_async(forever, ());
    assert_eq!(
        stuck.get_timeout(Duration::from_millis(20)),
        Err(TaskError::Timeout)
    );
    pool.terminate();
    pool.join().unwrap();
    assert!(stuck.wait_timeout(LONG));
    assert!(stuck.get().is_err());
}

#[test]
fn initializer_and_maxtasksperchild() {
    let _w = watchdog("initializer_and_maxtasksperchild");
    fn init() {}
    let pool = Pool::with_options(1, Some(init), Some(2)).unwrap();
    let pids: Vec<u32> = (0..6)
        .map(|_| pool.apply(worker_pid, ()).unwrap())
        .collect();
    let mut distinct = pids.clone();
    distinct.dedup();
    assert!(
        distinct.len() >= 3,
        "a worker is replaced every 2 tasks: {pids:?}"
    );
    pool.close();
    pool.join().unwrap();
}
