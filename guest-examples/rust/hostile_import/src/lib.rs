//! # hostile_import — imports a function the host does not provide
//!
//! Sandbox test guest (no SDK). Imports `env.proxy_does_not_exist: () ->
//! i32` and calls it from `proxy_on_request_headers`. The host must refuse
//! to load the module, naming the missing import `env.proxy_does_not_exist`.
//! It exports nothing else but the ABI marker and allocator. Configuration: none.

#[path = "../../shared/raw_guest.rs"]
mod raw_guest;
#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_does_not_exist() -> u32;
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(_context_id: u32, _num_headers: usize, _end_of_stream: u32) -> u32 {
    unsafe { proxy_does_not_exist() & 1 }
}

