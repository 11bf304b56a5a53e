//! Guest memory handed to the host (`proxy_on_memory_allocate`) and taken
//! back when the host returns data through `return_*_data` out-pointers.
//!
//! Contract: every non-empty buffer the host writes into a `*mut *mut u8`
//! out-parameter must have been obtained from `proxy_on_memory_allocate(n)`
//! with `n` equal to the size it reports. The SDK then rebuilds a `Vec<u8>`
//! with `Vec::from_raw_parts(ptr, n, n)`, so the allocation is freed when the
//! `Vec` is dropped and nothing leaks.

use std::alloc::{alloc, Layout};

/// Exported allocator used by the host to place returned data in guest
/// memory. Returns 0 on failure (as the spec requires) instead of trapping.
/// A zero-size request returns a non-null dangling address (1) that must not
/// be dereferenced; the SDK never frees zero-size buffers.
#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    if size == 0 {
        return std::ptr::NonNull::<u8>::dangling().as_ptr();
    }
    match Layout::from_size_align(size, 1) {
        // Layout (size, 1) is exactly what Vec<u8> with capacity `size` uses,
        // so the buffer can later be reclaimed with Vec::from_raw_parts.
        Ok(layout) => unsafe { alloc(layout) },
        Err(_) => std::ptr::null_mut(),
    }
}

/// Takes ownership of a host-returned buffer.
///
/// # Safety
/// `ptr` must be null, or (when `len > 0`) a pointer returned by
/// [`proxy_on_memory_allocate`]`(len)` that has not been taken yet.
pub unsafe fn take_host_buffer(ptr: *mut u8, len: usize) -> Vec<u8> {
    if ptr.is_null() || len == 0 {
        return Vec::new();
    }
    Vec::from_raw_parts(ptr, len, len)
}
