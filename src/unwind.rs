//! Catching a task's panic as a [`Panic`] value with its message and location.
//!
//! Rust's panic hook runs before unwinding starts and is the only place that sees the
//! location. The crate installs one hook, once, that records the location of panics raised
//! inside tasks into a thread-local and stays silent for them (a task's panic is delivered to
//! its future, as Python delivers a task's exception, instead of being printed). Panics
//! outside tasks go to the hook that was installed before, unchanged.
//!
//! Built with `panic = "abort"`, a panic cannot be caught: the process aborts right after the
//! hook. The hook then reports a task's panic as the default hook would (message and
//! location, through the hook installed before), with a line that says a task panicked and
//! the process aborts; on a process pool that process is the worker, which the pool reports
//! as [`TaskError::WorkerDied`].

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

use crate::error::{Panic, TaskError};

thread_local! {
    /// Depth of `catch` frames on this thread (tasks may run tasks inline).
    static IN_TASK: Cell<u32> = const { Cell::new(0) };
    /// Location of the last panic raised inside a task on this thread.
    static LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

static HOOK: Once = Once::new();

/// Installs the crate's panic hook (idempotent). Called when a pool is built.
pub(crate) fn install_hook() {
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if cfg!(panic = "abort") {
                // Nothing will catch it: say it now, the only chance before the abort.
                previous(info);
                if IN_TASK.with(Cell::get) > 0 {
                    eprintln!(
                        "concurrent_futures: a task panicked in a program built with \
                         `panic = \"abort\"`: the process aborts (`TaskError::Panicked` \
                         needs `panic = \"unwind\"`)"
                    );
                }
            } else if IN_TASK.with(Cell::get) > 0 {
                let loc = info
                    .location()
                    .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
                LOCATION.with(|slot| *slot.borrow_mut() = loc);
            } else {
                previous(info);
            }
        }));
    });
}

/// Marks the current thread as running task code while alive, so that the hook records
/// (and silences) panics raised meanwhile.
pub(crate) struct TaskScope(());

impl TaskScope {
    pub(crate) fn enter() -> TaskScope {
        IN_TASK.with(|d| d.set(d.get() + 1));
        TaskScope(())
    }
}

impl Drop for TaskScope {
    fn drop(&mut self) {
        IN_TASK.with(|d| d.set(d.get() - 1));
    }
}

/// Turns a caught panic payload into [`TaskError::Panicked`], with the location the hook
/// recorded. Call it inside the [`TaskScope`] the panic happened in.
pub(crate) fn panic_error(payload: Box<dyn Any + Send>) -> TaskError {
    let location = LOCATION.with(|slot| slot.borrow_mut().take());
    TaskError::Panicked(Panic::new(message_of(payload.as_ref()), location))
}

/// Runs `f`, turning a panic into [`TaskError::Panicked`].
pub(crate) fn catch<R>(f: impl FnOnce() -> R) -> Result<R, TaskError> {
    let _scope = TaskScope::enter();
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(panic_error)
}

/// Runs a user callback; a panic is reported on stderr and swallowed (Python logs an
/// exception raised by a done-callback and carries on).
pub(crate) fn run_callback(f: impl FnOnce()) {
    if let Err(TaskError::Panicked(p)) = catch(f) {
        eprintln!("concurrent_futures: a done-callback panicked: {p}");
    }
}

/// The text of a panic payload, as the default hook prints it.
pub(crate) fn message_of(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_owned()
    }
}
