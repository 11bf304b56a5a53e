//! # bench_filter — the hook-matrix benchmark filter (`bench/test_hook_matrix.py`)
//!
//! One small job per callback, written identically in every language (C, AssemblyScript,
//! Python, an Extism plugin and native Python in `bench/`), so the benchmark's columns
//! compare hosts and SDKs, not filters:
//!
//! * `on_request_headers`: reads `x-api-key`, adds `x-routeiq-seen: 1` (`anonymous`
//!   without the key).
//! * `on_request_body`: `Pause` until `end_of_stream`; then reads the whole body,
//!   replaces every `secret` with `******` and writes the whole body back.
//! * `on_response_body`: reads each chunk and adds its length to a per-request counter;
//!   `on_response_trailers` reports it as trailer `x-routeiq-body-bytes: <n>`.
//! * `on_response_headers`: `bench-counter` in shared data += 1 (decimal text, CAS).
//! * `on_log`: one HTTP callout to `127.0.0.1:1`; the status is ignored (the benchmark
//!   grants no `http_callout`, so it measures the host's refusal).

use routeiq_guest::hostcalls;
use routeiq_guest::{Action, BufferType, HttpContext, MapType, RootContext};

const COUNTER_KEY: &str = "bench-counter";
const CALLOUT_UPSTREAM: &str = "127.0.0.1:1";

struct Root;

impl RootContext for Root {
    fn create_http_context(&mut self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Filter { response_bytes: 0 }))
    }
}

struct Filter {
    response_bytes: u64,
}

/// Masks `secret` in place: the replacement has the same length, so no reallocation.
/// The first-byte test comes before the slice comparison because on wasm32 that
/// comparison is an out-of-line `memcmp` call, which would otherwise run at every byte.
fn mask_secrets(body: &mut [u8]) {
    const NEEDLE: &[u8] = b"secret";
    let mut i = 0;
    while i + NEEDLE.len() <= body.len() {
        if body[i] == NEEDLE[0] && &body[i..i + NEEDLE.len()] == NEEDLE {
            body[i..i + NEEDLE.len()].copy_from_slice(b"******");
            i += NEEDLE.len();
        } else {
            i += 1;
        }
    }
}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _num_headers: usize, _eos: bool) -> Action {
        let seen = match hostcalls::get_http_request_header("x-api-key") {
            Some(_) => "1",
            None => "anonymous",
        };
        let _ = hostcalls::add_http_request_header("x-routeiq-seen", seen);
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            return Action::Pause; // the host buffers until the whole body is there
        }
        if let Ok(mut body) = hostcalls::get_buffer_bytes(BufferType::HttpRequestBody, 0, body_size) {
            mask_secrets(&mut body);
            let _ = hostcalls::set_buffer_bytes(BufferType::HttpRequestBody, 0, body.len(), &body);
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _eos: bool) -> Action {
        if let Ok((value, cas)) = hostcalls::get_shared_data_with_cas(COUNTER_KEY) {
            let count = value
                .and_then(|v| std::str::from_utf8(&v).ok().and_then(|s| s.parse::<u64>().ok()))
                .unwrap_or(0);
            let _ = hostcalls::set_shared_data(COUNTER_KEY, (count + 1).to_string().as_bytes(), cas);
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, _end_of_stream: bool) -> Action {
        if body_size > 0 {
            if let Ok(chunk) = hostcalls::get_buffer_bytes(BufferType::HttpResponseBody, 0, body_size) {
                self.response_bytes += chunk.len() as u64;
            }
        }
        Action::Continue
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        let _ = hostcalls::add_map_value(MapType::HttpResponseTrailers, "x-routeiq-body-bytes", &self.response_bytes.to_string());
        Action::Continue
    }

    fn on_log(&mut self) {
        let headers = [(":method", "GET"), (":path", "/"), (":authority", CALLOUT_UPSTREAM), (":scheme", "http")];
        let _ = hostcalls::http_call(CALLOUT_UPSTREAM, &headers, b"", &[], 1000);
    }
}

routeiq_guest::manifest!(r#"{"name": "bench_filter", "version": "0.1.0", "description": "Benchmark hook matrix filter", "capabilities": ["request_body", "response_body", "shared_kv"]}"#);

routeiq_guest::main! {
    routeiq_guest::set_root_context(|_context_id| -> Box<dyn RootContext> { Box::new(Root) });
}
