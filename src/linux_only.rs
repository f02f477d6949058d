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
            note = "this build is for another platform; the rest of the crate works on every one"
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
    use super::Marker;

    macro_rules! types {
        ($(
            $name:ident $(<$($l:lifetime,)* $($t:ident),*>)?: $trait_:ident => $message:literal;
        )*) => {$(
            linux_only! { $trait_ => $message; }
            /// Available on Linux only.
            pub type $name$(<$($l,)* $($t),*>)? =
                <Marker<($($(&$l (),)* $($t,)*)?)> as $trait_>::Item;
        )*};
    }

    types! {
        Process: ProcessOnLinux => "`multiprocessing::Process` is available on Linux only";
        CurrentProcess: CurrentProcessOnLinux
            => "`multiprocessing::CurrentProcess` is available on Linux only";
        Pool: PoolOnLinux => "`multiprocessing::Pool` is available on Linux only";
        AsyncResult<R>: AsyncResultOnLinux
            => "`multiprocessing::AsyncResult` is available on Linux only";
        Queue<T>: QueueOnLinux => "`multiprocessing::Queue` is available on Linux only";
        JoinableQueue<T>: JoinableQueueOnLinux
            => "`multiprocessing::JoinableQueue` is available on Linux only";
        SimpleQueue<T>: SimpleQueueOnLinux
            => "`multiprocessing::SimpleQueue` is available on Linux only";
        Pipe: PipeOnLinux => "`multiprocessing::Pipe` is available on Linux only";
        Connection<T>: ConnectionOnLinux
            => "`multiprocessing::Connection` is available on Linux only";
        Lock: LockOnLinux => "`multiprocessing::Lock` is available on Linux only";
        LockGuard<'a,>: LockGuardOnLinux
            => "`multiprocessing::LockGuard` is available on Linux only";
        RLock: RLockOnLinux => "`multiprocessing::RLock` is available on Linux only";
        RLockGuard<'a,>: RLockGuardOnLinux
            => "`multiprocessing::RLockGuard` is available on Linux only";
        Semaphore: SemaphoreOnLinux => "`multiprocessing::Semaphore` is available on Linux only";
        SemaphoreGuard<'a,>: SemaphoreGuardOnLinux
            => "`multiprocessing::SemaphoreGuard` is available on Linux only";
        BoundedSemaphore: BoundedSemaphoreOnLinux
            => "`multiprocessing::BoundedSemaphore` is available on Linux only";
        Event: EventOnLinux => "`multiprocessing::Event` is available on Linux only";
        Condition: ConditionOnLinux => "`multiprocessing::Condition` is available on Linux only";
        ConditionGuard<'a,>: ConditionGuardOnLinux
            => "`multiprocessing::ConditionGuard` is available on Linux only";
        Barrier: BarrierOnLinux => "`multiprocessing::Barrier` is available on Linux only";
        Value<T>: ValueOnLinux => "`multiprocessing::Value` is available on Linux only";
        ValueGuard<'a, T>: ValueGuardOnLinux
            => "`multiprocessing::ValueGuard` is available on Linux only";
        Array<T>: ArrayOnLinux => "`multiprocessing::Array` is available on Linux only";
        ArrayGuard<'a, T>: ArrayGuardOnLinux
            => "`multiprocessing::ArrayGuard` is available on Linux only";
        OwnerDied<G>: OwnerDiedOnLinux => "`multiprocessing::OwnerDied` is available on Linux only";
        TryAcquireError<G>: TryAcquireErrorOnLinux
            => "`multiprocessing::TryAcquireError` is available on Linux only";
        LockResult<G>: LockResultOnLinux
            => "`multiprocessing::LockResult` is available on Linux only";
        ReleasedTooManyTimes: ReleasedTooManyTimesOnLinux
            => "`multiprocessing::ReleasedTooManyTimes` is available on Linux only";
        BrokenBarrierError: BrokenBarrierErrorOnLinux
            => "`multiprocessing::BrokenBarrierError` is available on Linux only";
        TaskDoneTooManyTimes: TaskDoneTooManyTimesOnLinux
            => "`multiprocessing::TaskDoneTooManyTimes` is available on Linux only";
        PutError<T>: PutErrorOnLinux => "`multiprocessing::PutError` is available on Linux only";
        GetError: GetErrorOnLinux => "`multiprocessing::GetError` is available on Linux only";
        ConnectionError: ConnectionErrorOnLinux
            => "`multiprocessing::ConnectionError` is available on Linux only";
        OsError: OsErrorOnLinux => "`multiprocessing::OsError` is available on Linux only";
        ProcessError: ProcessErrorOnLinux
            => "`multiprocessing::ProcessError` is available on Linux only";
        PoolError: PoolErrorOnLinux => "`multiprocessing::PoolError` is available on Linux only";
    }

    macro_rules! functions {
        ($($name:ident: $trait_:ident => $message:literal;)*) => {$(
            linux_only! { $trait_ => $message; }
            /// Available on Linux only.
            pub fn $name()
            where
                for<'a> Marker<&'a ()>: $trait_,
            {
                <Marker<&'static ()> as $trait_>::unavailable()
            }
        )*};
    }

    functions! {
        active_children: ActiveChildrenFnOnLinux
            => "`multiprocessing::active_children` is available on Linux only";
        cpu_count: CpuCountFnOnLinux => "`multiprocessing::cpu_count` is available on Linux only";
        current_process: CurrentProcessFnOnLinux
            => "`multiprocessing::current_process` is available on Linux only";
    }
}
