//! The `Stream` versions of `map`, `map_unordered` and `as_completed` in a tokio
//! current-thread runtime: results are right, and waiting on them leaves the runtime's only
//! thread free (another task, which alone can let the pool's tasks finish, makes progress
//! meanwhile). Every wait is bounded.

mod common;

use std::future::poll_fn;
use std::path::Path;
use std::pin::Pin;
use std::task::Poll;

use common::{Gate, LONG, watchdog};
use concurrent_futures::{
    Executor, ExecutorStreamExt, ProcessPoolExecutor, TaskError, ThreadPoolExecutor,
    as_completed_stream,
};
use futures_core::Stream;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

/// The next item, within `LONG`.
async fn next<S: Stream + Unpin>(s: &mut S) -> Option<S::Item> {
    tokio::time::timeout(LONG, poll_fn(|cx| Pin::new(&mut *s).poll_next(cx)))
        .await
        .expect("a stream item within LONG")
}

async fn collect<S: Stream + Unpin>(mut s: S) -> Vec<S::Item> {
    let mut out = Vec::new();
    while let Some(x) = next(&mut s).await {
        out.push(x);
    }
    out
}

/// Tasks held on a gate that only another task of this runtime opens: the stream can end
/// only if waiting on it lets that task run.
fn held_tasks_finish_because_the_runtime_is_free<E: Executor>(pool: &E, ordered: bool) {
    let gate = Gate::closed();
    let path = gate.path();
    let out = runtime().block_on(async move {
        let items = (0..20u64).map(|i| (path.clone(), i));
        let stream = if ordered {
            pool.map_stream(common::hold, items).chunksize(1)
        } else {
            pool.map_unordered_stream(common::hold, items).chunksize(1)
        };
        assert_eq!(stream.size_hint(), (20, Some(20)));
        let opener = tokio::spawn(async move {
            let mut gate = gate;
            gate.open();
            gate // kept open (dropping it would remove the file the tasks open)
        });
        let out = collect(stream).await;
        drop(opener.await.unwrap());
        out
    });
    let mut out: Vec<u64> = out.into_iter().map(Result::unwrap).collect();
    if !ordered {
        out.sort();
    }
    assert_eq!(out, (0..20).collect::<Vec<_>>());
}

#[test]
fn map_stream_in_order_on_threads_without_blocking_the_runtime() {
    let _w = watchdog("map_stream_threads");
    held_tasks_finish_because_the_runtime_is_free(&ThreadPoolExecutor::new(2), true);
}

#[test]
fn map_stream_in_order_on_processes_without_blocking_the_runtime() {
    let _w = watchdog("map_stream_processes");
    held_tasks_finish_because_the_runtime_is_free(&ProcessPoolExecutor::new(2), true);
}

#[test]
fn map_unordered_stream_on_threads_and_processes() {
    let _w = watchdog("map_unordered_stream");
    held_tasks_finish_because_the_runtime_is_free(&ThreadPoolExecutor::new(2), false);
    held_tasks_finish_because_the_runtime_is_free(&ProcessPoolExecutor::new(2), false);
}

#[test]
fn each_item_yields_its_own_result_with_automatic_chunks() {
    let _w = watchdog("each_item_yields_its_own_result");
    let pool = ThreadPoolExecutor::new(2);
    let out = runtime().block_on(collect(pool.map_stream(common::fail_on_odd, 0..1000)));
    assert_eq!(out.len(), 1000);
    for (i, r) in out.into_iter().enumerate() {
        match r {
            Ok(v) => assert_eq!(v, i as u64),
            Err(TaskError::Panicked(p)) => {
                assert_eq!(i % 2, 1);
                assert_eq!(p.message(), format!("odd input {i}"));
            }
            Err(e) => panic!("item {i}: {e:?}"),
        }
    }
}

#[test]
fn a_refused_submission_fails_every_item_of_its_chunk() {
    let _w = watchdog("a_refused_submission");
    let pool = ThreadPoolExecutor::new(1);
    pool.shutdown(true);
    let out = runtime().block_on(collect(pool.map_stream(common::double, 0..5).chunksize(2)));
    assert_eq!(out.len(), 5);
    assert!(
        out.iter().all(|r| matches!(r, Err(TaskError::Submit(_)))),
        "{out:?}"
    );
}

#[test]
fn dropping_the_stream_cancels_chunks_not_started() {
    let _w = watchdog("dropping_the_stream_cancels");
    let pool = ThreadPoolExecutor::new(1);
    let mut gate = Gate::closed();
    let marks: Vec<String> = (0..4)
        .map(|i| {
            common::marker(&format!("s{i}"))
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let args: Vec<_> = marks
        .iter()
        .map(|m| (Some(gate.path()), m.clone()))
        .collect();
    runtime().block_on(async {
        let mut stream = pool.map_stream(common::hold_then_touch, args).chunksize(1);
        // One poll submits the window (all four chunks); the first runs and waits on the gate.
        let polled = poll_fn(|cx| Poll::Ready(Pin::new(&mut stream).poll_next(cx))).await;
        assert!(polled.is_pending());
        drop(stream);
    });
    gate.open();
    pool.shutdown(true);
    let ran: Vec<bool> = marks.iter().map(|m| Path::new(m).exists()).collect();
    // The worker may have taken the first chunk before the drop, or not: the others never ran.
    assert!(!ran[1] && !ran[2] && !ran[3], "{ran:?}");
    for m in &marks {
        let _ = std::fs::remove_file(m);
    }
}

#[test]
fn as_completed_stream_yields_in_completion_order_without_blocking_the_runtime() {
    let _w = watchdog("as_completed_stream");
    let pool = ThreadPoolExecutor::new(2);
    let gate = Gate::closed();
    let held = pool.submit(common::hold, (gate.path(), 7));
    let quick = pool.submit(common::double, 21);
    let futures = [held, quick];
    runtime().block_on(async {
        // the same future twice is yielded once
        let mut done = as_completed_stream(futures.iter().chain([&futures[1]]));
        assert_eq!(done.size_hint(), (2, Some(2)));
        let first = next(&mut done).await.unwrap();
        assert_eq!(first.result_ref(), Ok(&42));
        let opener = tokio::spawn(async move {
            let mut gate = gate;
            gate.open();
            gate
        });
        let second = next(&mut done).await.unwrap();
        assert_eq!(second.result_ref(), Ok(&7));
        assert!(next(&mut done).await.is_none());
        drop(opener.await.unwrap());
    });
}
