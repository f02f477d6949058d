//! Program end waits for a process pool still alive (see `crate::exit`).

use super::manager::Manager;

impl crate::exit::Watched for Manager {
    fn stop_accepting(&self) {
        self.shutdown(false, false);
    }

    fn wait_done(&self) {
        self.join();
    }

    /// Kills the workers: the program ends, and no worker may outlive it.
    fn abandon(&self) {
        self.signal_workers(libc::SIGKILL);
    }
}
