//! Everything specific to the operating system, behind one small interface (see
//! `linux/`). Nothing here imports from the rest of the crate. A port to another OS adds
//! a sibling module with the same items.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub(crate) use linux::*;
