//! # hostile_start_loop — never returns from `_start`
//!
//! Sandbox test guest (no SDK). Exports `_start` (and no `_initialize`), so
//! per the spec the host calls `_start` when the module is first loaded; it
//! spins forever through volatile memory accesses. The host must interrupt
//! it and refuse/fail loading the plugin. It exports no `proxy_on_*`
//! callback. Configuration: none.

#[path = "../../shared/raw_guest.rs"]
mod raw_guest;
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

