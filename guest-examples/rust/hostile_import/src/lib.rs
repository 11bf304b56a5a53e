//! # hostile_import — imports a function the host does not provide
//!
//! Sandbox test guest (no SDK). Imports `env.proxy_does_not_exist: () ->
//! i32` and calls it from `proxy_on_request_headers`. The host must refuse
//! to load the module, naming the missing import `env.proxy_does_not_exist`.
//! Everything else is a benign skeleton. Configuration: none.

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_does_not_exist() -> u32;
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(_context_id: u32, _num_headers: usize, _end_of_stream: u32) -> u32 {
    unsafe { proxy_does_not_exist() & 1 }
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
