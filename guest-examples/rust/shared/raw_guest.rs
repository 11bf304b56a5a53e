//! What the SDK-free test guests share: the ABI marker, an allocator, and the
//! `x-hostile` switch. Included with `#[path = "../../shared/raw_guest.rs"] mod raw_guest;`
//! (this directory is not a crate; the build hashes it into every guest's cache key).

#![allow(dead_code)]

use std::ptr::null_mut;

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

#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

/// Host-facing allocator: `Layout { size, align: 1 }`, which is what
/// [`take_host_bytes`] frees host-returned data with.
#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    if size == 0 {
        return std::ptr::NonNull::<u8>::dangling().as_ptr();
    }
    match std::alloc::Layout::from_size_align(size, 1) {
        Ok(layout) => unsafe { std::alloc::alloc(layout) },
        Err(_) => null_mut(),
    }
}

/// Takes ownership of bytes the host wrote through `proxy_on_memory_allocate(len)`.
pub fn take_host_bytes(data: *mut u8, len: usize) -> Vec<u8> {
    if data.is_null() || len == 0 {
        return Vec::new();
    }
    unsafe { Vec::from_raw_parts(data, len, len) }
}

/// True when the current HTTP request carries `x-hostile` (status 0 = found).
/// Any other status (NOT_FOUND, BAD_ARGUMENT, ...) means "not hostile".
pub fn request_is_hostile() -> bool {
    let mut data: *mut u8 = null_mut();
    let mut len: usize = 0;
    let rc = unsafe { proxy_get_header_map_value(HTTP_REQUEST_HEADERS, HOSTILE_HEADER.as_ptr(), HOSTILE_HEADER.len(), &mut data, &mut len) };
    if rc != 0 {
        return false;
    }
    drop(take_host_bytes(data, len));
    true
}
