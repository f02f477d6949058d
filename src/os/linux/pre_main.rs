//! [`before_main`]: a hook the loader runs before `main`.

/// Registers `$hook` to run before `main` in every process of the program (the loader
/// calls the `.init_array` entries once, single-threaded). The hook must not unwind.
macro_rules! before_main {
    ($name:ident = $hook:path) => {
        #[used]
        #[unsafe(link_section = ".init_array")]
        // SAFETY: an `.init_array` entry must be an `extern "C" fn()` that the loader may
        // call once, single-threaded, before `main`; the hook has that type and, by the
        // macro's contract, does not unwind.
        static $name: extern "C" fn() = $hook;
    };
}
pub(crate) use before_main;
