//! # hostile_trap — traps (`unreachable`) in a configurable callback
//!
//! Sandbox test guest (no SDK). The *selector* names the callback that
//! executes the wasm `unreachable` instruction; every other callback is
//! benign (`Continue` / `true`). Valid selectors:
//! `vm_start`, `configure`, `context_create`, `request_headers`,
//! `request_body`, `request_trailers`, `response_headers`, `response_body`,
//! `response_trailers`, `log`, `done`, `delete`.
//!
//! Where the selector comes from (surrounding ASCII whitespace and one pair
//! of surrounding double quotes are stripped, so `"log"` works too):
//! * `proxy_on_vm_start` reads the VM configuration (buffer 6) and, as a
//!   non-spec courtesy, tries the plugin configuration (buffer 7); it traps
//!   if either equals `vm_start`. A non-empty VM configuration also becomes
//!   the selector until a plugin configuration arrives.
//! * `proxy_on_configure` reads the plugin configuration (buffer 7); if it
//!   is non-empty it becomes the selector; traps if it is `configure`.
//!
//! `vm_start` and `configure` trap unconditionally when selected (they run
//! before any request). Every stream-context callback (`context_create`,
//! `request_*`, `response_*`, `log`, `done`, `delete`) traps only for an HTTP
//! context whose request carries the request header `x-hostile` (any value,
//! even empty), so a clean request after a hostile one is served normally:
//! * `proxy_on_context_create(id, parent != 0)` reads `x-hostile` once with
//!   `proxy_get_header_map_value(0, ...)` (the host has already set up the
//!   stream, so its request headers are readable there) and remembers the
//!   context id if present. It traps right there if the selector is
//!   `context_create` and the request is hostile. The root context
//!   (parent == 0) is never hostile.
//! * The other stream callbacks trap if the selector names them and the
//!   context id was remembered as hostile. `log`, `done` and `delete`
//!   therefore never trap for the root context.
//! * `proxy_on_delete` decides whether to trap, forgets the context id, then
//!   traps if it must.

#[path = "../../shared/raw_guest.rs"]
mod raw_guest;
use raw_guest::request_is_hostile;
use std::ptr::{addr_of_mut, null_mut};

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
}

const NONE: u32 = 0;
const VM_START: u32 = 1;
const CONFIGURE: u32 = 2;
const CONTEXT_CREATE: u32 = 3;
const REQUEST_HEADERS: u32 = 4;
const REQUEST_BODY: u32 = 5;
const REQUEST_TRAILERS: u32 = 6;
const RESPONSE_HEADERS: u32 = 7;
const RESPONSE_BODY: u32 = 8;
const RESPONSE_TRAILERS: u32 = 9;
const LOG: u32 = 10;
const DONE: u32 = 11;
const DELETE: u32 = 12;

static mut MODE: u32 = NONE;

/// Ids of live HTTP contexts whose request carries `x-hostile`. Filled in
/// `proxy_on_context_create`, emptied in `proxy_on_delete`.
static mut HOSTILE_CONTEXTS: Vec<u32> = Vec::new();

fn mode() -> u32 {
    unsafe { MODE }
}

fn set_mode(m: u32) {
    unsafe { MODE = m }
}

fn trap_if(m: u32) {
    if mode() == m {
        core::arch::wasm32::unreachable();
    }
}

fn hostile_contexts() -> &'static mut Vec<u32> {
    unsafe { &mut *addr_of_mut!(HOSTILE_CONTEXTS) }
}

fn is_hostile(context_id: u32) -> bool {
    hostile_contexts().contains(&context_id)
}

fn mark_hostile(context_id: u32) {
    let list = hostile_contexts();
    if !list.contains(&context_id) {
        list.push(context_id);
    }
}

fn forget(context_id: u32) {
    hostile_contexts().retain(|&id| id != context_id);
}

/// Stream-context callbacks: trap only if selected and the request is hostile.
fn trap_if_hostile(context_id: u32, m: u32) {
    if is_hostile(context_id) {
        trap_if(m);
    }
}

