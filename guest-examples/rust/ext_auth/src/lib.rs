//! # ext_auth — external authorization through an HTTP callout
//!
//! Behaviour (per HTTP request):
//! * `on_request_headers`: removes any client-supplied `x-auth-user`
//!   request header (it is only ever set from the auth service's answer),
//!   then dispatches
//!   `proxy_http_call(upstream, headers, body="", trailers=none, timeout_ms)`
//!   with headers, in this order: `:method: GET`, `:path: <path>`,
//!   `:authority: <upstream>`, `:scheme: http`,
//!   `<header>: <value of that request header, or "">`,
//!   `x-original-path: <request :path, or "">`; returns `Pause`.
//!   * If the host refuses the call (non-OK status): WARN
//!     `ext_auth: callout refused (status <s>)` and local response `503`,
//!     details `auth_service_unavailable`, `content-type: application/json`,
//!     body `{"error":{"message":"auth service unavailable","type":"auth_error"}}`;
//!     returns `Pause`.
//! * `on_http_call_response(token, num_headers, body_size, _)`:
//!   * Always logs INFO `ext_auth: status=<:status> body_bytes=<n>`
//!     (`status=none` when the call produced no headers; `n` = bytes read
//!     with `proxy_get_buffer_bytes(4, 0, body_size)`, 0 if unreadable).
//!   * `num_headers == 0` (call failed or timed out): WARN
//!     `ext_auth: auth call failed` and nothing else. The stream stays
//!     paused and the host applies the plugin's `fail_open` setting.
//!   * `:status` == `200`: if the auth response has `x-auth-user`, the
//!     request gets `x-auth-user: <value>`; then
//!     `proxy_continue_stream(HTTP_REQUEST)` resumes the request.
//!   * Any other status: local response `401`, details `unauthorized`,
//!     headers `content-type: application/json`, `www-authenticate: Bearer`,
//!     body `{"error":{"message":"unauthorized","type":"authentication_error"}}`.
//!   * Responses with a token this request did not dispatch are ignored.
//!
//! Plugin configuration (JSON object):
//! `{"upstream": "127.0.0.1:9100", "path": "/check", "timeout_ms": 500, "header": "authorization", "paths": "/v1/,/admin"}`.
//! `paths` (comma-separated prefixes, default empty = every request) limits the check to
//! requests whose `:path` starts with one of them; other requests pass unchecked.
//! `upstream` is required: without it (or with an empty one) `on_configure`
//! logs ERROR `ext_auth: "upstream" is required in the plugin configuration`
//! and returns `false`. Defaults: `path="/check"`, `timeout_ms=500`
//! (0..=4294967295), `header="authorization"` (lower-cased; empty =
//! default). Unknown keys and wrong types are ignored.
//!
//! Host calls: `proxy_get_buffer_bytes(7, 4)`, `proxy_get_header_map_value(0, 6)`,
//! `proxy_add_header_map_value`, `proxy_remove_header_map_value`,
//! `proxy_http_call`, `proxy_continue_stream`, `proxy_send_local_response`,
//! `proxy_log`.

use routeiq_guest::config_json as json;

use routeiq_guest::hostcalls;
use routeiq_guest::{Action, BufferType, HttpContext, MapType, RootContext, StreamType};
use std::rc::Rc;

const UNAVAILABLE_BODY: &str = r#"{"error":{"message":"auth service unavailable","type":"auth_error"}}"#;
const UNAUTHORIZED_BODY: &str = r#"{"error":{"message":"unauthorized","type":"authentication_error"}}"#;

#[derive(Clone, Debug)]
struct Config {
    upstream: String,
    path: String,
    timeout_ms: u32,
    header: String,
    /// Only requests whose path starts with one of these are checked (empty: all).
    paths: Vec<String>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            upstream: String::new(),
            path: "/check".to_string(),
            timeout_ms: 500,
            header: "authorization".to_string(),
            paths: Vec::new(),
        }
    }
}

impl Config {
    fn parse(bytes: &[u8]) -> Config {
        let mut c = Config::default();
        for (key, value) in json::object_members(bytes) {
            match (key.as_str(), value) {
                ("upstream", json::Value::Str(s)) => c.upstream = s,
                ("path", json::Value::Str(s)) => c.path = s,
                ("timeout_ms", json::Value::Int(n)) if (0..=u32::MAX as i64).contains(&n) => c.timeout_ms = n as u32,
                ("header", json::Value::Str(s)) if !s.is_empty() => c.header = s.to_ascii_lowercase(),
                ("paths", json::Value::Str(s)) => {
                    c.paths = s.split(',').map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect()
                }
                _ => {}
            }
        }
        c
    }
}

