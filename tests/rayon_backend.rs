//! The behavioural suite on `rayon::ThreadPool` (feature `rayon`). rayon pools cannot be
//! shut down, so the shutdown tests are left out.
#![cfg(feature = "rayon")]

mod common;

fn rayon_pool() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap()
}

executor_suite!(@tests rayon_pool();
    states_follow_python, cancel_only_while_pending, result_reports_panic_message,
    result_timeout_leaves_future_unchanged, exception_mirrors_python,
    callbacks_run_once_in_order, callback_on_done_future_runs_on_caller,
    callback_panic_is_contained, wait_first_completed, wait_first_exception,
    wait_all_completed_and_timeout, wait_counts_duplicates_once,
    as_completed_yields_done_first_and_once, as_completed_timeout_reports_unfinished,
    await_does_not_block, result_by_value_and_by_ref, map_in_order_and_lazy,
    map_errors_per_item, map_chunksize_and_unordered, map_timeout, concurrent_submitters);
