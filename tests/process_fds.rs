//! Queued tasks cost no file descriptors: one channel pair per worker carries every task.
//! Alone in its test binary, so that no other test opens descriptors meanwhile.

mod common;

use common::procs::open_fds;
use common::{LONG, watchdog};
use concurrent_futures::{Executor, ProcessPoolExecutor};

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
