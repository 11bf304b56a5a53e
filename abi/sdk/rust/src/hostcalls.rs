//! Safe wrappers, one per proxy-wasm host call, plus map (de)serialization.
//!
//! Conventions:
//! * Every wrapper returns `Result<_, Status>`; `Err` carries the host's
//!   non-OK status verbatim (see [`Status::code`]).
//! * Data the host returns through `return_*_data` out-pointers is taken
//!   over as a `Vec<u8>` (see [`crate::memory`]) and freed on drop.
//! * `*_bytes` variants take/return raw bytes; the plain variants use
//!   `&str`/`String` (lossy UTF-8 on the way in).

use crate::memory::take_host_buffer;
use crate::sys;
use crate::types::*;
use std::ptr::{null, null_mut};

// ---------------------------------------------------------------------------
// Map serialization (spec section "Serialization")
// ---------------------------------------------------------------------------

/// Serializes header pairs: u32 count, then (u32 key_len, u32 value_len) per
/// pair, then `key\0value\0` per pair; little-endian. An empty map
/// serializes to zero bytes.
pub fn serialize_map<K: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(K, V)]) -> Vec<u8> {
    if pairs.is_empty() {
        return Vec::new();
    }
    let mut size = 4 + pairs.len() * 8;
    for (k, v) in pairs {
        size += k.as_ref().len() + v.as_ref().len() + 2;
    }
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&(k.as_ref().len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.as_ref().len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_ref());
        out.push(0);
        out.extend_from_slice(v.as_ref());
        out.push(0);
    }
    out
}

fn read_u32_le(bytes: &[u8], at: usize) -> Option<u32> {
    let end = at.checked_add(4)?;
    let b = bytes.get(at..end)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Parses a serialized map. Empty input (or a single `0x00`) is an empty
/// map. Malformed input never panics: parsing stops at the first pair that
/// does not fit and the pairs decoded so far are returned.
pub fn deserialize_map_bytes(bytes: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    let count = match read_u32_le(bytes, 0) {
        Some(c) => c as usize,
        None => return out,
    };
    let data_start = match count.checked_mul(8).and_then(|x| x.checked_add(4)) {
        Some(s) if s <= bytes.len() => s,
        _ => return out,
    };
    let mut pos = data_start;
    for i in 0..count {
        let klen = read_u32_le(bytes, 4 + i * 8).unwrap_or(0) as usize;
        let vlen = read_u32_le(bytes, 8 + i * 8).unwrap_or(0) as usize;
        let kend = match pos.checked_add(klen) {
            Some(e) if e <= bytes.len() => e,
            _ => break,
        };
        let key = bytes[pos..kend].to_vec();
        let vstart = kend + 1; // skip NUL
        let vend = match vstart.checked_add(vlen) {
            Some(e) if e <= bytes.len() => e,
            _ => break,
        };
        let value = bytes[vstart..vend].to_vec();
        out.push((key, value));
        pos = vend + 1; // skip NUL
    }
    out
}

/// Like [`deserialize_map_bytes`] with lossy UTF-8 conversion.
pub fn deserialize_map(bytes: &[u8]) -> Vec<(String, String)> {
    deserialize_map_bytes(bytes)
        .into_iter()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(&k).into_owned(),
                String::from_utf8_lossy(&v).into_owned(),
            )
        })
        .collect()
}

/// Serializes a property path (Envoy style): segments joined by `\0`,
/// no trailing separator. `["request", "path"]` -> `b"request\0path"`.
pub fn serialize_property_path(path: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, seg) in path.iter().enumerate() {
        if i > 0 {
            out.push(0);
        }
        out.extend_from_slice(seg.as_bytes());
    }
    out
}

// ---------------------------------------------------------------------------
// Logging, clocks, timers
// ---------------------------------------------------------------------------

pub fn log(level: LogLevel, message: &str) -> Result<(), Status> {
    unsafe { Status::check(sys::proxy_log(level as u32, message.as_ptr(), message.len())) }
}

/// Host log level as a typed value. A level outside 0..=5 is reported as
/// `Err(Status::Other(raw_level))`; use [`get_log_level_raw`] to get it as is.
pub fn get_log_level() -> Result<LogLevel, Status> {
    let raw = get_log_level_raw()?;
    LogLevel::from_u32(raw).ok_or(Status::Other(raw))
}

pub fn get_log_level_raw() -> Result<u32, Status> {
    let mut level: u32 = 0;
    unsafe { Status::check(sys::proxy_get_log_level(&mut level))? };
    Ok(level)
}