struct AuthRoot {
    config: Rc<Config>,
}

impl RootContext for AuthRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = hostcalls::get_plugin_configuration().unwrap_or_default();
        let config = Config::parse(&bytes);
        if config.upstream.is_empty() {
            routeiq_guest::log_error("ext_auth: \"upstream\" is required in the plugin configuration");
            return false;
        }
        routeiq_guest::log_debug(&format!(
            "ext_auth: upstream={} path={} timeout_ms={} header={}",
            config.upstream, config.path, config.timeout_ms, config.header
        ));
        self.config = Rc::new(config);
        true
    }

    fn create_http_context(&mut self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(ExtAuth {
            config: self.config.clone(),
            token: None,
        }))
    }
}

struct ExtAuth {
    config: Rc<Config>,
    /// Token of the outstanding auth call.
    token: Option<u32>,
}

impl ExtAuth {
    fn unauthorized() {
        let _ = hostcalls::send_local_response(
            401,
            "unauthorized",
            UNAUTHORIZED_BODY.as_bytes(),
            &[("content-type", "application/json"), ("www-authenticate", "Bearer")],
            hostcalls::NO_GRPC_STATUS,
        );
    }
}

impl HttpContext for ExtAuth {
    fn on_http_request_headers(&mut self, _num_headers: usize, _eos: bool) -> Action {
        let _ = hostcalls::remove_http_request_header("x-auth-user");
        let original_path = hostcalls::get_http_request_header(":path").unwrap_or_default();
        let c = &self.config;
        if !c.paths.is_empty() && !c.paths.iter().any(|p| original_path.starts_with(p.as_str())) {
            return Action::Continue;
        }
        let credential = hostcalls::get_http_request_header(&c.header).unwrap_or_default();
        let headers = [
            (":method", "GET"),
            (":path", c.path.as_str()),
            (":authority", c.upstream.as_str()),
            (":scheme", "http"),
            (c.header.as_str(), credential.as_str()),
            ("x-original-path", original_path.as_str()),
        ];
        match hostcalls::http_call(&c.upstream, &headers, b"", &[], c.timeout_ms) {
            Ok(token) => {
                self.token = Some(token);
                Action::Pause
            }
            Err(s) => {
                routeiq_guest::log_warn(&format!("ext_auth: callout refused (status {})", s.code()));
                let _ = hostcalls::send_local_response(
                    503,
                    "auth_service_unavailable",
                    UNAVAILABLE_BODY.as_bytes(),
                    &[("content-type", "application/json")],
                    hostcalls::NO_GRPC_STATUS,
                );
                Action::Pause
            }
        }
    }

    fn on_http_call_response(&mut self, token: u32, num_headers: usize, body_size: usize, _num_trailers: usize) {
        if self.token != Some(token) {
            routeiq_guest::log_debug(&format!("ext_auth: ignoring response for unknown call {}", token));
            return;
        }
        self.token = None;
        let body_bytes = if body_size > 0 {
            hostcalls::get_buffer_bytes(BufferType::HttpCallResponseBody, 0, body_size)
                .map(|b| b.len())
                .unwrap_or(0)
        } else {
            0
        };
        let status = if num_headers > 0 {
            hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status").ok().and_then(|v| v)
        } else {
            None
        };
        routeiq_guest::log_info(&format!(
            "ext_auth: status={} body_bytes={}",
            status.as_deref().unwrap_or("none"),
            body_bytes
        ));
        if num_headers == 0 {
            routeiq_guest::log_warn("ext_auth: auth call failed");
            return;
        }
        if status.as_deref().map(str::trim) == Some("200") {
            if let Ok(Some(user)) = hostcalls::get_map_value(MapType::HttpCallResponseHeaders, "x-auth-user") {
                let _ = hostcalls::add_http_request_header("x-auth-user", &user);
            }
            if let Err(s) = hostcalls::continue_stream(StreamType::HttpRequest) {
                routeiq_guest::log_warn(&format!("ext_auth: continue_stream failed (status {})", s.code()));
            }
        } else {
            ExtAuth::unauthorized();
        }
    }
}

routeiq_guest::manifest!(
    r#"{"name": "ext_auth", "version": "0.1.0", "description": "External authorization: asks an HTTP auth service before letting a request through", "capabilities": ["http_callout"]}"#
);

routeiq_guest::main! {
    routeiq_guest::set_root_context(|_context_id| -> Box<dyn RootContext> {
        Box::new(AuthRoot { config: Rc::new(Config::default()) })
    });
}
