//! # hostile_pointers — every pointer-taking host call with bad memory
//!
//! Sandbox test guest (no SDK). In `proxy_on_request_headers` it calls each
//! pointer-taking `env` host function and five WASI functions with
//! out-of-bounds pointers/sizes, records every returned status, then answers
//! `proxy_send_local_response(200, details="hostile_pointers",
//! headers=[content-type: text/plain], body)` with valid pointers and
//! returns `Pause`. The body is one `name=<returned number>` line per call
//! (each line ends with `\n`), in the order below. The guest only reports;
//! the host's tests judge (expected: `6` INVALID_MEMORY_ACCESS for `proxy_*`,
//! `21` FAULT for WASI; `setup.*` lines are valid calls, expected `0`).
//!
//! Constants: `OOB = 0xFFFF_FFF0`, `BIG = 0x7FFF_FFFF` (so `OOB + BIG`
//! also overflows 32 bits), `END` = linear-memory size in bytes at the time
//! of the call.
//! Calls without pointer parameters (set_tick_period, continue/close_stream,
//! set_effective_context, done, record/increment_metric, grpc_cancel/close)
//! are not included. Send the request header `x-hostile: 1` so that the
//! `proxy_get_header_map_value.out` case finds its key.
//!
//! Lines (name: arguments):
//! * `setup.proxy_set_shared_data`: key `hostile_pointers`, value `x` (valid)
//! * `setup.proxy_register_shared_queue`: name `hostile_q` (valid) -> QID
//! * `setup.proxy_enqueue_shared_queue`: QID, value `x` (valid)
//! * `setup.proxy_define_metric`: counter `hostile_metric` (valid) -> MID
//! * `proxy_log`: level 2, OOB, BIG
//! * `proxy_log.size`: level 2, valid ptr, BIG
//! * `proxy_get_log_level`: OOB
//! * `proxy_get_log_level.edge`: END (4-byte write just past the end)
//! * `proxy_get_current_time_nanoseconds`: OOB
//! * `proxy_get_current_time_nanoseconds.edge`: END-4 (8-byte write straddling the end)
//! * `proxy_get_buffer_bytes`: buffer 7, start 0, max 16, OOB, OOB
//! * `proxy_get_buffer_bytes.request_body`: buffer 0, start 0, max 16, OOB, OOB
//! * `proxy_set_buffer_bytes`: buffer 0, start 0, size 0, OOB, BIG
//! * `proxy_get_buffer_status`: buffer 7, OOB, OOB
//! * `proxy_get_header_map_pairs`: map 0, OOB, OOB
//! * `proxy_set_header_map_pairs`: map 0, OOB, BIG
//! * `proxy_set_header_map_pairs.malformed`: map 0, valid 12-byte buffer
//!   claiming 0x10000000 pairs (not an OOB pointer: expect non-0, no crash)
//! * `proxy_get_header_map_value`: map 0, OOB, BIG, OOB, OOB
//! * `proxy_get_header_map_value.out`: map 0, key `x-hostile`, OOB, OOB
//! * `proxy_add_header_map_value`: map 0, OOB, BIG, OOB, BIG
//! * `proxy_replace_header_map_value`: map 0, OOB, BIG, OOB, BIG
//! * `proxy_remove_header_map_value`: map 0, OOB, BIG
//! * `proxy_get_header_map_size`: map 0, OOB
//! * `proxy_send_local_response`: 200, OOB/BIG for details, body, headers
//! * `proxy_get_property`: OOB, BIG, OOB, OOB
//! * `proxy_get_property.out`: path `request\0path`, OOB, OOB
//! * `proxy_set_property`: OOB, BIG, OOB, BIG
//! * `proxy_http_call`: every pointer OOB, every size BIG, timeout 1000
//! * `proxy_get_shared_data`: OOB, BIG, OOB, OOB, OOB
//! * `proxy_get_shared_data.out`: key `hostile_pointers`, OOB, OOB, OOB
//! * `proxy_set_shared_data`: OOB, BIG, OOB, BIG, cas 0
//! * `proxy_register_shared_queue`: OOB, BIG, OOB
//! * `proxy_register_shared_queue.out`: name `hostile_q`, OOB
//! * `proxy_resolve_shared_queue`: OOB, BIG, OOB, BIG, OOB
//! * `proxy_enqueue_shared_queue`: QID, OOB, BIG
//! * `proxy_dequeue_shared_queue`: QID (holds one item), OOB, OOB
//! * `proxy_define_metric`: counter, OOB, BIG, OOB
//! * `proxy_define_metric.out`: counter, name `hostile_metric`, OOB
//! * `proxy_get_metric`: MID, OOB
//! * `proxy_get_status`: OOB, OOB, OOB
//! * `proxy_call_foreign_function`: OOB, BIG, OOB, BIG, OOB, OOB
//! * `proxy_grpc_call`: every pointer OOB, every size BIG
//! * `proxy_grpc_stream`: every pointer OOB, every size BIG
//! * `proxy_grpc_send`: stream 0, OOB, BIG, end_stream 0
//! * `fd_write`: fd 1, iovs OOB, 1 iovec, nwritten OOB
//! * `fd_write.iov_data`: fd 1, valid iovec {OOB, BIG}, valid nwritten
//! * `fd_write.out`: fd 1, valid iovec {"x", 1}, nwritten OOB
//! * `clock_time_get`: clock 0, OOB
//! * `random_get`: OOB, 16
//! * `random_get.size`: valid ptr, BIG (FAULT or INVAL)
//! * `environ_sizes_get`: OOB, OOB
//! * `environ_get`: OOB, OOB
//! * `args_sizes_get`: OOB, OOB
//!
//! It exports no other callback. Configuration: none.

