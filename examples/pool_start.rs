//! How long a process pool takes from `new` to its first result, with a small heap and with
//! a large one: workers are started with `posix_spawn` (their socket is their standard
//! input), so a parent holding a lot of memory does not make them slower to start, as a
//! `fork` of that parent would.
//!
//! ```sh
//! cargo run --release --example pool_start          # 512 MiB for the large heap
//! cargo run --release --example pool_start -- 2048  # 2 GiB
//! ```

use std::time::Instant;

use concurrent_futures::{Executor, ProcessPoolExecutor};

fn trivial(x: u64) -> u64 {
    x + 1
}

/// Median milliseconds from `ProcessPoolExecutor::new(2)` to its first result, of 7 starts.
fn start_to_first_result() -> f64 {
    let mut ms: Vec<f64> = (0..7)
        .map(|_| {
            let t = Instant::now();
            let pool = ProcessPoolExecutor::new(2);
            assert_eq!(pool.submit(trivial, 1).result(), Ok(2));
            let elapsed = t.elapsed().as_secs_f64() * 1e3;
            drop(pool);
            elapsed
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    ms[ms.len() / 2]
}

fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(512);
    let small = start_to_first_result();
    // A heap the size of a real program's, touched so that it is really there.
    let heap = vec![1u8; mib << 20];
    std::hint::black_box(&heap);
    let large = start_to_first_result();
    println!("start to first result, 2 workers, median of 7:");
    println!("  parent heap small:    {small:.2} ms");
    println!(
        "  parent heap {mib} MiB: {large:.2} ms ({:.2}x)",
        large / small
    );
}
