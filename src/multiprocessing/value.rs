//! Shared memory values: [`Value<T>`] and [`Array<T>`], plain data with their lock.

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use bytemuck::Pod;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::{LockResult, OwnerDied};
use super::shm::{RawMutex, Reentrant, Shared, TailLock, shared_header};

shared_header! {
    pub(crate) struct CellsHeader: KIND = 6;
    {
        m: RawMutex,
        /// `size_of::<T>()`, checked by a receiving process.
        elem: AtomicU32,
    }
}

/// Elements of `T` in shared memory with their lock: the body of `Value` and `Array`.
struct Cells<T> {
    shared: Arc<Shared<CellsHeader>>,
    _t: PhantomData<T>,
}

impl<T> Clone for Cells<T> {
    fn clone(&self) -> Self {
        Cells {
            shared: self.shared.clone(),
            _t: PhantomData,
        }
    }
}

impl<T: Pod> Cells<T> {
    fn new(values: &[T]) -> Cells<T> {
        let bytes: &[u8] = bytemuck::cast_slice(values);
        let shared = Shared::new(bytes.len(), |h: &CellsHeader, init| {
            h.m.init(init, Reentrant::No);
            h.elem.store(size_of::<T>() as u32, Ordering::Relaxed);
        });
        shared
            .get()
            .m
            .with(|held| shared.write_tail(held, 0, bytes));
        Cells {
            shared: Arc::new(shared),
            _t: PhantomData,
        }
    }

    fn len(&self) -> usize {
        self.shared.tail_len() / size_of::<T>().max(1)
    }

    fn mutex(&self) -> &RawMutex {
        &self.shared.get().m
    }

    /// Runs `f` on the elements with the lock held (repairing it if a holder died).
    fn with<R>(&self, f: impl FnOnce(&mut [T]) -> R) -> R {
        let (mut lock, _) = TailLock::lock(&self.shared, self.mutex());
        f(lock.slice_mut())
    }

    fn lock(&self) -> LockResult<TailLock<'_, T>> {
        match TailLock::lock(&self.shared, self.mutex()) {
            (lock, false) => Ok(lock),
            (lock, true) => Err(OwnerDied { guard: lock }),
        }
    }
}

impl<T> Serialize for Cells<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.shared.serialize(serializer)
    }
}

impl<'de, T: Pod> Deserialize<'de> for Cells<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let shared = Shared::<CellsHeader>::deserialize(deserializer)?;
        let elem = size_of::<T>();
        if shared.get().elem.load(Ordering::Relaxed) as usize != elem
            || shared.tail_len() % elem.max(1) != 0
        {
            return Err(serde::de::Error::custom(
                "a shared value does not hold elements of the expected type",
            ));
        }
        Ok(Cells {
            shared: Arc::new(shared),
            _t: PhantomData,
        })
    }
}

/// Python's `multiprocessing.Value`: one plain-data value in shared memory, with a lock.
///
/// `T` is plain data ([`bytemuck::Pod`]: integers, floats, arrays of them, `#[repr(C)]`
/// structs deriving `Pod`), the Rust counterpart of a ctypes type code (`Value('i', 0)` is
/// `Value::new(0i32)`). [`get`](Value::get) and [`set`](Value::set) each take the lock;
/// a read-modify-write holds it through [`get_lock`](Value::get_lock):
///
/// ```
/// use concurrent_futures::multiprocessing::{Process, Value};
///
/// fn add_ten(counter: Value<i32>) {
///     for _ in 0..10 {
///         *counter.get_lock().unwrap() += 1; // with counter.get_lock(): counter.value += 1
///     }
/// }
///
/// let counter = Value::new(0i32);
/// let children: Vec<_> = (0..3).map(|_| Process::new(add_ten, counter.clone())).collect();
/// for p in &children { p.start().unwrap(); }
/// for p in &children { p.join().unwrap(); }
/// assert_eq!(counter.get(), 30);
/// ```
///
/// The lock is not reentrant: calling `get` or `set` while holding the guard on the same
/// thread waits for itself. If a process dies holding the lock, `get_lock` reports it
/// ([`OwnerDied`]) and `get`/`set` carry on (the value is plain data, always valid).
pub struct Value<T> {
    cells: Cells<T>,
}

