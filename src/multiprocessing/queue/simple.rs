//! [`SimpleQueue`]: a queue without the background writer.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Queue;
use super::ring::Wait;
use crate::multiprocessing::error::{GetError, PutError};
use crate::remote::codec;

/// Python's `multiprocessing.SimpleQueue`: an unbounded queue without the background
/// writer: `put` writes into the shared buffer itself, waiting for room if it is full.
///
/// ```
/// let q = concurrent_futures::multiprocessing::SimpleQueue::new();
/// q.put("x".to_string()).unwrap();
/// assert!(!q.empty());
/// assert_eq!(q.get().unwrap(), "x");
/// ```
pub struct SimpleQueue<T> {
    queue: Queue<T>,
}

impl<T> Clone for SimpleQueue<T> {
    fn clone(&self) -> Self {
        SimpleQueue {
            queue: self.queue.clone(),
        }
    }
}

impl<T> std::fmt::Debug for SimpleQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SimpleQueue { .. }")
    }
}

impl<T: Serialize + DeserializeOwned> Default for SimpleQueue<T> {
    fn default() -> Self {
        SimpleQueue::new()
    }
}

impl<T: Serialize + DeserializeOwned> SimpleQueue<T> {
    /// A new, empty queue.
    ///
    /// ```
    /// assert!(concurrent_futures::multiprocessing::SimpleQueue::<u8>::new().empty());
    /// ```
    pub fn new() -> SimpleQueue<T> {
        SimpleQueue {
            queue: Queue::new(0),
        }
    }

    /// Puts an item, writing it now (waiting for room in the buffer if needed).
    ///
    /// ```
    /// let q = concurrent_futures::multiprocessing::SimpleQueue::new();
    /// q.put(1u8).unwrap();
    /// ```
    pub fn put(&self, item: T) -> Result<(), PutError<T>> {
        if self.queue.closed() {
            return Err(PutError::Closed(item));
        }
        let bytes = match codec::encode(&item) {
            Ok(b) => b,
            Err(e) => return Err(PutError::Encode(item, e.to_string())),
        };
        let ring = &self.queue.core.ring;
        ring.reserve(None);
        if !ring.write(&bytes, Wait::Always) {
            ring.unreserve();
        }
        Ok(())
    }

    /// Takes the next item, waiting for one.
    ///
    /// ```
    /// let q = concurrent_futures::multiprocessing::SimpleQueue::new();
    /// q.put(2u8).unwrap();
    /// assert_eq!(q.get(), Ok(2));
    /// ```
    pub fn get(&self) -> Result<T, GetError> {
        self.queue.get()
    }

    /// Whether the queue is empty.
    ///
    /// ```
    /// assert!(concurrent_futures::multiprocessing::SimpleQueue::<u8>::new().empty());
    /// ```
    pub fn empty(&self) -> bool {
        self.queue.empty()
    }

    /// Closes this process's handle (see [`Queue::close`]).
    ///
    /// ```
    /// let q = concurrent_futures::multiprocessing::SimpleQueue::<u8>::new();
    /// q.close();
    /// assert!(q.get().is_err());
    /// ```
    pub fn close(&self) {
        self.queue.close();
    }
}

impl<T> Serialize for SimpleQueue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.queue.serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for SimpleQueue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(SimpleQueue {
            queue: Queue::deserialize(deserializer)?,
        })
    }
}
