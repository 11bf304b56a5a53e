//! # hostile_recursion — unbounded recursion in `proxy_on_request_headers`
//!
//! Sandbox test guest (no SDK). Exports only `proxy_on_request_headers`
//! (besides the ABI marker and allocator), and it only misbehaves when the current
//! request carries the request header `x-hostile` (any value, even empty;
//! looked up with `proxy_get_header_map_value(0, ...)`). Without it the
//! callback returns `Continue` (0), so a clean request after a hostile one
//! is served normally. With it, it calls a non-tail-recursive function
//! whose stop condition is an opaque volatile read that never matches. Each
//! frame keeps only wasm locals (no shadow-stack memory), so the engine's
//! call stack is exhausted and the guest traps (stack overflow / call stack
//! exhausted). Configuration: none.

#[path = "../../shared/raw_guest.rs"]
mod raw_guest;
use raw_guest::request_is_hostile;
use std::ptr::{addr_of, read_volatile};

/// Never equal to a depth reached in practice; volatile so the optimizer
/// cannot prove the recursion infinite and turn it into a loop.
static mut STOP: u32 = u32::MAX;

#[inline(never)]
fn recurse(depth: u32) -> u32 {
    let stop = unsafe { read_volatile(addr_of!(STOP)) };
    if depth == stop {
        return depth;
    }
    // Non-tail: the result is combined with fresh volatile state afterwards.
    let below = recurse(depth.wrapping_add(1));
    below.wrapping_mul(31) ^ unsafe { read_volatile(addr_of!(STOP)) } ^ depth
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(_context_id: u32, _num_headers: usize, _end_of_stream: u32) -> u32 {
    if !request_is_hostile() {
        return 0;
    }
    recurse(0) & 1
}