impl<T> Clone for Value<T> {
    fn clone(&self) -> Self {
        Value {
            cells: self.cells.clone(),
        }
    }
}

impl<T: Pod + std::fmt::Debug> std::fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Value").field(&self.get()).finish()
    }
}

impl<T> Serialize for Value<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.cells.serialize(serializer)
    }
}

impl<'de, T: Pod> Deserialize<'de> for Value<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let cells = Cells::<T>::deserialize(deserializer)?;
        if cells.len() != 1 {
            return Err(serde::de::Error::custom("a shared value holds an array"));
        }
        Ok(Value { cells })
    }
}

impl<T: Pod> Value<T> {
    /// A new shared value.
    ///
    /// ```
    /// let v = concurrent_futures::multiprocessing::Value::new(1.5f64);
    /// assert_eq!(v.get(), 1.5);
    /// ```
    pub fn new(value: T) -> Value<T> {
        Value {
            cells: Cells::new(std::slice::from_ref(&value)),
        }
    }

    /// Reads the value (taking the lock). Python's `v.value`.
    ///
    /// ```
    /// assert_eq!(concurrent_futures::multiprocessing::Value::new(7u8).get(), 7);
    /// ```
    pub fn get(&self) -> T {
        self.cells.with(|c| c[0])
    }

    /// Writes the value (taking the lock). Python's `v.value = x`.
    ///
    /// ```
    /// let v = concurrent_futures::multiprocessing::Value::new(0u64);
    /// v.set(9);
    /// assert_eq!(v.get(), 9);
    /// ```
    pub fn set(&self, value: T) {
        self.cells.with(|c| c[0] = value)
    }

    /// Takes the lock and gives access to the value until the guard drops. Python's
    /// `with v.get_lock():`.
    ///
    /// ```
    /// let v = concurrent_futures::multiprocessing::Value::new(1i32);
    /// *v.get_lock().unwrap() *= 5;
    /// assert_eq!(v.get(), 5);
    /// ```
    pub fn get_lock(&self) -> LockResult<ValueGuard<'_, T>> {
        self.cells
            .lock()
            .map(|guard| ValueGuard { guard })
            .map_err(|e| OwnerDied {
                guard: ValueGuard { guard: e.guard },
            })
    }
}

/// Holds a [`Value`]'s lock; dereferences to the value.
#[must_use = "dropping the guard releases the lock at once"]
pub struct ValueGuard<'a, T: Pod> {
    guard: TailLock<'a, T>,
}

impl<T: Pod> Deref for ValueGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard.slice()[0]
    }
}

impl<T: Pod> DerefMut for ValueGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard.slice_mut()[0]
    }
}

/// Python's `multiprocessing.Array`: a fixed-length array of plain data in shared memory,
/// with a lock.
///
/// ```
/// use concurrent_futures::multiprocessing::{Array, Process};
///
/// fn square_all(a: Array<i64>) {
///     for x in a.get_lock().unwrap().iter_mut() {
///         *x *= *x;
///     }
/// }
///
/// let arr = Array::new(&[1i64, 2, 3]);
/// let p = Process::new(square_all, arr.clone());
/// p.start().unwrap();
/// p.join().unwrap();
/// assert_eq!(arr.to_vec(), vec![1, 4, 9]);
/// ```
pub struct Array<T> {
    cells: Cells<T>,
}

impl<T> Clone for Array<T> {
    fn clone(&self) -> Self {
        Array {
            cells: self.cells.clone(),
        }
    }
}

impl<T: Pod + std::fmt::Debug> std::fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Array").field(&self.to_vec()).finish()
    }
}