#[path = "../../shared/raw_guest.rs"]
mod raw_guest;
use std::fmt::Write;

const OOB: u32 = 0xFFFF_FFF0;
const BIG: u32 = 0x7FFF_FFFF;

// All pointer/size parameters are declared as plain u32 (wasm i32) so that
// arbitrary addresses can be passed.
#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: u32, data: u32, size: u32) -> u32;
    fn proxy_get_log_level(ret: u32) -> u32;
    fn proxy_get_current_time_nanoseconds(ret: u32) -> u32;
    fn proxy_get_buffer_bytes(buf: u32, start: u32, max: u32, ret_data: u32, ret_size: u32) -> u32;
    fn proxy_set_buffer_bytes(buf: u32, start: u32, size: u32, data: u32, data_size: u32) -> u32;
    fn proxy_get_buffer_status(buf: u32, ret_size: u32, ret_flags: u32) -> u32;
    fn proxy_get_header_map_pairs(map: u32, ret_data: u32, ret_size: u32) -> u32;
    fn proxy_set_header_map_pairs(map: u32, data: u32, size: u32) -> u32;
    fn proxy_get_header_map_value(map: u32, key: u32, key_size: u32, ret_data: u32, ret_size: u32) -> u32;
    fn proxy_add_header_map_value(map: u32, key: u32, key_size: u32, val: u32, val_size: u32) -> u32;
    fn proxy_replace_header_map_value(map: u32, key: u32, key_size: u32, val: u32, val_size: u32) -> u32;
    fn proxy_remove_header_map_value(map: u32, key: u32, key_size: u32) -> u32;
    fn proxy_get_header_map_size(map: u32, ret_size: u32) -> u32;
    fn proxy_send_local_response(
        code: u32,
        details: u32,
        details_size: u32,
        body: u32,
        body_size: u32,
        headers: u32,
        headers_size: u32,
        grpc_status: u32,
    ) -> u32;
    fn proxy_get_property(path: u32, path_size: u32, ret_data: u32, ret_size: u32) -> u32;
    fn proxy_set_property(path: u32, path_size: u32, val: u32, val_size: u32) -> u32;
    fn proxy_http_call(
        upstream: u32,
        upstream_size: u32,
        headers: u32,
        headers_size: u32,
        body: u32,
        body_size: u32,
        trailers: u32,
        trailers_size: u32,
        timeout: u32,
        ret_id: u32,
    ) -> u32;
    fn proxy_get_shared_data(key: u32, key_size: u32, ret_data: u32, ret_size: u32, ret_cas: u32) -> u32;
    fn proxy_set_shared_data(key: u32, key_size: u32, val: u32, val_size: u32, cas: u32) -> u32;
    fn proxy_register_shared_queue(name: u32, name_size: u32, ret_id: u32) -> u32;
    fn proxy_resolve_shared_queue(vm_id: u32, vm_id_size: u32, name: u32, name_size: u32, ret_id: u32) -> u32;
    fn proxy_enqueue_shared_queue(queue_id: u32, val: u32, val_size: u32) -> u32;
    fn proxy_dequeue_shared_queue(queue_id: u32, ret_data: u32, ret_size: u32) -> u32;
    fn proxy_define_metric(kind: u32, name: u32, name_size: u32, ret_id: u32) -> u32;
    fn proxy_get_metric(metric_id: u32, ret_value: u32) -> u32;
    fn proxy_get_status(ret_code: u32, ret_msg: u32, ret_msg_size: u32) -> u32;
    fn proxy_call_foreign_function(
        name: u32,
        name_size: u32,
        args: u32,
        args_size: u32,
        ret_data: u32,
        ret_size: u32,
    ) -> u32;
    fn proxy_grpc_call(
        upstream: u32,
        upstream_size: u32,
        service: u32,
        service_size: u32,
        method: u32,
        method_size: u32,
        metadata: u32,
        metadata_size: u32,
        message: u32,
        message_size: u32,
        timeout: u32,
        ret_id: u32,
    ) -> u32;
    fn proxy_grpc_stream(
        upstream: u32,
        upstream_size: u32,
        service: u32,
        service_size: u32,
        method: u32,
        method_size: u32,
        metadata: u32,
        metadata_size: u32,
        ret_id: u32,
    ) -> u32;
    fn proxy_grpc_send(stream_id: u32, message: u32, message_size: u32, end_stream: u32) -> u32;
}