fn parse(raw: &[u8]) -> u32 {
    let mut s = raw;
    while let Some((first, rest)) = s.split_first() {
        if first.is_ascii_whitespace() {
            s = rest;
        } else {
            break;
        }
    }
    while let Some((last, rest)) = s.split_last() {
        if last.is_ascii_whitespace() {
            s = rest;
        } else {
            break;
        }
    }
    if s.len() >= 2 && s[0] == b'"' && s[s.len() - 1] == b'"' {
        s = &s[1..s.len() - 1];
    }
    match s {
        b"vm_start" => VM_START,
        b"configure" => CONFIGURE,
        b"context_create" => CONTEXT_CREATE,
        b"request_headers" => REQUEST_HEADERS,
        b"request_body" => REQUEST_BODY,
        b"request_trailers" => REQUEST_TRAILERS,
        b"response_headers" => RESPONSE_HEADERS,
        b"response_body" => RESPONSE_BODY,
        b"response_trailers" => RESPONSE_TRAILERS,
        b"log" => LOG,
        b"done" => DONE,
        b"delete" => DELETE,
        _ => NONE,
    }
}

/// Reads a whole buffer; `None` on any non-OK status.
fn read_buffer(buffer_type: u32, size: usize) -> Option<Vec<u8>> {
    let mut data: *mut u8 = null_mut();
    let mut len: usize = 0;
    let rc = unsafe { proxy_get_buffer_bytes(buffer_type, 0, size, &mut data, &mut len) };
    if rc != 0 {
        return None;
    }
    if data.is_null() || len == 0 {
        return Some(Vec::new());
    }
    // The host allocated `len` bytes via proxy_on_memory_allocate(len).
    Some(unsafe { Vec::from_raw_parts(data, len, len) })
}

#[no_mangle]
pub extern "C" fn proxy_on_context_create(context_id: u32, parent_context_id: u32) {
    if parent_context_id != 0 && request_is_hostile() {
        trap_if(CONTEXT_CREATE);
        mark_hostile(context_id);
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_vm_start(_context_id: u32, size: usize) -> u32 {
    if let Some(vm) = read_buffer(6, size) {
        let m = parse(&vm);
        if m != NONE {
            set_mode(m);
        }
    }
    trap_if(VM_START);
    // Non-spec: some hosts already expose the plugin configuration here.
    if let Some(pc) = read_buffer(7, usize::MAX >> 1) {
        if parse(&pc) == VM_START {
            core::arch::wasm32::unreachable();
        }
    }
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_configure(_context_id: u32, size: usize) -> u32 {
    if let Some(pc) = read_buffer(7, size) {
        if !pc.is_empty() {
            set_mode(parse(&pc));
        }
    }
    trap_if(CONFIGURE);
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(context_id: u32, _num_headers: usize, _end_of_stream: u32) -> u32 {
    trap_if_hostile(context_id, REQUEST_HEADERS);
    0
}

#[no_mangle]
pub extern "C" fn proxy_on_request_body(context_id: u32, _body_size: usize, _end_of_stream: u32) -> u32 {
    trap_if_hostile(context_id, REQUEST_BODY);
    0
}

#[no_mangle]
pub extern "C" fn proxy_on_request_trailers(context_id: u32, _num_trailers: usize) -> u32 {
    trap_if_hostile(context_id, REQUEST_TRAILERS);
    0
}

#[no_mangle]
pub extern "C" fn proxy_on_response_headers(context_id: u32, _num_headers: usize, _end_of_stream: u32) -> u32 {
    trap_if_hostile(context_id, RESPONSE_HEADERS);
    0
}

#[no_mangle]
pub extern "C" fn proxy_on_response_body(context_id: u32, _body_size: usize, _end_of_stream: u32) -> u32 {
    trap_if_hostile(context_id, RESPONSE_BODY);
    0
}

#[no_mangle]
pub extern "C" fn proxy_on_response_trailers(context_id: u32, _num_trailers: usize) -> u32 {
    trap_if_hostile(context_id, RESPONSE_TRAILERS);
    0
}

#[no_mangle]
pub extern "C" fn proxy_on_done(context_id: u32) -> u32 {
    trap_if_hostile(context_id, DONE);
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_log(context_id: u32) {
    trap_if_hostile(context_id, LOG);
}

#[no_mangle]
pub extern "C" fn proxy_on_delete(context_id: u32) {
    let hostile = is_hostile(context_id);
    forget(context_id);
    if hostile {
        trap_if(DELETE);
    }
}
