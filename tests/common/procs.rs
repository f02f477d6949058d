//! What `/proc` says about processes: the one place the tests read it.
#![allow(dead_code)]

use std::path::Path;

/// True if `pid` is gone entirely: exited and reaped (a zombie still has its entry).
pub fn gone(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

/// True once `pid` has exited: gone, or a zombie waiting for whoever reaps it.
pub fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // pid (comm) state ...: comm may hold anything, so read after the last ')'.
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

/// True once `pid` has exited with all its threads, so that its files are closed: its main
/// thread turns zombie while the others may still be on their way out.
pub fn exited_with_all_threads(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Ok(status) => {
            let field = |name: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(str::trim)
                    .unwrap_or_default()
                    .to_owned()
            };
            field("State:").starts_with('Z') && field("Threads:") == "1"
        }
        Err(_) => true,
    }
}

/// Every child of this process, zombies included.
pub fn children() -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
                out.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
            }
        }
    }
    out
}

/// Open descriptors of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Descriptors of this process whose target starts with `prefix` (`socket:`, `/memfd:`).
pub fn fds_like(prefix: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .flatten()
    {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(target) = std::fs::read_link(entry.path())
            && target.to_string_lossy().starts_with(prefix)
        {
            out.push(fd);
        }
    }
    out
}

/// Never returns (a task or a process that must be stopped from outside).
pub fn park_forever() -> ! {
    loop {
        std::thread::park();
    }
}

/// A task that never ends.
pub fn forever(_: ()) -> u8 {
    park_forever()
}

/// A `Process` target that never ends.
pub fn run_forever(_: ()) {
    park_forever()
}
