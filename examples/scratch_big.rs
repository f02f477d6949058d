use concurrent_futures::*;
use std::time::Instant;
fn len(b: Bytes) -> usize {
    b.len()
}
fn len_vec(b: Vec<u8>) -> usize {
    b.len()
}
fn main() {
    let pool = ProcessPoolExecutor::new(2);
    let data = vec![7u8; 64 << 20];
    for _ in 0..3 {
        let b = Bytes::from(data.clone());
        let t = Instant::now();
        let n = pool.submit(len, b).result().unwrap();
        let e = t.elapsed();
        println!(
            "Bytes 64MiB: {:?} -> {:.2} GB/s ({n})",
            e,
            (64 << 20) as f64 / e.as_secs_f64() / 1e9
        );
    }
    let t = Instant::now();
    let n = pool.submit(len_vec, data.clone()).result().unwrap();
    let e = t.elapsed();
    println!(
        "Vec<u8> 64MiB: {:?} -> {:.2} GB/s ({n})",
        e,
        (64 << 20) as f64 / e.as_secs_f64() / 1e9
    );
}
