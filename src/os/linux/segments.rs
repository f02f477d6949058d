//! The executable segments of the main program.

/// An executable segment of the main program: its address range in memory, and how many of
/// its first bytes come from the file (the rest, if any, is zero-filled).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Segment {
    pub(crate) start: usize,
    pub(crate) end: usize,
    #[cfg_attr(not(feature = "mpi"), allow(dead_code))]
    pub(crate) file_len: usize,
}

#[cfg_attr(not(feature = "mpi"), allow(dead_code))]
impl Segment {
    /// The bytes of the segment that come from the file.
    pub(crate) fn code(&self) -> &'static [u8] {
        // SAFETY: `dl_iterate_phdr` reported this range as a loaded, executable `PT_LOAD`
        // segment of the main program, and its first `file_len` bytes are mapped from the
        // file (readable: x86-64 and AArch64 Linux map code readable and executable). The
        // main program is never unmapped while the process runs, and code is not written
        // to, so the bytes are valid and unchanging for the life of the process.
        unsafe { std::slice::from_raw_parts(self.start as *const u8, self.file_len) }
    }
}

/// The executable segments of the main program (not of shared libraries).
pub(crate) fn executable_segments() -> Vec<Segment> {
    let mut ranges: Vec<Segment> = Vec::new();
    unsafe extern "C" fn collect(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: (1) `dl_iterate_phdr` passes a valid `info` for the duration of the
        // call, whose `dlpi_phdr` points to `dlpi_phnum` program headers; (2) `data` is
        // the `&mut Vec` passed below, alive and not otherwise borrowed during the call.
        unsafe {
            let info = &*info;
            let ranges = &mut *(data as *mut Vec<Segment>);
            let headers = std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize);
            for h in headers {
                if h.p_type == libc::PT_LOAD && h.p_flags & libc::PF_X != 0 {
                    let start = info.dlpi_addr as usize + h.p_vaddr as usize;
                    ranges.push(Segment {
                        start,
                        end: start + h.p_memsz as usize,
                        file_len: h.p_filesz.min(h.p_memsz) as usize,
                    });
                }
            }
        }
        1 // the first object is the main program: stop there
    }
    // SAFETY: `collect` matches the callback type and only touches `ranges` through
    // `data`, which outlives the call.
    unsafe {
        libc::dl_iterate_phdr(Some(collect), &mut ranges as *mut _ as *mut libc::c_void);
    }
    ranges
}