impl<T> Serialize for Array<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.cells.serialize(serializer)
    }
}

impl<'de, T: Pod> Deserialize<'de> for Array<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Array {
            cells: Cells::deserialize(deserializer)?,
        })
    }
}

impl<T: Pod> Array<T> {
    /// A shared array holding a copy of `values`. Python's `Array('i', [1, 2, 3])`.
    ///
    /// ```
    /// let a = concurrent_futures::multiprocessing::Array::new(&[1u8, 2, 3]);
    /// assert_eq!(a.len(), 3);
    /// ```
    pub fn new(values: &[T]) -> Array<T> {
        Array {
            cells: Cells::new(values),
        }
    }

    /// A shared array of `len` zeros. Python's `Array('i', 10)`.
    ///
    /// ```
    /// let a = concurrent_futures::multiprocessing::Array::<f32>::zeroed(4);
    /// assert_eq!(a.to_vec(), vec![0.0; 4]);
    /// ```
    pub fn zeroed(len: usize) -> Array<T> {
        Array::new(&vec![T::zeroed(); len])
    }

    /// The number of elements.
    ///
    /// ```
    /// assert_eq!(concurrent_futures::multiprocessing::Array::<u8>::zeroed(5).len(), 5);
    /// ```
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// True if the array has no elements.
    ///
    /// ```
    /// assert!(concurrent_futures::multiprocessing::Array::<u8>::zeroed(0).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i` (taking the lock), or `None` past the end. Python's `a[i]`.
    ///
    /// ```
    /// let a = concurrent_futures::multiprocessing::Array::new(&[5u16, 6]);
    /// assert_eq!(a.get(1), Some(6));
    /// assert_eq!(a.get(2), None);
    /// ```
    pub fn get(&self, i: usize) -> Option<T> {
        self.cells.with(|c| c.get(i).copied())
    }

    /// Sets element `i` (taking the lock); returns false if `i` is past the end.
    /// Python's `a[i] = x`.
    ///
    /// ```
    /// let a = concurrent_futures::multiprocessing::Array::new(&[0i8; 2]);
    /// assert!(a.set(0, -1));
    /// assert!(!a.set(9, 1));
    /// assert_eq!(a.to_vec(), vec![-1, 0]);
    /// ```
    pub fn set(&self, i: usize, value: T) -> bool {
        self.cells.with(|c| match c.get_mut(i) {
            Some(slot) => {
                *slot = value;
                true
            }
            None => false,
        })
    }

    /// A copy of all elements (taking the lock). Python's `a[:]`.
    ///
    /// ```
    /// let a = concurrent_futures::multiprocessing::Array::new(&[1u32, 2]);
    /// assert_eq!(a.to_vec(), vec![1, 2]);
    /// ```
    pub fn to_vec(&self) -> Vec<T> {
        self.cells.with(|c| c.to_vec())
    }

    /// Takes the lock and gives access to the elements as a slice until the guard drops.
    ///
    /// ```
    /// let a = concurrent_futures::multiprocessing::Array::new(&[3u8, 1, 2]);
    /// a.get_lock().unwrap().sort();
    /// assert_eq!(a.to_vec(), vec![1, 2, 3]);
    /// ```
    pub fn get_lock(&self) -> LockResult<ArrayGuard<'_, T>> {
        self.cells
            .lock()
            .map(|guard| ArrayGuard { guard })
            .map_err(|e| OwnerDied {
                guard: ArrayGuard { guard: e.guard },
            })
    }
}

/// Holds an [`Array`]'s lock; dereferences to the elements.
#[must_use = "dropping the guard releases the lock at once"]
pub struct ArrayGuard<'a, T: Pod> {
    guard: TailLock<'a, T>,
}

impl<T: Pod> Deref for ArrayGuard<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.guard.slice()
    }
}

impl<T: Pod> DerefMut for ArrayGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        self.guard.slice_mut()
    }
}
