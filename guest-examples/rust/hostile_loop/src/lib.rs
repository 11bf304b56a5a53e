//! # hostile_loop — never returns from `proxy_on_request_headers`
//!
//! Sandbox test guest (no SDK). Exports only `proxy_on_request_headers`
//! (besides the ABI marker and allocator), and it only misbehaves
//! when the current request carries the request header `x-hostile` (any
//! value, even empty; looked up with `proxy_get_header_map_value(0, ...)`).
//! Then it spins forever incrementing a counter through volatile memory
//! accesses, so the optimizer cannot remove the loop. The host must
//! interrupt it (fuel / epoch deadline) and fail the request. Without
//! `x-hostile` it returns `Continue` (0), so a clean request after a hostile
//! one is served normally. Loading completes normally. Configuration: none.

#[path = "../../shared/raw_guest.rs"]
mod raw_guest;
use raw_guest::request_is_hostile;
use std::ptr::{addr_of_mut, read_volatile, write_volatile};

static mut SPIN: u64 = 0;

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(_context_id: u32, _num_headers: usize, _end_of_stream: u32) -> u32 {
    if !request_is_hostile() {
        return 0;
    }
    loop {
        unsafe {
            let p = addr_of_mut!(SPIN);
            write_volatile(p, read_volatile(p).wrapping_add(1));
        }
    }
}

