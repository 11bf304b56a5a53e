//! MCP tools (docs/mcp.md, abi/mcp_tool.md): a core module that exports
//! `routeiq_tool_call(input_ptr, input_len) -> u32` beside
//! `proxy_on_memory_allocate`. The host places the call's JSON arguments in a
//! buffer from that allocator (the guest owns it), calls the export, and takes
//! the answer the guest handed to `routeiq_tool_set_output`: on status 0 the
//! JSON result, on any other status an error message for the MCP client.
//!
//! ```ignore
//! routeiq_guest::tool!(|input: &[u8]| -> Result<String, String> {
//!     Ok(String::from("{\"ok\": true}"))
//! });
//! ```
//!
//! A tool that needs HTTP callouts (`http_callout` granted by the policy) uses
//! `tool_with_callouts!(start, on_response)`: `start` dispatches calls with
//! [`crate::hostcalls::http_call`] and answers [`Step::Wait`]; each response
//! comes to `on_response`, which may dispatch more, and the call ends with the
//! first [`Step::Done`] (abi/mcp_tool.md, "Callouts").

use crate::sys;
use crate::types::{BufferType, MapType};
use std::cell::Cell;

/// `routeiq_tool_call` status: the output is the tool's JSON result.
pub const TOOL_OK: u32 = 0;
/// `routeiq_tool_call` status: the output is an error message (MCP `isError`).
pub const TOOL_ERROR: u32 = 1;

/// `routeiq_tool_call` status: the call waits for the callouts it dispatched.
pub const TOOL_PAUSED: u32 = 2;

/// What a step of a tool with callouts decided.
pub enum Step {
    /// The call is over: `Ok(json)` the result, `Err(message)` a tool error.
    Done(Result<String, String>),
    /// Wait for (more) callout responses.
    Wait,
}

/// A finished callout, as `on_response` receives it. `status` 0: the call
/// failed (refused, unreachable, timed out); `message` says why.
pub struct CallResponse {
    pub call_id: u32,
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub message: String,
}

impl CallResponse {
    /// The response read from the host inside `proxy_on_http_call_response`.
    pub fn current(call_id: u32, num_headers: usize, body_size: usize) -> CallResponse {
        let (code, message) = crate::hostcalls::get_status().unwrap_or((0, Vec::new()));
        let headers = if num_headers > 0 { crate::hostcalls::get_map(MapType::HttpCallResponseHeaders).unwrap_or_default() } else { Vec::new() };
        let body = if body_size > 0 { crate::hostcalls::get_buffer_bytes(BufferType::HttpCallResponseBody, 0, body_size).unwrap_or_default() } else { Vec::new() };
        let status = if num_headers > 0 { code } else { 0 };
        CallResponse { call_id, status, headers, body, message: String::from_utf8_lossy(&message).into_owned() }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// The raw `proxy_on_http_call_response(context_id, call_id, headers, body, trailers)`.
pub type CalloutHandler = fn(u32, u32, usize, usize, usize);

thread_local! {
    static CALLOUT_HANDLER: Cell<Option<CalloutHandler>> = Cell::new(None);
}

/// Set by `tool_with_callouts!`: the dispatcher hands it every callout response.
pub fn set_callout_handler(handler: CalloutHandler) {
    CALLOUT_HANDLER.with(|h| h.set(Some(handler)));
}

pub fn callout_handler() -> Option<CalloutHandler> {
    CALLOUT_HANDLER.with(|h| h.get())
}

/// Answers a step to the host: from `routeiq_tool_call` (`paused_call` false) the
/// status to return; from a response (`paused_call` true) the call is finished
/// with `routeiq_tool_finish` unless the step waits.
pub fn answer(step: Step, paused_call: bool) -> u32 {
    let status = match step {
        Step::Wait => return TOOL_PAUSED,
        Step::Done(Ok(out)) => {
            set_output(out.as_bytes());
            TOOL_OK
        }
        Step::Done(Err(message)) => {
            set_output(message.as_bytes());
            TOOL_ERROR
        }
    };
    if paused_call {
        unsafe { sys::routeiq_tool_finish(status) };
    }
    status
}

/// Defines `routeiq_tool_call` around `start: fn(&[u8]) -> Step` and routes
/// callout responses to `on_response: fn(CallResponse) -> Step`.
#[macro_export]
macro_rules! tool_with_callouts {
    ($start:expr, $on_response:expr) => {
        fn __routeiq_tool_response(_context_id: u32, call_id: u32, num_headers: usize, body_size: usize, _trailers: usize) {
            let handler: fn($crate::tool::CallResponse) -> $crate::tool::Step = $on_response;
            let response = $crate::tool::CallResponse::current(call_id, num_headers, body_size);
            $crate::tool::answer(handler(response), true);
        }

        #[no_mangle]
        pub extern "C" fn routeiq_tool_call(input: *mut u8, len: usize) -> u32 {
            $crate::tool::set_callout_handler(__routeiq_tool_response);
            let bytes = unsafe { $crate::memory::take_host_buffer(input, len) };
            let start: fn(&[u8]) -> $crate::tool::Step = $start;
            $crate::tool::answer(start(&bytes), false)
        }
    };
}

/// Hands the call's answer to the host (a later call replaces an earlier one).
/// Returns the host status (0: taken; 2 BAD_ARGUMENT: larger than the host accepts).
pub fn set_output(data: &[u8]) -> u32 {
    unsafe { sys::routeiq_tool_set_output(data.as_ptr(), data.len()) }
}

/// Defines the exported `routeiq_tool_call` around a handler
/// `fn(&[u8]) -> Result<String, String>`: `Ok(json)` is the result, `Err(message)`
/// a tool error. Use it once per tool crate.
#[macro_export]
macro_rules! tool {
    ($handler:expr) => {
        #[no_mangle]
        pub extern "C" fn routeiq_tool_call(input: *mut u8, len: usize) -> u32 {
            let bytes = unsafe { $crate::memory::take_host_buffer(input, len) };
            let handler: fn(&[u8]) -> Result<String, String> = $handler;
            match handler(&bytes) {
                Ok(out) => {
                    $crate::tool::set_output(out.as_bytes());
                    $crate::tool::TOOL_OK
                }
                Err(message) => {
                    $crate::tool::set_output(message.as_bytes());
                    $crate::tool::TOOL_ERROR
                }
            }
        }
    };
}

/// The tool's configuration (`mcp.tools[].config`, the plugin configuration
/// buffer; a tool gets no `proxy_on_configure`, so it reads the whole buffer).
pub fn config() -> Vec<u8> {
    crate::hostcalls::get_buffer_bytes(crate::types::BufferType::PluginConfiguration, 0, i32::MAX as usize).unwrap_or_default()
}
