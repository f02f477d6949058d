//! A `Pipe` between two processes: `proc1` sends 0..5 through one end of a duplex pipe,
//! `proc2` receives them from the other. (The seed's loops run forever; here the sender
//! stops after five messages and closes its end, so the receiver's `recv` reports EOF and
//! it stops.)
//!
//! Ports the tutorial's seed 003, section 6 (Pipe).
//!
//! Run: `cargo run --example mp_pipe` (about 5 s)

use std::time::Duration;

use concurrent_futures::multiprocessing::{Connection, ConnectionError, Pipe, Process};

fn proc1(pipe: Connection<u32>) {
    for i in 0..5 {
        println!("send: {i}");
        pipe.send(i).expect("the receiver is gone");
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn proc2(pipe: Connection<u32>) {
    loop {
        match pipe.recv() {
            Ok(v) => println!("proc2 rev: {v}"),
            Err(ConnectionError::Eof) => {
                println!("proc2: the other end is closed (EOFError)");
                break;
            }
            Err(e) => panic!("recv failed: {e}"),
        }
    }
}

fn main() {
    let (a, b) = Pipe::new(true).expect("cannot create a pipe"); // multiprocessing.Pipe()
    let p1 = Process::new(proc1, a);
    let p2 = Process::new(proc2, b);
    p1.start().expect("cannot start");
    p2.start().expect("cannot start");
    p1.join().expect("started");
    p2.join().expect("started");
}
