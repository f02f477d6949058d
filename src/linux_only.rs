//! On platforms other than Linux: the names of the Linux-only items, so that using one is a
//! compile error that says so ("`ProcessPoolExecutor` is available on Linux only") rather
//! than rustc's note on an item configured out.
//!
//! Each name is a type alias through a trait that no type implements, or a function bounded
//! by one: the alias or the call is what fails to compile, with the trait's
//! `#[diagnostic::on_unimplemented]` message; naming an item in a `use` alone compiles. The
//! aliases and bounds mention a type parameter or a higher-ranked lifetime, so that they are
//! checked where they are used, not here.

use std::marker::PhantomData;

/// The type the aliases and bounds ask the traits of; no trait here is implemented for it.
#[derive(Debug)]
pub struct Marker<T: ?Sized>(PhantomData<T>);

macro_rules! linux_only {
    ($($trait_:ident => $message:literal;)*) => {$(
        #[doc = $message]
        #[diagnostic::on_unimplemented(
            message = $message,
            label = "available on Linux only",
            note = "this build is for another platform; `ThreadPoolExecutor` and the rest of the crate work on every platform"
        )]
        pub trait $trait_ {
            /// What the alias would name: never defined.
            type Item: ?Sized;
            /// What the function would do: never defined.
            fn unavailable() -> !;
        }
    )*};
}

linux_only! {
    ProcessPoolExecutorOnLinux => "`ProcessPoolExecutor` is available on Linux only";
    ProcessPoolBuilderOnLinux => "`ProcessPoolBuilder` is available on Linux only";
    InitOnLinux => "`init` is available on Linux only";
    MpiPoolExecutorOnLinux => "`MpiPoolExecutor` is available on Linux only";
    MpiPoolBuilderOnLinux => "`MpiPoolBuilder` is available on Linux only";
    MpiRankOnLinux => "`MpiRank` is available on Linux only";
    MultiprocessingOnLinux => "`multiprocessing` is available on Linux only";
}

/// Available on Linux only.
pub type ProcessPoolExecutor = <Marker<()> as ProcessPoolExecutorOnLinux>::Item;
/// Available on Linux only.
pub type ProcessPoolBuilder = <Marker<()> as ProcessPoolBuilderOnLinux>::Item;
/// Available on Linux only.
pub type MpiPoolExecutor = <Marker<()> as MpiPoolExecutorOnLinux>::Item;
/// Available on Linux only.
pub type MpiPoolBuilder = <Marker<()> as MpiPoolBuilderOnLinux>::Item;
/// Available on Linux only.
pub type MpiRank = <Marker<()> as MpiRankOnLinux>::Item;

/// Available on Linux only.
pub fn init()
where
    for<'a> Marker<&'a ()>: InitOnLinux,
{
    <Marker<&'static ()> as InitOnLinux>::unavailable()
}

/// Python's `multiprocessing`: available on Linux only.
pub mod multiprocessing {
    use super::{Marker, MultiprocessingOnLinux as OnLinux};

    macro_rules! types {
        ($($name:ident $(<$($l:lifetime,)* $($t:ident),*>)?;)*) => {$(
            /// Available on Linux only.
            pub type $name$(<$($l,)* $($t),*>)? =
                <Marker<($($(&$l (),)* $($t,)*)?)> as OnLinux>::Item;
        )*};
    }

    types! {
        Process;
        CurrentProcess;
        Pool;
        AsyncResult<R>;
        Queue<T>;
        JoinableQueue<T>;
        SimpleQueue<T>;
        Pipe;
        Connection<T>;
        Lock;
        LockGuard<'a,>;
        RLock;
        RLockGuard<'a,>;
        Semaphore;
        SemaphoreGuard<'a,>;
        BoundedSemaphore;
        Event;
        Condition;
        ConditionGuard<'a,>;
        Barrier;
        Value<T>;
        ValueGuard<'a, T>;
        Array<T>;
        ArrayGuard<'a, T>;
        OwnerDied<G>;
        TryAcquireError<G>;
        LockResult<G>;
        ReleasedTooManyTimes;
        BrokenBarrierError;
        TaskDoneTooManyTimes;
        PutError<T>;
        GetError;
        ConnectionError;
        ProcessError;
        PoolError;
    }

    macro_rules! functions {
        ($($name:ident;)*) => {$(
            /// Available on Linux only.
            pub fn $name()
            where
                for<'a> Marker<&'a ()>: OnLinux,
            {
                <Marker<&'static ()> as OnLinux>::unavailable()
            }
        )*};
    }

    functions! {
        active_children;
        cpu_count;
        current_process;
    }
}