pub fn get_current_time_nanoseconds() -> Result<u64, Status> {
    let mut t: u64 = 0;
    unsafe { Status::check(sys::proxy_get_current_time_nanoseconds(&mut t))? };
    Ok(t)
}

pub fn set_tick_period_milliseconds(period: u32) -> Result<(), Status> {
    unsafe { Status::check(sys::proxy_set_tick_period_milliseconds(period)) }
}

// ---------------------------------------------------------------------------
// Context lifecycle
// ---------------------------------------------------------------------------

pub fn set_effective_context(context_id: u32) -> Result<(), Status> {
    unsafe { Status::check(sys::proxy_set_effective_context(context_id)) }
}

pub fn done() -> Result<(), Status> {
    unsafe { Status::check(sys::proxy_done()) }
}

// ---------------------------------------------------------------------------
// Buffers
// ---------------------------------------------------------------------------

/// Reads up to `max_size` bytes at `start` from `buffer`.
pub fn get_buffer_bytes(buffer: BufferType, start: usize, max_size: usize) -> Result<Vec<u8>, Status> {
    get_buffer_bytes_raw(buffer as u32, start, max_size)
}

/// [`get_buffer_bytes`] with an untyped buffer id.
pub fn get_buffer_bytes_raw(buffer: u32, start: usize, max_size: usize) -> Result<Vec<u8>, Status> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    unsafe {
        Status::check(sys::proxy_get_buffer_bytes(buffer, start, max_size, &mut data, &mut size))?;
        Ok(take_host_buffer(data, size))
    }
}

/// Replaces `size` bytes at `start` with `value`. `(0, 0)` prepends,
/// `start >= len` appends, `(0, len)` replaces everything.
pub fn set_buffer_bytes(buffer: BufferType, start: usize, size: usize, value: &[u8]) -> Result<(), Status> {
    unsafe {
        Status::check(sys::proxy_set_buffer_bytes(
            buffer as u32,
            start,
            size,
            value.as_ptr(),
            value.len(),
        ))
    }
}

/// Returns the buffer's size (the second, "ignored" value is dropped).
pub fn get_buffer_status(buffer: BufferType) -> Result<usize, Status> {
    let mut size: usize = 0;
    let mut ignored: u32 = 0;
    unsafe { Status::check(sys::proxy_get_buffer_status(buffer as u32, &mut size, &mut ignored))? };
    Ok(size)
}

// ---------------------------------------------------------------------------
// HTTP fields (header maps)
// ---------------------------------------------------------------------------

pub fn get_map_bytes(map: MapType) -> Result<Vec<(Vec<u8>, Vec<u8>)>, Status> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    unsafe {
        Status::check(sys::proxy_get_header_map_pairs(map as u32, &mut data, &mut size))?;
        let buf = take_host_buffer(data, size);
        Ok(deserialize_map_bytes(&buf))
    }
}

pub fn get_map(map: MapType) -> Result<Vec<(String, String)>, Status> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    unsafe {
        Status::check(sys::proxy_get_header_map_pairs(map as u32, &mut data, &mut size))?;
        let buf = take_host_buffer(data, size);
        Ok(deserialize_map(&buf))
    }
}

pub fn set_map<K: AsRef<[u8]>, V: AsRef<[u8]>>(map: MapType, pairs: &[(K, V)]) -> Result<(), Status> {
    let bytes = serialize_map(pairs);
    unsafe { Status::check(sys::proxy_set_header_map_pairs(map as u32, bytes.as_ptr(), bytes.len())) }
}

/// Raw value lookup: `Err(Status::NotFound)` when the key is absent.
pub fn get_map_value_bytes(map: MapType, key: &[u8]) -> Result<Vec<u8>, Status> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    unsafe {
        Status::check(sys::proxy_get_header_map_value(
            map as u32,
            key.as_ptr(),
            key.len(),
            &mut data,
            &mut size,
        ))?;
        Ok(take_host_buffer(data, size))
    }
}

