//! [`Pipe`] and [`Connection`]: two connected ends that send values to each other.

use std::time::Duration;

use ipc_channel::ipc::{self, IpcReceiver, IpcSender};
use ipc_channel::{IpcError, TryRecvError};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::ConnectionError;
use super::shm::{check_sharing, sharing};

/// Python's `multiprocessing.Pipe`: makes two connected [`Connection`]s.
///
/// ```
/// use concurrent_futures::multiprocessing::{Connection, Pipe, Process};
///
/// fn child(conn: Connection<String>) {
///     conn.send("hello from the child".to_string()).unwrap();
/// }
///
/// let (parent_conn, child_conn) = Pipe::new(true).unwrap();
/// let p = Process::new(child, child_conn);
/// p.start().unwrap();
/// assert_eq!(parent_conn.recv().unwrap(), "hello from the child");
/// p.join().unwrap();
/// ```
#[derive(Debug)]
pub enum Pipe {}

impl Pipe {
    /// Two connected ends. With `duplex`, both send and receive (Python's default);
    /// without, the first only receives and the second only sends (Python's
    /// `Pipe(duplex=False)`).
    ///
    /// ```
    /// use concurrent_futures::multiprocessing::{ConnectionError, Pipe};
    /// let (reader, writer) = Pipe::new(false).unwrap();
    /// writer.send(5u8).unwrap();
    /// assert_eq!(reader.recv(), Ok(5));
    /// assert_eq!(reader.send(6), Err(ConnectionError::ReadOnly));
    /// ```
    #[allow(clippy::new_ret_no_self)]
    pub fn new<T>(duplex: bool) -> Result<(Connection<T>, Connection<T>), ConnectionError>
    where
        T: Serialize + DeserializeOwned,
    {
        let os = |e: std::io::Error| ConnectionError::Os(e.into());
        let (tx1, rx1) = ipc::channel::<T>().map_err(os)?;
        if duplex {
            let (tx2, rx2) = ipc::channel::<T>().map_err(os)?;
            Ok((
                Connection::new(Some(tx1), Some(rx2)),
                Connection::new(Some(tx2), Some(rx1)),
            ))
        } else {
            Ok((
                Connection::new(None, Some(rx1)),
                Connection::new(Some(tx1), None),
            ))
        }
    }
}

/// One end of a [`Pipe`]: `send` values to the other end, `recv` what it sent.
///
/// Values are encoded with serde. Shared primitives ([`Lock`](super::Lock),
/// [`Value`](super::Value), another `Connection`, …) may travel inside them: they arrive
/// shared, not copied. A `Connection` moves to a child process in the child's arguments (it
/// then belongs to the child). It may be shared by threads of one process.
///
/// `recv` returns [`ConnectionError::Eof`] once the other end is closed (dropped, closed,
/// or its process died) and everything it sent was received.
pub struct Connection<T> {
    tx: Mutex<Option<IpcSender<T>>>,
    rx: Mutex<Receiving<T>>,
    readable: bool,
    writable: bool,
}

struct Receiving<T> {
    rx: Option<IpcReceiver<T>>,
    /// A value `poll` received before `recv` asked for it.
    peeked: Option<T>,
}

impl<T> std::fmt::Debug for Connection<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("readable", &self.readable)
            .field("writable", &self.writable)
            .field(
                "closed",
                &(self.tx.lock().is_none() && self.rx.lock().rx.is_none()),
            )
            .finish()
    }
}

impl<T: Serialize + DeserializeOwned> Connection<T> {
    fn new(tx: Option<IpcSender<T>>, rx: Option<IpcReceiver<T>>) -> Connection<T> {
        Connection {
            readable: rx.is_some(),
            writable: tx.is_some(),
            tx: Mutex::new(tx),
            rx: Mutex::new(Receiving { rx, peeked: None }),
        }
    }

    /// Sends a value to the other end. Python's `send(obj)`.
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::Pipe;
    /// let (a, b) = Pipe::new(true).unwrap();
    /// a.send(vec![1, 2, 3]).unwrap();
    /// assert_eq!(b.recv().unwrap(), vec![1, 2, 3]);
    /// ```
    pub fn send(&self, value: T) -> Result<(), ConnectionError> {
        if !self.writable {
            return Err(ConnectionError::ReadOnly);
        }
        let tx = self.tx.lock();
        let tx = tx.as_ref().ok_or(ConnectionError::Closed)?;
        sharing(|| tx.send(value)).map_err(|e| match e {
            IpcError::Io(io) => match io.kind() {
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset => {
                    ConnectionError::BrokenPipe
                }
                _ => ConnectionError::Os(io.into()),
            },
            other => ConnectionError::Codec(other.to_string()),
        })
    }

