//! [`AsyncResult`]: Python's handle to the result of [`Pool::apply_async`] or
//! [`Pool::map_async`], over a [`Future`].
//!
//! [`Pool::apply_async`]: super::Pool::apply_async
//! [`Pool::map_async`]: super::Pool::map_async

use std::time::Duration;

use crate::error::TaskError;
use crate::future::Future;

/// Python's `AsyncResult`: the result of [`Pool::apply_async`](super::Pool::apply_async) or
/// [`Pool::map_async`](super::Pool::map_async).
///
/// ```
/// use concurrent_futures::multiprocessing::Pool;
/// use std::time::Duration;
/// fn slow(x: u32) -> u32 { std::thread::sleep(Duration::from_millis(50)); x }
/// let pool = Pool::new(1);
/// let res = pool.apply_async(slow, 3);
/// assert!(!res.ready());
/// assert_eq!(res.successful(), None); // not ready: Python raises ValueError
/// assert_eq!(res.get_timeout(Duration::from_secs(30)), Ok(3));
/// assert!(res.ready());
/// assert_eq!(res.successful(), Some(true));
/// ```
pub struct AsyncResult<R> {
    pub(super) fut: Future<R>,
}

impl<R> std::fmt::Debug for AsyncResult<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncResult")
            .field("state", &self.fut.state())
            .finish()
    }
}

impl<R: Send + Sync + 'static> AsyncResult<R> {
    /// Runs `callback` with the result when it succeeds, in this process (the pool's
    /// result thread, or this thread if the result is already there). Python's
    /// `callback=`.
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::Pool;
    /// fn pid(_: ()) -> u32 { std::process::id() }
    /// let pool = Pool::new(1);
    /// let parent = std::process::id();
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// pool.apply_async(pid, ()).callback(move |worker| {
    ///     tx.send((*worker, std::process::id())).unwrap();
    /// });
    /// let (worker, ran_in) = rx.recv_timeout(std::time::Duration::from_secs(30)).unwrap();
    /// assert_ne!(worker, parent);
    /// assert_eq!(ran_in, parent); // the callback ran in the parent
    /// ```
    pub fn callback(self, callback: impl FnOnce(&R) + Send + 'static) -> Self {
        self.fut.add_done_callback(move |f| {
            if let Ok(v) = f.result_ref() {
                callback(v);
            }
        });
        self
    }

    /// Runs `callback` with the error when the call fails, in this process. Python's
    /// `error_callback=`.
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::Pool;
    /// fn boom(_: ()) -> u8 { panic!("boom") }
    /// let pool = Pool::new(1);
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// pool.apply_async(boom, ()).error_callback(move |e| tx.send(e.to_string()).unwrap());
    /// let msg = rx.recv_timeout(std::time::Duration::from_secs(30)).unwrap();
    /// assert!(msg.contains("boom"));
    /// ```
    pub fn error_callback(self, callback: impl FnOnce(&TaskError) + Send + 'static) -> Self {
        self.fut.add_done_callback(move |f| {
            if let Err(e) = f.result_ref() {
                callback(&e);
            }
        });
        self
    }

    /// Waits for the result. Python's `get()`.
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::Pool;
    /// fn id(x: u8) -> u8 { x }
    /// let pool = Pool::new(1);
    /// assert_eq!(pool.apply_async(id, 4).get(), Ok(4));
    /// ```
    pub fn get(&self) -> Result<R, TaskError>
    where
        R: Clone,
    {
        self.fut.result()
    }

    /// Waits at most `timeout` for the result ([`TaskError::Timeout`] after that; the call
    /// goes on). Python's `get(timeout)`.
    ///
    /// ```
    /// # use concurrent_futures::{TaskError, multiprocessing::Pool};
    /// # use std::time::Duration;
    /// fn forever(_: ()) { loop { std::thread::park() } }
    /// let pool = Pool::new(1);
    /// let res = pool.apply_async(forever, ());
    /// assert_eq!(res.get_timeout(Duration::from_millis(20)), Err(TaskError::Timeout));
    /// pool.terminate();
    /// ```
    pub fn get_timeout(&self, timeout: Duration) -> Result<R, TaskError>
    where
        R: Clone,
    {
        self.fut.result_timeout(timeout)
    }

    /// Waits for the result without taking it. Python's `wait()`.
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::Pool;
    /// fn id(x: u8) -> u8 { x }
    /// let pool = Pool::new(1);
    /// let res = pool.apply_async(id, 1);
    /// res.wait();
    /// assert!(res.ready());
    /// ```
    pub fn wait(&self) {
        self.fut.wait();
    }

    /// Waits at most `timeout`; true if the result is there. Python's `wait(timeout)`.
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::Pool;
    /// fn id(x: u8) -> u8 { x }
    /// let pool = Pool::new(1);
    /// let res = pool.apply_async(id, 1);
    /// assert!(res.wait_timeout(std::time::Duration::from_secs(30)));
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.fut.wait_timeout(timeout)
    }

    /// Whether the call finished. Python's `ready()`.
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::Pool;
    /// fn id(x: u8) -> u8 { x }
    /// let pool = Pool::new(1);
    /// let res = pool.apply_async(id, 1);
    /// res.wait();
    /// assert!(res.ready());
    /// ```
    pub fn ready(&self) -> bool {
        self.fut.done()
    }

    /// Whether the call succeeded; `None` while it runs (Python raises `ValueError`).
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::Pool;
    /// fn boom(_: ()) -> u8 { panic!("boom") }
    /// let pool = Pool::new(1);
    /// let res = pool.apply_async(boom, ());
    /// res.wait();
    /// assert_eq!(res.successful(), Some(false));
    /// ```
    pub fn successful(&self) -> Option<bool> {
        if !self.fut.done() {
            return None;
        }
        Some(self.fut.result_ref().is_ok())
    }

    /// The [`Future`] underneath (for `wait`, `as_completed`, `.await`, …).
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::Pool;
    /// fn id(x: u8) -> u8 { x }
    /// let pool = Pool::new(1);
    /// let fut = pool.apply_async(id, 2).into_future();
    /// assert_eq!(fut.result(), Ok(2));
    /// ```
    pub fn into_future(self) -> Future<R> {
        self.fut
    }
}