/// Value lookup: `Ok(None)` when the key is absent (`NOT_FOUND`).
pub fn get_map_value(map: MapType, key: &str) -> Result<Option<String>, Status> {
    match get_map_value_bytes(map, key.as_bytes()) {
        Ok(v) => Ok(Some(String::from_utf8_lossy(&v).into_owned())),
        Err(Status::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

pub fn add_map_value_bytes(map: MapType, key: &[u8], value: &[u8]) -> Result<(), Status> {
    unsafe {
        Status::check(sys::proxy_add_header_map_value(
            map as u32,
            key.as_ptr(),
            key.len(),
            value.as_ptr(),
            value.len(),
        ))
    }
}

pub fn add_map_value(map: MapType, key: &str, value: &str) -> Result<(), Status> {
    add_map_value_bytes(map, key.as_bytes(), value.as_bytes())
}

pub fn replace_map_value_bytes(map: MapType, key: &[u8], value: &[u8]) -> Result<(), Status> {
    unsafe {
        Status::check(sys::proxy_replace_header_map_value(
            map as u32,
            key.as_ptr(),
            key.len(),
            value.as_ptr(),
            value.len(),
        ))
    }
}

pub fn replace_map_value(map: MapType, key: &str, value: &str) -> Result<(), Status> {
    replace_map_value_bytes(map, key.as_bytes(), value.as_bytes())
}

pub fn remove_map_value(map: MapType, key: &str) -> Result<(), Status> {
    unsafe { Status::check(sys::proxy_remove_header_map_value(map as u32, key.as_ptr(), key.len())) }
}

/// Size in bytes of the serialized map.
pub fn get_map_size(map: MapType) -> Result<usize, Status> {
    let mut size: usize = 0;
    unsafe { Status::check(sys::proxy_get_header_map_size(map as u32, &mut size))? };
    Ok(size)
}

// ---------------------------------------------------------------------------
// Streams and local responses
// ---------------------------------------------------------------------------

pub fn continue_stream(stream: StreamType) -> Result<(), Status> {
    unsafe { Status::check(sys::proxy_continue_stream(stream as u32)) }
}

pub fn close_stream(stream: StreamType) -> Result<(), Status> {
    unsafe { Status::check(sys::proxy_close_stream(stream as u32)) }
}

/// `proxy_get_status`: (status code, message) of an HTTP/gRPC call.
pub fn get_status() -> Result<(u32, Vec<u8>), Status> {
    let mut code: u32 = 0;
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    unsafe {
        Status::check(sys::proxy_get_status(&mut code, &mut data, &mut size))?;
        Ok((code, take_host_buffer(data, size)))
    }
}

/// Value for `grpc_status` meaning "not a gRPC response" (-1 as u32).
pub const NO_GRPC_STATUS: u32 = 0xFFFF_FFFF;

/// `proxy_send_local_response` with every parameter exposed.
pub fn send_local_response<K: AsRef<[u8]>, V: AsRef<[u8]>>(
    status_code: u32,
    details: &str,
    body: &[u8],
    headers: &[(K, V)],
    grpc_status: u32,
) -> Result<(), Status> {
    let hdrs = serialize_map(headers);
    unsafe {
        Status::check(sys::proxy_send_local_response(
            status_code,
            details.as_ptr(),
            details.len(),
            body.as_ptr(),
            body.len(),
            hdrs.as_ptr(),
            hdrs.len(),
            grpc_status,
        ))
    }
}

/// Convenience: local response without details and without gRPC status.
pub fn send_http_response(status_code: u32, headers: &[(&str, &str)], body: &[u8]) -> Result<(), Status> {
    send_local_response(status_code, "", body, headers, NO_GRPC_STATUS)
}

/// Dispatches an HTTP call; returns the call id (token) that will be passed
/// to `on_http_call_response`.
///
/// The token is recorded together with the current context id
/// ([`crate::dispatcher::register_http_call`]), so the response is
/// delivered to the [`crate::HttpContext`] (or [`crate::RootContext`]) that
/// made the call, whatever context id the host passes as first argument of
/// `proxy_on_http_call_response` (the spec passes the root context id).
pub fn http_call(
    upstream: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    trailers: &[(&str, &str)],
    timeout_milliseconds: u32,
) -> Result<u32, Status> {
    let hdrs = serialize_map(headers);
    let trls = serialize_map(trailers);
    let mut call_id: u32 = 0;
    unsafe {
        Status::check(sys::proxy_http_call(
            upstream.as_ptr(),
            upstream.len(),
            hdrs.as_ptr(),
            hdrs.len(),
            body.as_ptr(),
            body.len(),
            trls.as_ptr(),
            trls.len(),
            timeout_milliseconds,
            &mut call_id,
        ))?;
    }
    crate::dispatcher::register_http_call(call_id, crate::dispatcher::current_context_id());
    Ok(call_id)
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

pub fn get_property(path: &[&str]) -> Result<Vec<u8>, Status> {
    let p = serialize_property_path(path);
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    unsafe {
        Status::check(sys::proxy_get_property(p.as_ptr(), p.len(), &mut data, &mut size))?;
        Ok(take_host_buffer(data, size))
    }
}

/// `get_property` as lossy UTF-8; `Ok(None)` on `NOT_FOUND`.
pub fn get_property_string(path: &[&str]) -> Result<Option<String>, Status> {
    match get_property(path) {
        Ok(v) => Ok(Some(String::from_utf8_lossy(&v).into_owned())),
        Err(Status::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

pub fn set_property(path: &[&str], value: &[u8]) -> Result<(), Status> {
    let p = serialize_property_path(path);
    unsafe { Status::check(sys::proxy_set_property(p.as_ptr(), p.len(), value.as_ptr(), value.len())) }
}

// ---------------------------------------------------------------------------
// Shared data and queues
// ---------------------------------------------------------------------------

/// Returns (value, cas). `Err(Status::NotFound)` when the key is absent.
pub fn get_shared_data(key: &str) -> Result<(Vec<u8>, u32), Status> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    let mut cas: u32 = 0;
    unsafe {
        Status::check(sys::proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas))?;
        Ok((take_host_buffer(data, size), cas))
    }
}

/// Like [`get_shared_data`], but a missing key is not an error: returns
/// `Ok((None, cas))` on `NOT_FOUND`, where `cas` is whatever the host wrote
/// into `return_cas` (initialised to 0 before the call).
///
/// RouteIQ extension: on `NOT_FOUND` the RouteIQ host writes a non-zero
/// *creation token* there; `set_shared_data(key, value, token)` then
/// succeeds only if the key is still absent (else `CAS_MISMATCH`), which
/// makes "create if absent" race-free. Other hosts leave it 0, and
/// `set_shared_data(.., 0)` is an unconditional write.
/// Any other non-OK status is returned as `Err`.
pub fn get_shared_data_with_cas(key: &str) -> Result<(Option<Vec<u8>>, u32), Status> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    let mut cas: u32 = 0;
    let rc = unsafe { sys::proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
    match rc {
        Status::OK => Ok((Some(unsafe { take_host_buffer(data, size) }), cas)),
        Status::NOT_FOUND => Ok((None, cas)),
        other => Err(Status::from_code(other)),
    }
}

/// `cas == 0` means unconditional write.
pub fn set_shared_data(key: &str, value: &[u8], cas: u32) -> Result<(), Status> {
    unsafe {
        Status::check(sys::proxy_set_shared_data(
            key.as_ptr(),
            key.len(),
            value.as_ptr(),
            value.len(),
            cas,
        ))
    }
}

pub fn register_shared_queue(name: &str) -> Result<u32, Status> {
    let mut id: u32 = 0;
    unsafe { Status::check(sys::proxy_register_shared_queue(name.as_ptr(), name.len(), &mut id))? };
    Ok(id)
}

pub fn resolve_shared_queue(vm_id: &str, name: &str) -> Result<u32, Status> {
    let mut id: u32 = 0;
    unsafe {
        Status::check(sys::proxy_resolve_shared_queue(
            vm_id.as_ptr(),
            vm_id.len(),
            name.as_ptr(),
            name.len(),
            &mut id,
        ))?
    };
    Ok(id)
}

pub fn enqueue_shared_queue(queue_id: u32, value: &[u8]) -> Result<(), Status> {
    unsafe { Status::check(sys::proxy_enqueue_shared_queue(queue_id, value.as_ptr(), value.len())) }
}

/// `Err(Status::Empty)` when there is nothing to dequeue.
pub fn dequeue_shared_queue(queue_id: u32) -> Result<Vec<u8>, Status> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    unsafe {
        Status::check(sys::proxy_dequeue_shared_queue(queue_id, &mut data, &mut size))?;
        Ok(take_host_buffer(data, size))
    }
}

// ---------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------

pub fn define_metric(metric_type: MetricType, name: &str) -> Result<u32, Status> {
    let mut id: u32 = 0;
    unsafe { Status::check(sys::proxy_define_metric(metric_type as u32, name.as_ptr(), name.len(), &mut id))? };
    Ok(id)
}

pub fn increment_metric(metric_id: u32, delta: i64) -> Result<(), Status> {
    unsafe { Status::check(sys::proxy_increment_metric(metric_id, delta)) }
}

pub fn record_metric(metric_id: u32, value: u64) -> Result<(), Status> {
    unsafe { Status::check(sys::proxy_record_metric(metric_id, value)) }
}

pub fn get_metric(metric_id: u32) -> Result<u64, Status> {
    let mut v: u64 = 0;
    unsafe { Status::check(sys::proxy_get_metric(metric_id, &mut v))? };
    Ok(v)
}

// ---------------------------------------------------------------------------
// Foreign functions
// ---------------------------------------------------------------------------

pub fn call_foreign_function(name: &str, arguments: &[u8]) -> Result<Vec<u8>, Status> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    let args_ptr = if arguments.is_empty() { null() } else { arguments.as_ptr() };
    unsafe {
        Status::check(sys::proxy_call_foreign_function(
            name.as_ptr(),
            name.len(),
            args_ptr,
            arguments.len(),
            &mut data,
            &mut size,
        ))?;
        Ok(take_host_buffer(data, size))
    }
}

// ---------------------------------------------------------------------------
// HTTP convenience helpers (typed shortcuts over the map/buffer calls)
// ---------------------------------------------------------------------------

pub fn get_http_request_header(name: &str) -> Option<String> {
    get_map_value(MapType::HttpRequestHeaders, name).ok().and_then(|v| v)
}

pub fn get_http_request_headers() -> Vec<(String, String)> {
    get_map(MapType::HttpRequestHeaders).unwrap_or_default()
}

pub fn add_http_request_header(name: &str, value: &str) -> Result<(), Status> {
    add_map_value(MapType::HttpRequestHeaders, name, value)
}

pub fn set_http_request_header(name: &str, value: &str) -> Result<(), Status> {
    replace_map_value(MapType::HttpRequestHeaders, name, value)
}

pub fn remove_http_request_header(name: &str) -> Result<(), Status> {
    remove_map_value(MapType::HttpRequestHeaders, name)
}

pub fn get_http_response_header(name: &str) -> Option<String> {
    get_map_value(MapType::HttpResponseHeaders, name).ok().and_then(|v| v)
}

pub fn get_http_response_headers() -> Vec<(String, String)> {
    get_map(MapType::HttpResponseHeaders).unwrap_or_default()
}

pub fn add_http_response_header(name: &str, value: &str) -> Result<(), Status> {
    add_map_value(MapType::HttpResponseHeaders, name, value)
}

pub fn set_http_response_header(name: &str, value: &str) -> Result<(), Status> {
    replace_map_value(MapType::HttpResponseHeaders, name, value)
}

pub fn remove_http_response_header(name: &str) -> Result<(), Status> {
    remove_map_value(MapType::HttpResponseHeaders, name)
}

pub fn get_http_request_body(start: usize, max_size: usize) -> Result<Vec<u8>, Status> {
    get_buffer_bytes(BufferType::HttpRequestBody, start, max_size)
}

pub fn set_http_request_body(start: usize, size: usize, value: &[u8]) -> Result<(), Status> {
    set_buffer_bytes(BufferType::HttpRequestBody, start, size, value)
}

pub fn get_http_response_body(start: usize, max_size: usize) -> Result<Vec<u8>, Status> {
    get_buffer_bytes(BufferType::HttpResponseBody, start, max_size)
}

pub fn set_http_response_body(start: usize, size: usize, value: &[u8]) -> Result<(), Status> {
    set_buffer_bytes(BufferType::HttpResponseBody, start, size, value)
}

/// Reads the whole plugin configuration. Only valid inside `on_configure`;
/// reads exactly the `plugin_configuration_size` the host passed to the
/// current/last `proxy_on_configure` (no call when it is 0).
pub fn get_plugin_configuration() -> Result<Vec<u8>, Status> {
    let size = crate::dispatcher::last_plugin_configuration_size();
    if size == 0 {
        return Ok(Vec::new());
    }
    get_buffer_bytes(BufferType::PluginConfiguration, 0, size)
}

/// Reads the whole VM configuration. Only valid inside `on_vm_start`; reads
/// exactly the `vm_configuration_size` passed to `proxy_on_vm_start`.
pub fn get_vm_configuration() -> Result<Vec<u8>, Status> {
    let size = crate::dispatcher::last_vm_configuration_size();
    if size == 0 {
        return Ok(Vec::new());
    }
    get_buffer_bytes(BufferType::VmConfiguration, 0, size)
}
