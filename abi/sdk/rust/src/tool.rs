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

use crate::sys;

/// `routeiq_tool_call` status: the output is the tool's JSON result.
pub const TOOL_OK: u32 = 0;
/// `routeiq_tool_call` status: the output is an error message (MCP `isError`).
pub const TOOL_ERROR: u32 = 1;

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
