//! # chunk_counter — streaming response observer example filter
//!
//! Behaviour (per HTTP request):
//! * `on_response_body(body_size, end_of_stream)`: for every call with
//!   `body_size > 0` it counts one chunk, adds `body_size` to the byte
//!   count, reads the chunk (`proxy_get_buffer_bytes(1, 0, body_size)`) and
//!   feeds it to an SSE event counter. It never modifies the body and
//!   always returns `Continue` (never buffers). A final empty call with
//!   `end_of_stream=true` is not counted as a chunk.
//! * SSE events: an event ends at a blank line (`"\n\n"`, `\r` ignored) and
//!   is counted only if one of its lines starts with `data:`; events and
//!   terminators split across chunks are handled (state is kept per request).
//! * `on_log`: logs at INFO exactly
//!   `chunk_counter: chunks=<N> bytes=<B> events=<E>`.
//!
//! Configuration: none.

mod sse;

use routeiq_guest::hostcalls;
use routeiq_guest::{Action, BufferType, HttpContext, RootContext};

struct CounterRoot;

impl RootContext for CounterRoot {
    fn create_http_context(&mut self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(ChunkCounter {
            chunks: 0,
            bytes: 0,
            sse: sse::SseCounter::default(),
        }))
    }
}

struct ChunkCounter {
    chunks: u64,
    bytes: u64,
    sse: sse::SseCounter,
}

impl HttpContext for ChunkCounter {
    fn on_http_response_body(&mut self, body_size: usize, _end_of_stream: bool) -> Action {
        if body_size == 0 {
            return Action::Continue;
        }
        self.chunks += 1;
        self.bytes += body_size as u64;
        if let Ok(chunk) = hostcalls::get_buffer_bytes(BufferType::HttpResponseBody, 0, body_size) {
            self.sse.feed(&chunk);
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        routeiq_guest::log_info(&format!(
            "chunk_counter: chunks={} bytes={} events={}",
            self.chunks, self.bytes, self.sse.events
        ));
    }
}

routeiq_guest::manifest!(r#"{"name": "chunk_counter", "version": "0.1.0", "description": "Counts streamed response chunks, bytes and SSE events", "capabilities": ["response_body"]}"#);

routeiq_guest::main! {
    routeiq_guest::set_root_context(|_| -> Box<dyn RootContext> { Box::new(CounterRoot) });
}
