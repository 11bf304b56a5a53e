//! The two context traits a filter implements.
//!
//! * One [`RootContext`] exists per plugin (created when the host calls
//!   `proxy_on_context_create(id, 0)`). It receives VM/plugin configuration,
//!   timer ticks and queue notifications, and creates one [`HttpContext`]
//!   per HTTP request/response pair.
//! * Every method has a default: lifecycle hooks return `true`, HTTP hooks
//!   return [`Action::Continue`], notifications do nothing. Implement only
//!   what you need.
//!
//! Host calls are made through the free functions in
//! [`crate::hostcalls`]; the host already knows which context is active.

use crate::types::Action;

pub trait RootContext {
    /// `proxy_on_vm_start`. Read the VM configuration here with
    /// [`crate::hostcalls::get_vm_configuration`]. `false` = failure.
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        true
    }

    /// `proxy_on_configure`. Read the plugin configuration here with
    /// [`crate::hostcalls::get_plugin_configuration`]. `false` = failure.
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        true
    }

    /// `proxy_on_tick`, after [`crate::hostcalls::set_tick_period_milliseconds`].
    fn on_tick(&mut self) {}

    /// `proxy_on_queue_ready`.
    fn on_queue_ready(&mut self, _queue_id: u32) {}

    /// `proxy_on_http_call_response` for a call dispatched by this context.
    fn on_http_call_response(&mut self, _token_id: u32, _num_headers: usize, _body_size: usize, _num_trailers: usize) {}

    /// Called for every `proxy_on_context_create(context_id, <this root>)`.
    /// Returning `None` means "no per-request filter": all HTTP callbacks
    /// for that context then return `Continue`.
    fn create_http_context(&mut self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        None
    }

    /// `proxy_on_done`. `true` lets the host finalize the context.
    fn on_done(&mut self) -> bool {
        true
    }

    /// `proxy_on_log`.
    fn on_log(&mut self) {}
}

pub trait HttpContext {
    /// `proxy_on_request_headers`.
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        Action::Continue
    }

    /// `proxy_on_request_body`. Returning `Pause` before `end_of_stream`
    /// asks the host to keep buffering; `body_size` is then the total
    /// buffered size.
    fn on_http_request_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        Action::Continue
    }

    /// `proxy_on_request_trailers`.
    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        Action::Continue
    }

    /// `proxy_on_response_headers`.
    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        Action::Continue
    }

    /// `proxy_on_response_body`.
    fn on_http_response_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        Action::Continue
    }

    /// `proxy_on_response_trailers`.
    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        Action::Continue
    }

    /// `proxy_on_http_call_response` for a call dispatched by this context.
    fn on_http_call_response(&mut self, _token_id: u32, _num_headers: usize, _body_size: usize, _num_trailers: usize) {}

    /// `proxy_on_done`. `true` lets the host finalize the context; `false`
    /// means the filter will call [`crate::hostcalls::done`] later.
    fn on_done(&mut self) -> bool {
        true
    }

    /// `proxy_on_log`: request/response headers are readable here.
    fn on_log(&mut self) {}
}
