//! # hostile_memory — exhausts linear memory in `proxy_on_request_headers`
//!
//! Sandbox test guest (no SDK). Exports only `proxy_on_request_headers`
//! (besides the ABI marker and allocator), and it only misbehaves when the current
//! request carries the request header `x-hostile` (any value, even empty;
//! looked up with `proxy_get_header_map_value(0, ...)`). Without it the
//! callback returns `Continue` (0), so a clean request after a hostile one
//! is served normally. With it, it allocates 1 MiB chunks forever, writes
//! one byte in every 4 KiB page of each chunk (volatile, so pages are really
//! touched; cheap enough that fuel/time limits are not hit first) and keeps
//! them all alive in a global list. When `memory.grow` is refused
//! (host memory limit, or the 4 GiB wasm32 ceiling) the allocation fails,
//! `handle_alloc_error` aborts and the guest traps with `unreachable` — it
//! never returns normally. Configuration: none.

#[path = "../../shared/raw_guest.rs"]
mod raw_guest;
use raw_guest::request_is_hostile;
use std::ptr::{addr_of_mut, write_volatile};

const CHUNK: usize = 1 << 20;
const PAGE: usize = 4096;

static mut HOARD: Vec<Vec<u8>> = Vec::new();

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(_context_id: u32, _num_headers: usize, _end_of_stream: u32) -> u32 {
    if !request_is_hostile() {
        return 0;
    }
    loop {
        // Vec::with_capacity aborts (traps) on allocation failure.
        let mut chunk: Vec<u8> = Vec::with_capacity(CHUNK);
        unsafe {
            let p = chunk.as_mut_ptr();
            let mut i = 0;
            while i < CHUNK {
                write_volatile(p.add(i), 0xA5);
                i += PAGE;
            }
            chunk.set_len(CHUNK);
            (*addr_of_mut!(HOARD)).push(chunk);
        }
    }
}