    /// Waits for the next value. Python's `recv()`; [`ConnectionError::Eof`] is Python's
    /// `EOFError`.
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::{ConnectionError, Pipe};
    /// let (a, b) = Pipe::new(true).unwrap();
    /// a.send(1u8).unwrap();
    /// drop(a);
    /// assert_eq!(b.recv(), Ok(1)); // what was sent before the close arrives first
    /// assert_eq!(b.recv(), Err(ConnectionError::Eof));
    /// ```
    pub fn recv(&self) -> Result<T, ConnectionError> {
        if !self.readable {
            return Err(ConnectionError::WriteOnly);
        }
        let mut r = self.rx.lock();
        if let Some(v) = r.peeked.take() {
            return Ok(v);
        }
        let rx = r.rx.as_ref().ok_or(ConnectionError::Closed)?;
        rx.recv().map_err(recv_error)
    }

    /// Whether a value (or the end of the stream) is ready to `recv`, waiting at most
    /// `timeout` (`None`: as long as it takes; zero: not at all). Python's `poll(timeout)`.
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::Pipe;
    /// # use std::time::Duration;
    /// let (a, b) = Pipe::new(true).unwrap();
    /// assert_eq!(b.poll(Some(Duration::ZERO)), Ok(false));
    /// a.send("x".to_string()).unwrap();
    /// assert_eq!(b.poll(Some(Duration::from_secs(10))), Ok(true));
    /// assert_eq!(b.recv().unwrap(), "x");
    /// ```
    pub fn poll(&self, timeout: Option<Duration>) -> Result<bool, ConnectionError> {
        if !self.readable {
            return Err(ConnectionError::WriteOnly);
        }
        let mut r = self.rx.lock();
        if r.peeked.is_some() {
            return Ok(true);
        }
        let rx = r.rx.as_ref().ok_or(ConnectionError::Closed)?;
        let got = match timeout {
            None => rx.recv().map_err(TryRecvError::IpcError),
            Some(t) if t.is_zero() => rx.try_recv(),
            Some(t) => rx.try_recv_timeout(t),
        };
        match got {
            Ok(v) => {
                r.peeked = Some(v);
                Ok(true)
            }
            Err(TryRecvError::Empty) => Ok(false),
            Err(TryRecvError::IpcError(IpcError::Disconnected)) => Ok(true),
            Err(TryRecvError::IpcError(e)) => Err(recv_error(e)),
        }
    }

    /// Closes this end: the other end's `recv` reports EOF once it has received everything.
    /// Python's `close()`. Dropping the connection does the same.
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::{ConnectionError, Pipe};
    /// let (a, b) = Pipe::new::<u8>(true).unwrap();
    /// a.close();
    /// assert_eq!(a.send(1), Err(ConnectionError::Closed));
    /// assert_eq!(b.recv(), Err(ConnectionError::Eof));
    /// ```
    pub fn close(&self) {
        self.tx.lock().take();
        let mut r = self.rx.lock();
        r.rx.take();
        r.peeked.take();
    }

    /// Whether [`close`](Self::close) was called. Python's `closed`.
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::Pipe;
    /// let (a, _b) = Pipe::new::<u8>(true).unwrap();
    /// assert!(!a.closed());
    /// a.close();
    /// assert!(a.closed());
    /// ```
    pub fn closed(&self) -> bool {
        self.tx.lock().is_none() && self.rx.lock().rx.is_none()
    }

    /// Whether this end can receive. Python's `readable`.
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::Pipe;
    /// let (r, w) = Pipe::new::<u8>(false).unwrap();
    /// assert!(r.readable() && !w.readable());
    /// ```
    pub fn readable(&self) -> bool {
        self.readable
    }

    /// Whether this end can send. Python's `writable`.
    ///
    /// ```
    /// # use concurrent_futures::multiprocessing::Pipe;
    /// let (r, w) = Pipe::new::<u8>(false).unwrap();
    /// assert!(w.writable() && !r.writable());
    /// ```
    pub fn writable(&self) -> bool {
        self.writable
    }
}

fn recv_error(e: IpcError) -> ConnectionError {
    match e {
        IpcError::Disconnected => ConnectionError::Eof,
        IpcError::SerializationError(e) => ConnectionError::Codec(e.to_string()),
        IpcError::Io(e) => ConnectionError::Os(e.into()),
    }
}

/// What crosses to another process: the channel ends (which then belong to it).
#[derive(Serialize, Deserialize)]
struct Wire<T> {
    tx: Option<IpcSender<T>>,
    rx: Option<IpcReceiver<T>>,
    readable: bool,
    writable: bool,
}

impl<T: Serialize + DeserializeOwned> Serialize for Connection<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        check_sharing::<S::Error>("Connection")?;
        // Sending a receiving end moves its descriptor into the message: this end is
        // consumed (a connection passed to a child belongs to the child).
        let mut r = self.rx.lock();
        let wire = Wire {
            tx: self.tx.lock().take(),
            rx: r.rx.take(),
            readable: self.readable,
            writable: self.writable,
        };
        wire.serialize(serializer)
    }
}

impl<'de, T: Serialize + DeserializeOwned> Deserialize<'de> for Connection<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = Wire::<T>::deserialize(deserializer)?;
        Ok(Connection {
            tx: Mutex::new(wire.tx),
            rx: Mutex::new(Receiving {
                rx: wire.rx,
                peeked: None,
            }),
            readable: wire.readable,
            writable: wire.writable,
        })
    }
}
