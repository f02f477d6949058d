//! `.progress()` on map iterators (feature `progress`, on for tests): the bar counts every
//! result as it is yielded, on every backend, and knows the length when the input does.

mod common;

use concurrent_futures::indicatif::ProgressBar;
use concurrent_futures::{Executor, ProgressExt, ThreadPoolExecutor};

fn square(x: u64) -> u64 {
    x * x
}

fn counts_every_result<E: Executor>(pool: &E) {
    let bar = ProgressBar::hidden();
    let mut it = pool.map(square, 0..1000).progress_with(bar.clone());
    assert_eq!(it.size_hint(), (1000, Some(1000)), "the length is known");
    assert_eq!(it.next(), Some(Ok(0)));
    assert_eq!(bar.position(), 1, "counted as yielded");
    let rest: Vec<_> = it.map(Result::unwrap).collect();
    assert_eq!(rest.len(), 999);
    assert_eq!(bar.position(), 1000);
    assert!(bar.is_finished());

    let bar = ProgressBar::hidden();
    let n = pool
        .map_unordered(square, 0..500)
        .progress_with(bar.clone())
        .count();
    assert_eq!((n, bar.position()), (500, 500));

    // An input of unknown length gets a spinner (no length).
    let unknown = (0..100u64).filter(|x| x % 2 == 0);
    let it = pool.map(square, unknown).progress();
    assert_eq!(it.bar().length(), None);
    assert_eq!(it.count(), 50);
}

#[test]
fn progress_on_the_thread_pool() {
    let _w = common::watchdog("progress_on_the_thread_pool");
    counts_every_result(&ThreadPoolExecutor::new(2));
}

#[cfg(target_os = "linux")]
#[test]
fn progress_on_the_process_pool() {
    let _w = common::watchdog("progress_on_the_process_pool");
    counts_every_result(&concurrent_futures::ProcessPoolExecutor::new(2));
}

#[test]
fn progress_on_rayon() {
    let _w = common::watchdog("progress_on_rayon");
    counts_every_result(
        &rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap(),
    );
}