#[link(wasm_import_module = "wasi_snapshot_preview1")]
extern "C" {
    fn fd_write(fd: u32, iovs: u32, iovs_len: u32, ret_written: u32) -> u32;
    fn clock_time_get(clock_id: u32, precision: u64, ret_time: u32) -> u32;
    fn random_get(buf: u32, buf_len: u32) -> u32;
    fn environ_sizes_get(ret_count: u32, ret_size: u32) -> u32;
    fn environ_get(ret_environ: u32, ret_buf: u32) -> u32;
    fn args_sizes_get(ret_argc: u32, ret_size: u32) -> u32;
}

fn addr<T>(p: *const T) -> u32 {
    p as usize as u32
}

/// Current linear-memory size in bytes (evaluated at each use: the report
/// string may grow memory between calls).
fn mem_end() -> u32 {
    (core::arch::wasm32::memory_size(0) as u32).wrapping_mul(65536)
}

fn sp(s: &[u8]) -> (u32, u32) {
    (addr(s.as_ptr()), s.len() as u32)
}

struct Report(String);

impl Report {
    fn rec(&mut self, name: &str, status: u32) {
        let _ = writeln!(self.0, "{}={}", name, status);
    }
}

fn run_all() -> String {
    let mut r = Report(String::new());

    // Valid scratch space.
    let mut u32_out: u32 = 0;
    let mut u32_out2: u32 = 0;
    let key_shared = b"hostile_pointers";
    let key_queue = b"hostile_q";
    let key_metric = b"hostile_metric";
    let val_x = b"x";
    let (ks, ksl) = sp(key_shared);
    let (kq, kql) = sp(key_queue);
    let (km, kml) = sp(key_metric);
    let (vx, vxl) = sp(val_x);

    unsafe {
        // -- setup (valid calls)
        r.rec("setup.proxy_set_shared_data", proxy_set_shared_data(ks, ksl, vx, vxl, 0));
        r.rec(
            "setup.proxy_register_shared_queue",
            proxy_register_shared_queue(kq, kql, addr(&mut u32_out as *mut u32)),
        );
        let qid = u32_out;
        r.rec("setup.proxy_enqueue_shared_queue", proxy_enqueue_shared_queue(qid, vx, vxl));
        r.rec(
            "setup.proxy_define_metric",
            proxy_define_metric(0, km, kml, addr(&mut u32_out2 as *mut u32)),
        );
        let mid = u32_out2;

        // -- env
        r.rec("proxy_log", proxy_log(2, OOB, BIG));
        r.rec("proxy_log.size", proxy_log(2, vx, BIG));
        r.rec("proxy_get_log_level", proxy_get_log_level(OOB));
        r.rec("proxy_get_log_level.edge", proxy_get_log_level(mem_end()));
        r.rec("proxy_get_current_time_nanoseconds", proxy_get_current_time_nanoseconds(OOB));
        r.rec(
            "proxy_get_current_time_nanoseconds.edge",
            proxy_get_current_time_nanoseconds(mem_end().wrapping_sub(4)),
        );
        r.rec("proxy_get_buffer_bytes", proxy_get_buffer_bytes(7, 0, 16, OOB, OOB));
        r.rec("proxy_get_buffer_bytes.request_body", proxy_get_buffer_bytes(0, 0, 16, OOB, OOB));
        r.rec("proxy_set_buffer_bytes", proxy_set_buffer_bytes(0, 0, 0, OOB, BIG));
        r.rec("proxy_get_buffer_status", proxy_get_buffer_status(7, OOB, OOB));
        r.rec("proxy_get_header_map_pairs", proxy_get_header_map_pairs(0, OOB, OOB));
        r.rec("proxy_set_header_map_pairs", proxy_set_header_map_pairs(0, OOB, BIG));
        // count = 0x10000000 pairs, then one (klen, vlen) pair; 12 bytes total.
        let malformed: [u8; 12] = [0, 0, 0, 0x10, 1, 0, 0, 0, 1, 0, 0, 0];
        let (mp, ml) = sp(&malformed);
        r.rec("proxy_set_header_map_pairs.malformed", proxy_set_header_map_pairs(0, mp, ml));
        r.rec("proxy_get_header_map_value", proxy_get_header_map_value(0, OOB, BIG, OOB, OOB));
        let (hk, hkl) = sp(b"x-hostile");
        r.rec("proxy_get_header_map_value.out", proxy_get_header_map_value(0, hk, hkl, OOB, OOB));
        r.rec("proxy_add_header_map_value", proxy_add_header_map_value(0, OOB, BIG, OOB, BIG));
        r.rec("proxy_replace_header_map_value", proxy_replace_header_map_value(0, OOB, BIG, OOB, BIG));
        r.rec("proxy_remove_header_map_value", proxy_remove_header_map_value(0, OOB, BIG));
        r.rec("proxy_get_header_map_size", proxy_get_header_map_size(0, OOB));
        r.rec(
            "proxy_send_local_response",
            proxy_send_local_response(200, OOB, BIG, OOB, BIG, OOB, BIG, 0xFFFF_FFFF),
        );
        r.rec("proxy_get_property", proxy_get_property(OOB, BIG, OOB, OOB));
        let (pp, ppl) = sp(b"request\0path");
        r.rec("proxy_get_property.out", proxy_get_property(pp, ppl, OOB, OOB));
        r.rec("proxy_set_property", proxy_set_property(OOB, BIG, OOB, BIG));
        r.rec(
            "proxy_http_call",
            proxy_http_call(OOB, BIG, OOB, BIG, OOB, BIG, OOB, BIG, 1000, OOB),
        );
        r.rec("proxy_get_shared_data", proxy_get_shared_data(OOB, BIG, OOB, OOB, OOB));
        r.rec("proxy_get_shared_data.out", proxy_get_shared_data(ks, ksl, OOB, OOB, OOB));
        r.rec("proxy_set_shared_data", proxy_set_shared_data(OOB, BIG, OOB, BIG, 0));
        r.rec("proxy_register_shared_queue", proxy_register_shared_queue(OOB, BIG, OOB));
        r.rec("proxy_register_shared_queue.out", proxy_register_shared_queue(kq, kql, OOB));
        r.rec("proxy_resolve_shared_queue", proxy_resolve_shared_queue(OOB, BIG, OOB, BIG, OOB));
        r.rec("proxy_enqueue_shared_queue", proxy_enqueue_shared_queue(qid, OOB, BIG));
        r.rec("proxy_dequeue_shared_queue", proxy_dequeue_shared_queue(qid, OOB, OOB));
        r.rec("proxy_define_metric", proxy_define_metric(0, OOB, BIG, OOB));
        r.rec("proxy_define_metric.out", proxy_define_metric(0, km, kml, OOB));
        r.rec("proxy_get_metric", proxy_get_metric(mid, OOB));
        r.rec("proxy_get_status", proxy_get_status(OOB, OOB, OOB));
        r.rec(
            "proxy_call_foreign_function",
            proxy_call_foreign_function(OOB, BIG, OOB, BIG, OOB, OOB),
        );
        r.rec(
            "proxy_grpc_call",
            proxy_grpc_call(OOB, BIG, OOB, BIG, OOB, BIG, OOB, BIG, OOB, BIG, 1000, OOB),
        );
        r.rec("proxy_grpc_stream", proxy_grpc_stream(OOB, BIG, OOB, BIG, OOB, BIG, OOB, BIG, OOB));
        r.rec("proxy_grpc_send", proxy_grpc_send(0, OOB, BIG, 0));

        // -- WASI
        let mut written: u32 = 0;
        r.rec("fd_write", fd_write(1, OOB, 1, OOB));
        let bad_iov: [u32; 2] = [OOB, BIG];
        r.rec(
            "fd_write.iov_data",
            fd_write(1, addr(bad_iov.as_ptr()), 1, addr(&mut written as *mut u32)),
        );
        let good_iov: [u32; 2] = [vx, vxl];
        r.rec("fd_write.out", fd_write(1, addr(good_iov.as_ptr()), 1, OOB));
        r.rec("clock_time_get", clock_time_get(0, 1, OOB));
        r.rec("random_get", random_get(OOB, 16));
        let mut rnd = [0u8; 16];
        r.rec("random_get.size", random_get(addr(rnd.as_mut_ptr()), BIG));
        r.rec("environ_sizes_get", environ_sizes_get(OOB, OOB));
        r.rec("environ_get", environ_get(OOB, OOB));
        r.rec("args_sizes_get", args_sizes_get(OOB, OOB));
    }
    r.0
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(_context_id: u32, _num_headers: usize, _end_of_stream: u32) -> u32 {
    let body = run_all();
    // Serialized map: 1 pair, "content-type" -> "text/plain".
    let (k, v) = (b"content-type", b"text/plain");
    let mut headers: Vec<u8> = Vec::new();
    headers.extend_from_slice(&1u32.to_le_bytes());
    headers.extend_from_slice(&(k.len() as u32).to_le_bytes());
    headers.extend_from_slice(&(v.len() as u32).to_le_bytes());
    headers.extend_from_slice(k);
    headers.push(0);
    headers.extend_from_slice(v);
    headers.push(0);
    let details = b"hostile_pointers";
    unsafe {
        proxy_send_local_response(
            200,
            addr(details.as_ptr()),
            details.len() as u32,
            addr(body.as_ptr()),
            body.len() as u32,
            addr(headers.as_ptr()),
            headers.len() as u32,
            0xFFFF_FFFF,
        );
    }
    1 // Pause
}

