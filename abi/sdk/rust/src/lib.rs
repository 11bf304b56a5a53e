//! # routeiq_guest — a dependency-free proxy-wasm (ABI v0.2.1) guest SDK
//!
//! Build target: `wasm32-unknown-unknown`, `-C panic=abort`, rustc >= 1.63.
//!
//! Layout:
//! * [`types`]      — ABI enums with the spec's numeric values.
//! * [`sys`]        — raw `extern "C"` imports (`env.proxy_*`, WASI subset).
//! * [`hostcalls`]  — one safe wrapper per host call + map (de)serialization.
//! * [`wasi`]       — safe WASI wrappers (fd_write, clocks, random, environ).
//! * [`traits`]     — [`RootContext`] and [`HttpContext`].
//! * [`dispatcher`] — context registry and all exported `proxy_on_*`.
//! * [`memory`]     — `proxy_on_memory_allocate` and buffer ownership.
//! * [`cbor`]       — dependency-free CBOR (RFC 8949) encoder/decoder.
//! * [`tool`]       — MCP tools: [`tool!`] exports `routeiq_tool_call` (docs/mcp.md).
//! * [`llm`]        — RouteIQ LLM extension: typed chat request/response
//!   (`routeiq_get_llm_request`, `routeiq_set_llm_messages`,
//!   `routeiq_set_llm_model`, `routeiq_get_llm_response`).
//!
//! ## Registration
//!
//! A filter registers its root-context factory from the module's exported
//! `_initialize` function, which the host calls once right after
//! instantiation (before any `proxy_on_*` callback):
//!
//! ```ignore
//! routeiq_guest::main! {
//!     routeiq_guest::set_root_context(|context_id| -> Box<dyn routeiq_guest::RootContext> {
//!         Box::new(MyRoot::new(context_id))
//!     });
//! }
//! ```
//!
//! If `_initialize` was never called, root contexts are placeholders whose
//! `on_vm_start`/`on_configure` log at CRITICAL and return `false`.
//!
//! ## Manifest
//!
//! [`manifest!`] embeds the plugin manifest JSON (name, version,
//! description, capabilities) as the wasm custom section `routeiq.manifest`.
//!
//! ## HTTP callouts
//!
//! [`hostcalls::http_call`] remembers which context made the call; the
//! response (`proxy_on_http_call_response(root_id, token, ..)`) is routed by
//! token to that context's `on_http_call_response` (see [`dispatcher`]).
//!
//! ## Exports provided by this crate
//!
//! `proxy_abi_version_0_2_1`, `proxy_on_memory_allocate`,
//! `proxy_on_context_create`, `proxy_on_vm_start`, `proxy_on_configure`,
//! `proxy_on_tick`, `proxy_on_queue_ready`, `proxy_on_http_call_response`,
//! `proxy_on_request_headers/_body/_trailers`,
//! `proxy_on_response_headers/_body/_trailers`, `proxy_on_done`,
//! `proxy_on_log`, `proxy_on_delete`.

pub mod cbor;
pub mod config_json;
pub mod dispatcher;
pub mod hostcalls;
pub mod llm;
pub mod memory;
pub mod sys;
pub mod tool;
pub mod traits;
pub mod types;
pub mod wasi;

pub use dispatcher::{current_context_id, register_http_call, set_root_context};
pub use traits::{HttpContext, RootContext};
pub use types::{Action, BufferType, LogLevel, MapType, MetricType, PeerType, Status, StreamType};

/// ABI marker export; never called.
#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

/// Defines the module's exported `_initialize` with the given body. Use it
/// exactly once per filter crate, to call [`set_root_context`].
#[macro_export]
macro_rules! main {
    ($($body:tt)*) => {
        #[no_mangle]
        pub extern "C" fn _initialize() {
            $($body)*
        }
    };
}

/// Name of the wasm custom section written by [`manifest!`].
pub const MANIFEST_SECTION: &str = "routeiq.manifest";

/// Embeds the plugin manifest: emits a wasm custom section named
/// `routeiq.manifest` whose content is exactly the bytes of the given
/// string (a literal, or any `&'static str` constant expression such as
/// `concat!(..)`). Use it at most once per filter crate (a second use is a
/// duplicate-definition error). Format:
///
/// ```ignore
/// routeiq_guest::manifest!(r#"{"name": "my_filter", "version": "0.1.0",
///   "description": "...", "capabilities": ["shared_kv", "metrics"]}"#);
/// ```
///
/// Capabilities: `http_callout`, `shared_kv`, `shared_queue`, `metrics`,
/// `timers`, `request_body`, `response_body`, `llm_request`. The JSON is
/// not validated at compile time; the host parses it when loading.
#[macro_export]
macro_rules! manifest {
    ($json:expr) => {
        #[link_section = "routeiq.manifest"]
        #[used]
        static ROUTEIQ_MANIFEST: [u8; $json.len()] = {
            const BYTES: &[u8] = $json.as_bytes();
            let mut out = [0u8; BYTES.len()];
            let mut i = 0;
            while i < BYTES.len() {
                out[i] = BYTES[i];
                i += 1;
            }
            out
        };
    };
}

/// Logs `message` at `level`, ignoring the host status.
pub fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}

pub fn log_trace(message: &str) {
    log(LogLevel::Trace, message)
}

pub fn log_debug(message: &str) {
    log(LogLevel::Debug, message)
}

pub fn log_info(message: &str) {
    log(LogLevel::Info, message)
}

pub fn log_warn(message: &str) {
    log(LogLevel::Warn, message)
}

pub fn log_error(message: &str) {
    log(LogLevel::Error, message)
}

pub fn log_critical(message: &str) {
    log(LogLevel::Critical, message)
}
