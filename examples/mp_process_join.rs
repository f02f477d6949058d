//! Reclaiming child processes with `join`, and daemonic children: the main process starts
//! three children and joins them (so it ends after them and reclaims them: no zombies);
//! then two daemonic children, joined too; and a daemonic child that is not joined, which
//! dies with the main process.
//!
//! Ports the tutorial's seed 002, "two methods of subprocess recycling".
//!
//! Run: `cargo run --example mp_process_join`

use std::time::Duration;

use concurrent_futures::multiprocessing::Process;

fn task(name: u32) {
    println!("Child process{name}: starting......");
    std::thread::sleep(Duration::from_secs(1));
    println!("Child process{name}: end......");
}

fn daemon_task(_: ()) {
    println!("starting......");
    std::thread::sleep(Duration::from_secs(2));
    println!("ending......");
}

fn main() {
    println!("Enter the main process");
    let mut pro_list = Vec::new();
    for i in 0..3 {
        let pro_obj = Process::new(task, i);
        pro_obj.start().expect("cannot start");
        pro_list.push(pro_obj);
    }
    for pro in &pro_list {
        // Only when the children finish does the main process go on, and it reaps them.
        pro.join().expect("started");
    }
    println!("End main process");

    println!("Enter the main process");
    let mut obj_list = Vec::new();
    for _ in 0..2 {
        // The daemon flag must be set before the process starts.
        let pro_obj = Process::new(daemon_task, ()).with_daemon(true);
        pro_obj.start().expect("cannot start");
        obj_list.push(pro_obj);
    }
    for obj in &obj_list {
        obj.join().expect("started");
    }
    println!("End of main process");

    // A daemonic child that is not joined dies with the main process: "ending......" is
    // never printed for it (the kernel kills it when this process exits).
    let pro_obj = Process::new(daemon_task, ()).with_daemon(true);
    pro_obj.start().expect("cannot start");
    std::thread::sleep(Duration::from_millis(500));
    println!("End of main process (its daemon is still sleeping, and dies with it)");
}
