//! # hostile_memory — exhausts linear memory in `proxy_on_request_headers`
//!
//! Sandbox test guest (no SDK). Every callback is benign except
//! `proxy_on_request_headers`, and that one only misbehaves when the current
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

use std::ptr::{addr_of_mut, null_mut, write_volatile};

const CHUNK: usize = 1 << 20;
const PAGE: usize = 4096;

static mut HOARD: Vec<Vec<u8>> = Vec::new();

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
}

/// `HTTP_REQUEST_HEADERS` map type.
const HTTP_REQUEST_HEADERS: u32 = 0;
/// Request header that arms the hostile behaviour (any value, even empty).
const HOSTILE_HEADER: &[u8] = b"x-hostile";

/// True when the current HTTP request carries `x-hostile` (status 0 = found).
/// Any other status (NOT_FOUND, BAD_ARGUMENT, ...) means "not hostile".
fn request_is_hostile() -> bool {
    let mut data: *mut u8 = null_mut();
    let mut len: usize = 0;
    let rc = unsafe {
        proxy_get_header_map_value(
            HTTP_REQUEST_HEADERS,
            HOSTILE_HEADER.as_ptr(),
            HOSTILE_HEADER.len(),
            &mut data,
            &mut len,
        )
    };
    if rc != 0 {
        return false;
    }
    if !data.is_null() && len != 0 {
        // The host allocated `len` bytes through `proxy_on_memory_allocate(len)`,
        // i.e. `alloc(Layout { size: len, align: 1 })`; a `Vec<u8>` with
        // capacity `len` frees exactly that layout.
        drop(unsafe { Vec::from_raw_parts(data, len, len) });
    }
    true
}

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

// ---------------------------------------------------------------------------
// Raw proxy-wasm skeleton (no SDK): benign defaults for every other callback.
// ---------------------------------------------------------------------------

#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

/// Host-facing allocator: `Layout { size, align: 1 }`, which is what
/// `request_is_hostile` frees the returned header value with.
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
