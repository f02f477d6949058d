//! [`current_process`] and [`cpu_count`]: what a process knows of itself.

use std::sync::OnceLock;

/// What [`current_process`] returns: the name, pid and daemon flag of the running process.
///
/// ```
/// let me = concurrent_futures::multiprocessing::current_process();
/// assert_eq!(me.name(), "MainProcess");
/// assert_eq!(me.pid(), std::process::id());
/// ```
#[derive(Debug, Clone)]
pub struct CurrentProcess {
    pub(super) name: String,
    pub(super) identity: Vec<u32>,
    pub(super) daemon: bool,
}

impl CurrentProcess {
    /// The name: `"MainProcess"` in the main program, the [`Process`]'s name in a child.
    ///
    /// [`Process`]: super::Process
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        std::process::id()
    }

    /// Whether this process was started as a daemon.
    pub fn daemon(&self) -> bool {
        self.daemon
    }
}

pub(super) static CURRENT: OnceLock<CurrentProcess> = OnceLock::new();

pub(super) fn me() -> &'static CurrentProcess {
    CURRENT.get_or_init(|| CurrentProcess {
        name: "MainProcess".into(),
        identity: Vec::new(),
        daemon: false,
    })
}

/// The process this code runs in. Python's `multiprocessing.current_process()`.
///
/// ```
/// assert_eq!(concurrent_futures::multiprocessing::current_process().name(), "MainProcess");
/// ```
pub fn current_process() -> CurrentProcess {
    me().clone()
}

/// The number of CPUs. Python's `multiprocessing.cpu_count()`.
///
/// ```
/// assert!(concurrent_futures::multiprocessing::cpu_count() >= 1);
/// ```
pub fn cpu_count() -> usize {
    crate::available_cpus()
}
