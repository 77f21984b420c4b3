//! How the process's allocator treats freed memory.

/// Keeps freed memory in the process for reuse instead of handing it back to the kernel.
///
/// A relevance pass, a scoring job or a long forward frees and allocates the same large
/// activations block after block. glibc's defaults give freed blocks over its mmap threshold back
/// to the kernel at once and trim the heap's top, so each block's fresh tensors fault in and zero
/// new pages: page faults were 13% of a 512-token relevance pass's CPU time on SmolLM2. With blocks
/// up to 32 MiB served from the heap and the heap never trimmed, the peak memory is the same; the
/// process just does not shrink after it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn keep_freed_memory() {
    // SAFETY: mallopt only changes glibc's malloc parameters; it is called first thing in
    // `main`, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

/// Other allocators keep their defaults.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn keep_freed_memory() {}
