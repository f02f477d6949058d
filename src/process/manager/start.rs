//! Starting workers: spawn with an inherited socket pair, wait for the hello, watch their
//! sockets and pidfds; on any failure, everything started is killed and reaped and
//! everything opened is closed (`ChildGuard` and owned descriptors).

use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::transport::WorkerProcess;
use super::{Manager, socket_key};
use crate::error::ExitStatus;
use crate::os::{self, Memfd, Pidfd, Recv, Socket};
use crate::process::wire::{Hello, LOG_SIZE, TAG_HELLO, TAG_WELCOME};
use crate::remote::bootstrap::{self, CONNECT_TIMEOUT, ChildGuard, ENV_WORKER, StartError};
use crate::remote::scheduler::Worker;
use crate::remote::{codec, naming};
use crate::sync;
use std::process::Child;

impl Manager {
    /// Starts `n` workers (on the manager thread): spawns them all, waits for each
    /// handshake, then watches their sockets. On a failure, every worker started here is
    /// killed and reaped, and everything opened for them is closed.
    pub(super) fn spawn_workers(&self, n: usize) -> Result<(), StartError> {
        if n == 0 {
            return Ok(());
        }
        let mut starting = Vec::with_capacity(n);
        for _ in 0..n {
            starting.push(Starting::spawn()?);
        }
        let mut connected = Vec::with_capacity(n);
        for s in starting {
            let link = s.connect()?;
            let init = self.config.initializer.as_ref();
            if let Some(init) = init {
                // (On an error, dropping the links kills and reaps their workers.)
                let file: Vec<_> = init.file().map(AsFd::as_fd).into_iter().collect();
                link.send(&init.message(), &file)
                    .map_err(|e| StartError::Connect("worker", e.to_string()))?;
            }
            // Ready once its initializer has run; answers revokes while a task runs.
            let budget = self.config.max_tasks_per_child;
            connected.push(Worker::new(link, init.is_none(), budget, true));
        }
        for mut worker in connected {
            let link = &mut worker.link;
            let mut st = sync::lock(&self.state);
            let id = st.next_worker;
            st.next_worker += 1;
            // (A replacement starts only after the worker it replaces is gone: a row is free.)
            link.row = st.free_rows.pop().unwrap_or(usize::MAX);
            if id > self.config.workers as u64 && self.recording() {
                self.record_worker_started(link.row, link.pid);
            }
            let watched = self
                .poller
                .add(link.main.as_fd(), socket_key(id))
                .and_then(|()| self.poller.add(link.pidfd.as_fd(), socket_key(id) + 1));
            if let Err(e) = watched {
                return Err(StartError::spawn_or_shortage("cannot watch a worker: ", e));
            }
            crate::trace::worker_started(crate::trace::Pool::Process, link.pid.into());
            st.workers.insert(id, worker);
            st.dispatch();
        }
        let _st = sync::lock(&self.state);
        self.changed.notify_all();
        Ok(())
    }
}

/// Waits for a worker whose socket closed or whose process exited, and reports how it
/// ended.
pub(super) fn reap(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + Duration::from_millis(200);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return bootstrap::exit_status(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
            Ok(None) => {
                // Socket closed but still running: it cannot serve us any more.
                let _ = child.kill();
                return child
                    .wait()
                    .map(bootstrap::exit_status)
                    .unwrap_or(ExitStatus::Unknown);
            }
            Err(_) => return ExitStatus::Unknown,
        }
    }
}

/// A worker process that was spawned and has not said hello yet. Dropped before it
/// connects, it is killed and reaped.
struct Starting {
    child: ChildGuard,
    main: Socket,
    ctl: Socket,
    log: Memfd,
}

impl Starting {
    /// Spawns a worker with one end of a socket pair: only it can talk to us on the other.
    /// The welcome (its control socket and result log) waits in the socket for it.
    pub(super) fn spawn() -> Result<Starting, StartError> {
        let io = |e: std::io::Error| StartError::spawn_or_shortage("", e);
        // Each worker costs this process four descriptors (two sockets, a pidfd, the
        // result log): the first start raises the soft limit to the hard one, so that a
        // pool of a thousand workers fits; the worker gives the old limit back to its tasks.
        os::raise_nofile_limit();
        let (main, theirs) = Socket::pair().map_err(io)?;
        let (ctl, their_ctl) = Socket::pair().map_err(io)?;
        let log = Memfd::new(LOG_SIZE).map_err(io)?;
        let mut command = bootstrap::worker_executable();
        // The socket is the worker's standard input: no other process gets it, and the
        // child is started with `posix_spawn` (no fork of this process, however large).
        command.env(ENV_WORKER, "stdin");
        command.stdin(std::process::Stdio::from(theirs.into_owned()));
        let child = ChildGuard(command.spawn().map_err(io)?);
        main.send(&[&[TAG_WELCOME]], &[their_ctl.as_fd(), log.as_fd()])
            .map_err(|e| StartError::Connect("worker", e.to_string()))?;
        Ok(Starting {
            child,
            main,
            ctl,
            log,
        })
    }

    /// Waits for the worker's hello, bounded by `CONNECT_TIMEOUT`, noticing a worker that
    /// dies first.
    pub(super) fn connect(self) -> Result<WorkerProcess, StartError> {
        let Starting {
            mut child,
            main,
            ctl,
            log,
        } = self;
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        let mut buf = Vec::with_capacity(256);
        let mut fds = Vec::new();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(StartError::Exited("worker", bootstrap::exit_status(status)));
            }
            if Instant::now() > deadline {
                return Err(StartError::Timeout("worker", CONNECT_TIMEOUT));
            }
            match main.wait_readable(Duration::from_millis(5)) {
                Ok(false) => continue,
                Ok(true) => break,
                Err(e) => return Err(StartError::Connect("worker", e.to_string())),
            }
        }
        let hello = match main.recv(&mut buf, &mut fds, true) {
            Ok(Recv::Message(_)) if buf[0] == TAG_HELLO && fds.is_empty() => {
                codec::decode::<Hello>(&buf[1..])
                    .map_err(|e| StartError::Protocol("worker", e.to_string()))?
            }
            Ok(Recv::Closed) => {
                let status = child.wait().map(bootstrap::exit_status);
                return Err(StartError::Exited(
                    "worker",
                    status.unwrap_or(ExitStatus::Unknown),
                ));
            }
            Ok(_) => return Err(StartError::Protocol("worker", "no hello".into())),
            Err(e) => return Err(StartError::Connect("worker", e.to_string())),
        };
        if hello.fingerprint != naming::fingerprint() {
            return Err(StartError::Fingerprint("worker"));
        }
        let pid = child.id();
        if hello.pid != pid {
            return Err(StartError::Protocol(
                "worker",
                "a hello from another process".into(),
            ));
        }
        let io = |e: std::io::Error| StartError::spawn_or_shortage("", e);
        let pidfd = Pidfd::open(pid).map_err(io)?;
        // The parent created the log sealed against shrinking: this mapping cannot fault.
        let log_view = log.map(false).map_err(io)?;
        Ok(WorkerProcess {
            pid,
            child,
            main: Arc::new(main),
            ctl,
            pidfd,
            log,
            log_view,
            timed_out: None,
            cancel_by: None,
            row: usize::MAX,
        })
    }
}
