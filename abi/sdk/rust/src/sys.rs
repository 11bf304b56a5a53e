//! Raw imports of the proxy-wasm v0.2.1 ABI (plus the RouteIQ LLM
//! extension, `env.routeiq_*`).
//!
//! These are the exact host functions from the spec, declared with wasm32
//! types (`usize`/pointers are `i32`, `u64`/`i64` are `i64`). Every function
//! returns the raw `proxy_status_t` (or `wasi_errno_t`) as `u32`.
//!
//! Prefer the safe wrappers in [`crate::hostcalls`] and [`crate::wasi`]. This
//! module is public so that filters (and test probes) can pass values the
//! typed wrappers cannot express, e.g. an unknown map type. Only the
//! functions a module actually calls become wasm imports.

#[link(wasm_import_module = "env")]
extern "C" {
    // Logging, clocks, timers
    pub fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;

    // MCP tools (docs/mcp.md): the JSON answer of `routeiq_tool_call`
    pub fn routeiq_tool_set_output(data: *const u8, size: usize) -> u32;
    // ... and the end of a call paused for callouts (0: the output is the result)
    pub fn routeiq_tool_finish(status: u32) -> u32;
    pub fn proxy_get_log_level(return_level: *mut u32) -> u32;
    pub fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    pub fn proxy_set_tick_period_milliseconds(period: u32) -> u32;

    // Context lifecycle
    pub fn proxy_set_effective_context(context_id: u32) -> u32;
    pub fn proxy_done() -> u32;

    // Buffers
    pub fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> u32;
    pub fn proxy_set_buffer_bytes(
        buffer_type: u32,
        start: usize,
        size: usize,
        buffer_data: *const u8,
        buffer_size: usize,
    ) -> u32;
    pub fn proxy_get_buffer_status(
        buffer_type: u32,
        return_buffer_size: *mut usize,
        return_ignored: *mut u32,
    ) -> u32;

    // HTTP fields
    pub fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
    pub fn proxy_set_header_map_pairs(map_type: u32, map_data: *const u8, map_size: usize) -> u32;
    pub fn proxy_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    pub fn proxy_add_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    pub fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    pub fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
    pub fn proxy_get_header_map_size(map_type: u32, return_size: *mut usize) -> u32;

    // Streams
    pub fn proxy_continue_stream(stream_type: u32) -> u32;
    pub fn proxy_close_stream(stream_type: u32) -> u32;
    pub fn proxy_get_status(
        return_status_code: *mut u32,
        return_message_data: *mut *mut u8,
        return_message_size: *mut usize,
    ) -> u32;

    // HTTP
    pub fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: u32,
    ) -> u32;
    pub fn proxy_http_call(
        upstream_data: *const u8,
        upstream_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        body_data: *const u8,
        body_size: usize,
        trailers_data: *const u8,
        trailers_size: usize,
        timeout_milliseconds: u32,
        return_call_id: *mut u32,
    ) -> u32;

    // gRPC (declared for completeness; most hosts answer UNIMPLEMENTED)
    pub fn proxy_grpc_call(
        upstream_data: *const u8,
        upstream_size: usize,
        service_name_data: *const u8,
        service_name_size: usize,
        method_name_data: *const u8,
        method_name_size: usize,
        initial_metadata_data: *const u8,
        initial_metadata_size: usize,
        message_data: *const u8,
        message_size: usize,
        timeout_milliseconds: u32,
        return_call_id: *mut u32,
    ) -> u32;

    // Properties
    pub fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    pub fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;

    // Shared key-value store
    pub fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    pub fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;

    // Shared queues
    pub fn proxy_register_shared_queue(
        name_data: *const u8,
        name_size: usize,
        return_queue_id: *mut u32,
    ) -> u32;
    pub fn proxy_resolve_shared_queue(
        vm_id_data: *const u8,
        vm_id_size: usize,
        name_data: *const u8,
        name_size: usize,
        return_queue_id: *mut u32,
    ) -> u32;
    pub fn proxy_enqueue_shared_queue(queue_id: u32, value_data: *const u8, value_size: usize) -> u32;
    pub fn proxy_dequeue_shared_queue(
        queue_id: u32,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;

    // Metrics
    pub fn proxy_define_metric(
        metric_type: u32,
        name_data: *const u8,
        name_size: usize,
        return_metric_id: *mut u32,
    ) -> u32;
    pub fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    pub fn proxy_record_metric(metric_id: u32, value: u64) -> u32;
    pub fn proxy_get_metric(metric_id: u32, return_value: *mut u64) -> u32;

    // Foreign functions
    pub fn proxy_call_foreign_function(
        name_data: *const u8,
        name_size: usize,
        arguments_data: *const u8,
        arguments_size: usize,
        return_results_data: *mut *mut u8,
        return_results_size: *mut usize,
    ) -> u32;

    // RouteIQ LLM extension (not part of proxy-wasm; capability
    // `llm_request`, else 12 UNIMPLEMENTED). Payloads are CBOR except the
    // model name (plain UTF-8). See `crate::llm`.
    pub fn routeiq_get_llm_request(return_data: *mut *mut u8, return_size: *mut usize) -> u32;
    pub fn routeiq_set_llm_messages(data: *const u8, size: usize) -> u32;
    pub fn routeiq_set_llm_model(data: *const u8, size: usize) -> u32;
    pub fn routeiq_get_llm_response(return_data: *mut *mut u8, return_size: *mut usize) -> u32;
}

/// A WASI `ciovec`: pointer + length, 8 bytes on wasm32.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CioVec {
    pub buf: *const u8,
    pub buf_len: usize,
}

#[link(wasm_import_module = "wasi_snapshot_preview1")]
extern "C" {
    pub fn fd_write(fd: u32, iovs: *const CioVec, iovs_len: usize, return_written: *mut usize) -> u32;
    pub fn clock_time_get(clock_id: u32, precision: u64, return_time: *mut u64) -> u32;
    pub fn random_get(buf: *mut u8, buf_len: usize) -> u32;
    pub fn environ_sizes_get(return_count: *mut usize, return_buf_size: *mut usize) -> u32;
    pub fn environ_get(return_environ: *mut *mut u8, return_environ_buf: *mut u8) -> u32;
    pub fn args_sizes_get(return_argc: *mut usize, return_argv_buf_size: *mut usize) -> u32;
    pub fn args_get(return_argv: *mut *mut u8, return_argv_buf: *mut u8) -> u32;
    pub fn proc_exit(code: u32) -> !;
}
