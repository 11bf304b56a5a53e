//! # hostile_headers — a filter with no capabilities that attacks the header maps
//!
//! Test guest for the header-map rules (docs/plugin-host.md). Driven by request
//! headers, only when `x-attack` is present:
//! * `x-attack-name` + `x-attack-value`: `proxy_replace_header_map_value` on the
//!   request headers (e.g. `:path` = `@127.0.0.1:1/stolen`). The value is
//!   percent-decoded first, so a test can send CR, LF or NUL through it.
//! * `x-attack-remove`: removes that request header.
//! * `x-attack-add: N`: adds `x-flood-<i>: 0123456789abcdef` N times, stopping
//!   at the first refusal.
//! * `x-attack-set-map: N`: replaces the request map with its pairs plus N
//!   extra ones in one `proxy_set_header_map_pairs`.
//! * `x-attack-local: 1`: sends a local response (status 299) before going on.
//! * `x-attack-status: V`: replaces the response `:status` with V.
//! * `x-attack-trap: 1`: after everything above, traps (`unreachable`).
//! The statuses come back in the response header `x-attack-result`
//! (`set=S;remove=S;added=N;add=S;map=S;status=S`, S = proxy-wasm status or `-`).

use routeiq_guest::hostcalls;
use routeiq_guest::{Action, HttpContext, MapType, RootContext};

fn header(name: &str) -> Option<String> {
    hostcalls::get_http_request_header(name)
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn code<T>(r: &Result<T, routeiq_guest::Status>) -> String {
    match r {
        Ok(_) => "0".to_string(),
        Err(s) => s.code().to_string(),
    }
}

struct Root;

impl RootContext for Root {
    fn create_http_context(&mut self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Attack { result: String::new(), status: None, trap: false }))
    }
}

struct Attack {
    result: String,
    status: Option<String>,
    trap: bool,
}

impl HttpContext for Attack {
    fn on_http_request_headers(&mut self, _num_headers: usize, _eos: bool) -> Action {
        if header("x-attack").is_none() {
            return Action::Continue;
        }
        let mut set = "-".to_string();
        if let (Some(name), Some(value)) = (header("x-attack-name"), header("x-attack-value")) {
            set = code(&hostcalls::replace_map_value_bytes(MapType::HttpRequestHeaders, name.as_bytes(), &percent_decode(&value)));
        }
        let mut remove = "-".to_string();
        if let Some(name) = header("x-attack-remove") {
            remove = code(&hostcalls::remove_map_value(MapType::HttpRequestHeaders, &name));
        }
        let mut added = 0u32;
        let mut add = "-".to_string();
        if let Some(n) = header("x-attack-add").and_then(|v| v.parse::<u32>().ok()) {
            add = "0".to_string();
            for i in 0..n {
                let r = hostcalls::add_map_value(MapType::HttpRequestHeaders, &format!("x-flood-{}", i), "0123456789abcdef");
                if r.is_err() {
                    add = code(&r);
                    break;
                }
                added += 1;
            }
        }
        let mut map = "-".to_string();
        if let Some(n) = header("x-attack-set-map").and_then(|v| v.parse::<u32>().ok()) {
            let mut pairs = hostcalls::get_map_bytes(MapType::HttpRequestHeaders).unwrap_or_default();
            for i in 0..n {
                pairs.push((format!("x-bulk-{}", i).into_bytes(), b"v".to_vec()));
            }
            map = code(&hostcalls::set_map(MapType::HttpRequestHeaders, &pairs));
        }
        self.result = format!("set={};remove={};added={};add={};map={}", set, remove, added, add, map);
        self.status = header("x-attack-status");
        self.trap = header("x-attack-trap").is_some();
        if header("x-attack-local").is_some() {
            let _ = hostcalls::send_local_response(299, "hostile", b"local from a trapping plugin", &[("x-local", "1")], hostcalls::NO_GRPC_STATUS);
            if !self.trap {
                return Action::Pause;
            }
        }
        if self.trap {
            core::arch::wasm32::unreachable();
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _eos: bool) -> Action {
        if self.result.is_empty() {
            return Action::Continue;
        }
        let mut status = "-".to_string();
        if let Some(v) = &self.status {
            status = code(&hostcalls::replace_map_value(MapType::HttpResponseHeaders, ":status", v));
        }
        let result = format!("{};status={}", self.result, status);
        let _ = hostcalls::add_http_response_header("x-attack-result", &result);
        Action::Continue
    }
}

routeiq_guest::manifest!(r#"{"name": "hostile_headers", "version": "0.1.0", "description": "Attacks the header maps (pseudo-headers, floods) with no capabilities", "capabilities": []}"#);

routeiq_guest::main! {
    routeiq_guest::set_root_context(|_context_id| -> Box<dyn RootContext> { Box::new(Root) });
}
