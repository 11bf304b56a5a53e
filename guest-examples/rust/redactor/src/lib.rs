//! # redactor — request-body secret masking example filter
//!
//! Behaviour (per HTTP request):
//! * `on_request_body`: returns `Pause` until `end_of_stream` (the host keeps
//!   buffering), then reads the whole buffered `HTTP_REQUEST_BODY`
//!   (`proxy_get_buffer_bytes(0, 0, body_size)`), masks secrets and, only if
//!   something was masked, writes the result back with
//!   `proxy_set_buffer_bytes(HTTP_REQUEST_BODY, 0, body_size, new_body)`;
//!   returns `Continue`. Content-Length is not touched (the host recomputes
//!   it after a body rewrite).
//! * Masking (see `redact.rs`): e-mail addresses -> `[REDACTED_EMAIL]`,
//!   `sk-` + >=16 `[A-Za-z0-9_-]` and `AKIA` + >=16 `[A-Z0-9]` ->
//!   `[REDACTED_KEY]`, inside JSON string literals (keys and values); valid
//!   JSON stays valid. Non-JSON bodies are scanned as plain text.
//! * `on_response_headers`: adds `x-routeiq-redactions: <count>` (always,
//!   `0` when nothing was masked or there was no request body). The count
//!   cannot go on the request: request headers are already sent upstream
//!   when the body is complete.
//! * Logs at DEBUG `redactor: redactions=<count> bytes_in=<n> bytes_out=<m>`
//!   after rewriting.
//!
//! Configuration: none (plugin configuration is ignored).

mod redact;

use routeiq_guest::hostcalls;
use routeiq_guest::{Action, BufferType, HttpContext, RootContext};

struct RedactorRoot;

impl RootContext for RedactorRoot {
    fn create_http_context(&mut self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Redactor { redactions: 0 }))
    }
}

struct Redactor {
    redactions: usize,
}

impl HttpContext for Redactor {
    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            return Action::Pause;
        }
        if body_size == 0 {
            return Action::Continue;
        }
        let body = match hostcalls::get_buffer_bytes(BufferType::HttpRequestBody, 0, body_size) {
            Ok(b) => b,
            Err(_) => return Action::Continue,
        };
        let (new_body, count) = redact::redact(&body);
        self.redactions += count;
        if count > 0 {
            let _ = hostcalls::set_buffer_bytes(BufferType::HttpRequestBody, 0, body.len(), &new_body);
            routeiq_guest::log_debug(&format!(
                "redactor: redactions={} bytes_in={} bytes_out={}",
                count,
                body.len(),
                new_body.len()
            ));
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _eos: bool) -> Action {
        let _ = hostcalls::add_http_response_header("x-routeiq-redactions", &self.redactions.to_string());
        Action::Continue
    }
}

routeiq_guest::manifest!(r#"{"name": "redactor", "version": "0.1.0", "description": "Masks e-mail addresses and API keys in request bodies", "capabilities": ["request_body"]}"#);

routeiq_guest::main! {
    routeiq_guest::set_root_context(|_| -> Box<dyn RootContext> { Box::new(RedactorRoot) });
}
