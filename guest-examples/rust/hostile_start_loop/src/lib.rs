//! # hostile_start_loop — never returns from `_start`
//!
//! Sandbox test guest (no SDK). Exports `_start` (and no `_initialize`), so
//! per the spec the host calls `_start` when the module is first loaded; it
//! spins forever through volatile memory accesses. The host must interrupt
//! it and refuse/fail loading the plugin. All `proxy_on_*` callbacks would
//! be benign if ever reached. Configuration: none.

use std::ptr::{addr_of_mut, read_volatile, write_volatile};

static mut SPIN: u64 = 0;

#[no_mangle]
pub extern "C" fn _start() {
    loop {
        unsafe {
            let p = addr_of_mut!(SPIN);
            write_volatile(p, read_volatile(p).wrapping_add(1));
        }
    }
}

// ---------------------------------------------------------------------------
// Raw proxy-wasm skeleton (no SDK): benign defaults for every callback.
// ---------------------------------------------------------------------------

#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

/// Host-facing allocator (leaks by design: this guest never reads host data).
#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    if size == 0 {
        return std::ptr::NonNull::<u8>::dangling().as_ptr();
    }
    match std::alloc::Layout::from_size_align(size, 1) {
        Ok(layout) => unsafe { std::alloc::alloc(layout) },
        Err(_) => std::ptr::null_mut(),
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_context_create(_context_id: u32, _parent_context_id: u32) {}

#[no_mangle]
pub extern "C" fn proxy_on_vm_start(_context_id: u32, _size: usize) -> u32 {
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_configure(_context_id: u32, _size: usize) -> u32 {
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(_context_id: u32, _num_headers: usize, _end_of_stream: u32) -> u32 {
    0
}

#[no_mangle]
pub extern "C" fn proxy_on_request_body(_context_id: u32, _body_size: usize, _end_of_stream: u32) -> u32 {
    0
}

#[no_mangle]
pub extern "C" fn proxy_on_request_trailers(_context_id: u32, _num_trailers: usize) -> u32 {
    0
}

#[no_mangle]
pub extern "C" fn proxy_on_response_headers(_context_id: u32, _num_headers: usize, _end_of_stream: u32) -> u32 {
    0
}

#[no_mangle]
pub extern "C" fn proxy_on_response_body(_context_id: u32, _body_size: usize, _end_of_stream: u32) -> u32 {
    0
}

#[no_mangle]
pub extern "C" fn proxy_on_response_trailers(_context_id: u32, _num_trailers: usize) -> u32 {
    0
}

#[no_mangle]
pub extern "C" fn proxy_on_done(_context_id: u32) -> u32 {
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_log(_context_id: u32) {}

#[no_mangle]
pub extern "C" fn proxy_on_delete(_context_id: u32) {}
