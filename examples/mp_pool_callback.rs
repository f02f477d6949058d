//! A process pool with a callback: a pool of 10 processes runs `func1` 100 times (each
//! sleeps 5 s, prints its value and returns `value + 100`); the callback `display_pro_info`
//! prints its own pid and parent pid and the value. As the seed stresses, the callback runs
//! in the main process: every callback line shows the main program's pid (and its parent),
//! never a worker's, so it may write one shared log without a lock.
//!
//! Ports the tutorial's seeds 000 and 001, the process pool with a callback.
//!
//! Run: `cargo run --example mp_pool_callback` (about 50 s: 100 tasks of 5 s, 10 at a
//! time).

use std::time::Duration;

use concurrent_futures::multiprocessing::Pool;

fn func1(value: u64) -> u64 {
    std::thread::sleep(Duration::from_secs(5));
    println!("---------->{value}");
    value + 100
}

fn display_pro_info(value: u64) {
    println!("{}", std::process::id());
    println!("{}", std::os::unix::process::parent_id());
    println!("log:{value}");
}

fn main() {
    let pro_pool = Pool::new(10); // multiprocessing.Pool(10)
    display_pro_info(1);
    println!("--------------->");
    for i in 0..100 {
        // pro_pool.apply_async(func=func1, args=(i,), callback=display_pro_info)
        pro_pool
            .apply_async(func1, i)
            .callback(|&value| display_pro_info(value));
    }
    pro_pool.close(); // close first, then join: the order is fixed
    pro_pool.join().expect("closed");
    println!("the end!");
}
