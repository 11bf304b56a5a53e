//! # hostcall_probe — host-call conformance probe (for the host test suite)
//!
//! Driven by the request header `x-probe: <scenario>`. Requests without
//! `x-probe` (or with an unknown scenario, which is also logged at WARN as
//! `probe: unknown scenario <name>`) pass through unchanged.
//!
//! Unless noted, a scenario answers in `on_request_headers` with
//! `proxy_send_local_response(200, details="probe", headers=[content-type:
//! text/plain], body)` and returns `Pause`. The body is `key=value` lines,
//! each terminated by `\n`, in the order listed. `<s>` is a raw
//! `proxy_status_t` number, `<e>` a raw WASI errno number. A failed call is
//! reported as `key!status=<s>` (proxy) / `key!errno=<e>` (WASI).
//!
//! | scenario | output |
//! |---|---|
//! | `properties` | one line per property path (`\0`-joined segments): `request.path`, `request.method`, `request.scheme`, `request.host`, `plugin_name`, `plugin_root_id`, `request.headers.x-probe`, `no.such` -> `<dotted.path>=<value>` or `<dotted.path>!status=<s>` |
//! | `headers_read` | `count=<n>` (pairs from get_header_map_pairs(0)), `size_status=<s>`, `size=<n>` (only if size_status=0), `value=<x-probe-in>` or `value!status=<s>`, `missing_status=<s>` (header `x-probe-missing`), `bad_map_status=<s>` (get_header_map_value on map 99) |
//! | `headers_write` | no local answer. Request: add `x-added: a1`, replace `x-replace` with `new`, remove `x-remove`, `Continue`. Response: set_header_map_pairs(current + `x-set-pairs: yes`), then add `x-probe-seen: response` and `x-probe-write-status: add=<s>,replace=<s>,remove=<s>,set_pairs=<s>` |
//! | `body_rewrite` | no local answer. Request body: `Pause` until end_of_stream, then read it, prepend `PREFIX:` (set_buffer_bytes start=0,size=0), append `:SUFFIX` (start=len+7,size=0), `Continue`. Response headers: add `x-req-body-seen: <original body bytes>`. Response body: each chunk upper-cased (ASCII) in place via set_buffer_bytes(1, 0, chunk_len) |
//! | `config` | `plugin_config=<text>` (read in on_configure), `vm_config=<text>` (read in on_vm_start), `bad_buffer_status=<s>` (get_buffer_bytes on buffer 99) |
//! | `log` | logs `probe-log-<L>` at levels 0..5; lines `bad_level_status=<s>` (proxy_log level 77), `log_level=<n>`, `fd_write_errno=<e>` (`probe-stdout` to fd 1), `stderr_errno=<e>` (`probe-stderr` to fd 2), `bad_fd_errno=<e>` (fd 9) |
//! | `time` | `now_ns=<n>`, `wasi_realtime=<n>`, `wasi_monotonic=<n>`, `bad_clock_errno=<e>` (clock 9), `random_errno=<e>`, `random_hex=<32 hex chars>` (only when random_errno=0) |
//! | `environ` | `count=<n>`, `buf_size=<n>` (environ_sizes_get) then `env.<NAME>=<VALUE>` per entry of environ_get |
//! | `local_response` | status 418, details `teapot`, body `short and stout`, headers `x-local: yes`, `content-type: text/plain` |
//! | `continue_stream` | no local answer. Request headers: proxy_continue_stream(0), return `Pause`. Response headers: add `x-continue-status: <s>` and `x-bad-stream-status: <s>` (continue_stream(99)) |
//! | `close_stream` | no local answer. proxy_close_stream(0), log INFO `probe close_stream status=<s>`, return `Pause` |
//! | `effective_context` | `own_status=<s>` (set_effective_context(root id)), `bad_status=<s>` (987654), `restore_status=<s>` (back to this HTTP context, before answering) |
//! | `done` | `done_status=<s>` (proxy_done() during request headers) |
//! | `unimplemented` | `foreign_status=<s>` (proxy_call_foreign_function("nope")), `grpc_status=<s>` (proxy_grpc_call) |
//!
//! Always: `on_log` logs INFO `probe on_log path=<request.path>` (or
//! `probe on_log path=!status=<s>`); `on_done` returns true.
//!
//! Configuration: any bytes; only echoed by the `config` scenario. The VM
//! configuration is likewise only echoed.

use routeiq_guest::hostcalls;
use routeiq_guest::sys;
use routeiq_guest::types::{clock, fd};
use routeiq_guest::wasi;
use routeiq_guest::{Action, BufferType, HttpContext, MapType, RootContext, Status, StreamType};
use std::fmt::Write;
use std::ptr::null_mut;
use std::rc::Rc;

fn code<T>(r: &Result<T, Status>) -> u32 {
    match r {
        Ok(_) => 0,
        Err(s) => s.code(),
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Collects `key=value` lines.
#[derive(Default)]
struct Lines(String);

impl Lines {
    fn kv(&mut self, key: &str, value: &str) {
        let _ = writeln!(self.0, "{}={}", key, value);
    }
    fn num(&mut self, key: &str, value: u64) {
        let _ = writeln!(self.0, "{}={}", key, value);
    }
    fn status(&mut self, key: &str, s: u32) {
        let _ = writeln!(self.0, "{}!status={}", key, s);
    }
    fn errno(&mut self, key: &str, e: u32) {
        let _ = writeln!(self.0, "{}!errno={}", key, e);
    }
    fn bytes_result(&mut self, key: &str, r: &Result<Vec<u8>, Status>) {
        match r {
            Ok(v) => self.kv(key, &text(v)),
            Err(s) => self.status(key, s.code()),
        }
    }
}

fn respond(lines: Lines) -> Action {
    let _ = hostcalls::send_local_response(
        200,
        "probe",
        lines.0.as_bytes(),
        &[("content-type", "text/plain")],
        hostcalls::NO_GRPC_STATUS,
    );
    Action::Pause
}

struct RootState {
    root_id: u32,
    plugin_config: Result<Vec<u8>, Status>,
    vm_config: Result<Vec<u8>, Status>,
}

struct ProbeRoot {
    state: Rc<RootState>,
}

impl RootContext for ProbeRoot {
    fn on_vm_start(&mut self, size: usize) -> bool {
        let vm = hostcalls::get_buffer_bytes(BufferType::VmConfiguration, 0, size);
        let old = &self.state;
        self.state = Rc::new(RootState {
            root_id: old.root_id,
            plugin_config: old.plugin_config.clone(),
            vm_config: vm,
        });
        true
    }

    fn on_configure(&mut self, size: usize) -> bool {
        let pc = hostcalls::get_buffer_bytes(BufferType::PluginConfiguration, 0, size);
        let old = &self.state;
        self.state = Rc::new(RootState {
            root_id: old.root_id,
            plugin_config: pc,
            vm_config: old.vm_config.clone(),
        });
        true
    }

    fn create_http_context(&mut self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Probe {
            context_id,
            root: self.state.clone(),
            scenario: String::new(),
            req_body_seen: 0,
            continue_status: None,
        }))
    }
}

struct Probe {
    context_id: u32,
    root: Rc<RootState>,
    scenario: String,
    req_body_seen: usize,
    continue_status: Option<u32>,
}

impl Probe {
    fn properties(&self) -> Action {
        let mut l = Lines::default();
        let paths: [(&str, &[&str]); 8] = [
            ("request.path", &["request", "path"]),
            ("request.method", &["request", "method"]),
            ("request.scheme", &["request", "scheme"]),
            ("request.host", &["request", "host"]),
            ("plugin_name", &["plugin_name"]),
            ("plugin_root_id", &["plugin_root_id"]),
            ("request.headers.x-probe", &["request", "headers", "x-probe"]),
            ("no.such", &["no", "such"]),
        ];
        for (name, path) in paths.iter() {
            l.bytes_result(name, &hostcalls::get_property(path));
        }
        respond(l)
    }

    fn headers_read(&self) -> Action {
        let mut l = Lines::default();
        match hostcalls::get_map_bytes(MapType::HttpRequestHeaders) {
            Ok(pairs) => l.num("count", pairs.len() as u64),
            Err(s) => l.status("count", s.code()),
        }
        let size = hostcalls::get_map_size(MapType::HttpRequestHeaders);
        l.num("size_status", code(&size) as u64);
        if let Ok(n) = size {
            l.num("size", n as u64);
        }
        l.bytes_result(
            "value",
            &hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, b"x-probe-in"),
        );
        let missing = hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, b"x-probe-missing");
        l.num("missing_status", code(&missing) as u64);
        let key = b"x-probe";
        let mut data: *mut u8 = null_mut();
        let mut len: usize = 0;
        let bad = unsafe { sys::proxy_get_header_map_value(99, key.as_ptr(), key.len(), &mut data, &mut len) };
        if bad == 0 {
            drop(unsafe { routeiq_guest::memory::take_host_buffer(data, len) });
        }
        l.num("bad_map_status", bad as u64);
        respond(l)
    }

    fn config(&self) -> Action {
        let mut l = Lines::default();
        l.bytes_result("plugin_config", &self.root.plugin_config);
        l.bytes_result("vm_config", &self.root.vm_config);
        let bad = hostcalls::get_buffer_bytes_raw(99, 0, 1);
        l.num("bad_buffer_status", code(&bad) as u64);
        respond(l)
    }

    fn log(&self) -> Action {
        let mut l = Lines::default();
        for level in 0u32..=5 {
            let msg = format!("probe-log-{}", level);
            unsafe { sys::proxy_log(level, msg.as_ptr(), msg.len()) };
        }
        let msg = "probe-log-77";
        let bad = unsafe { sys::proxy_log(77, msg.as_ptr(), msg.len()) };
        l.num("bad_level_status", bad as u64);
        match hostcalls::get_log_level_raw() {
            Ok(v) => l.num("log_level", v as u64),
            Err(s) => l.status("log_level", s.code()),
        }
        let e1 = wasi::fd_write(fd::STDOUT, b"probe-stdout").err().unwrap_or(0);
        l.num("fd_write_errno", e1 as u64);
        let e2 = wasi::fd_write(fd::STDERR, b"probe-stderr").err().unwrap_or(0);
        l.num("stderr_errno", e2 as u64);
        let e9 = wasi::fd_write(9, b"probe-bad-fd").err().unwrap_or(0);
        l.num("bad_fd_errno", e9 as u64);
        respond(l)
    }

    fn time(&self) -> Action {
        let mut l = Lines::default();
        match hostcalls::get_current_time_nanoseconds() {
            Ok(t) => l.num("now_ns", t),
            Err(s) => l.status("now_ns", s.code()),
        }
        match wasi::clock_time_get(clock::REALTIME) {
            Ok(t) => l.num("wasi_realtime", t),
            Err(e) => l.errno("wasi_realtime", e),
        }
        match wasi::clock_time_get(clock::MONOTONIC) {
            Ok(t) => l.num("wasi_monotonic", t),
            Err(e) => l.errno("wasi_monotonic", e),
        }
        let bad = wasi::clock_time_get(9).err().unwrap_or(0);
        l.num("bad_clock_errno", bad as u64);
        let mut buf = [0u8; 16];
        let r = wasi::random_get(&mut buf).err().unwrap_or(0);
        l.num("random_errno", r as u64);
        if r == 0 {
            let mut hex = String::with_capacity(32);
            for b in buf.iter() {
                let _ = write!(hex, "{:02x}", b);
            }
            l.kv("random_hex", &hex);
        }
        respond(l)
    }

    fn environ(&self) -> Action {
        let mut l = Lines::default();
        match wasi::environ_sizes_get() {
            Ok((count, size)) => {
                l.num("count", count as u64);
                l.num("buf_size", size as u64);
            }
            Err(e) => l.errno("environ_sizes", e),
        }
        match wasi::environ() {
            Ok(vars) => {
                for (k, v) in vars {
                    l.kv(&format!("env.{}", k), &v);
                }
            }
            Err(e) => l.errno("environ_get", e),
        }
        respond(l)
    }

    fn effective_context(&self) -> Action {
        let mut l = Lines::default();
        let own = unsafe { sys::proxy_set_effective_context(self.root.root_id) };
        let bad = unsafe { sys::proxy_set_effective_context(987654) };
        let restore = unsafe { sys::proxy_set_effective_context(self.context_id) };
        l.num("own_status", own as u64);
        l.num("bad_status", bad as u64);
        l.num("restore_status", restore as u64);
        respond(l)
    }

    fn done(&self) -> Action {
        let mut l = Lines::default();
        let s = unsafe { sys::proxy_done() };
        l.num("done_status", s as u64);
        respond(l)
    }

    fn unimplemented(&self) -> Action {
        let mut l = Lines::default();
        let name = "nope";
        let args: &[u8] = b"";
        let mut data: *mut u8 = null_mut();
        let mut len: usize = 0;
        let foreign = unsafe {
            sys::proxy_call_foreign_function(name.as_ptr(), name.len(), args.as_ptr(), 0, &mut data, &mut len)
        };
        if foreign == 0 {
            drop(unsafe { routeiq_guest::memory::take_host_buffer(data, len) });
        }
        l.num("foreign_status", foreign as u64);
        let (up, svc, method) = ("nope", "probe.Service", "Call");
        let mut call_id: u32 = 0;
        let grpc = unsafe {
            sys::proxy_grpc_call(
                up.as_ptr(),
                up.len(),
                svc.as_ptr(),
                svc.len(),
                method.as_ptr(),
                method.len(),
                args.as_ptr(),
                0,
                args.as_ptr(),
                0,
                1000,
                &mut call_id,
            )
        };
        l.num("grpc_status", grpc as u64);
        respond(l)
    }
}

impl HttpContext for Probe {
    fn on_http_request_headers(&mut self, _num_headers: usize, _eos: bool) -> Action {
        self.scenario = match hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, b"x-probe") {
            Ok(v) => text(&v),
            Err(_) => return Action::Continue,
        };
        match self.scenario.as_str() {
            "properties" => self.properties(),
            "headers_read" => self.headers_read(),
            "headers_write" => {
                let a = code(&hostcalls::add_http_request_header("x-added", "a1"));
                let r = code(&hostcalls::set_http_request_header("x-replace", "new"));
                let d = code(&hostcalls::remove_http_request_header("x-remove"));
                self.scenario = format!("headers_write:add={},replace={},remove={}", a, r, d);
                Action::Continue
            }
            "body_rewrite" => Action::Continue,
            "config" => self.config(),
            "log" => self.log(),
            "time" => self.time(),
            "environ" => self.environ(),
            "local_response" => {
                let _ = hostcalls::send_local_response(
                    418,
                    "teapot",
                    b"short and stout",
                    &[("x-local", "yes"), ("content-type", "text/plain")],
                    hostcalls::NO_GRPC_STATUS,
                );
                Action::Pause
            }
            "continue_stream" => {
                self.continue_status = Some(unsafe { sys::proxy_continue_stream(StreamType::HttpRequest as u32) });
                Action::Pause
            }
            "close_stream" => {
                let s = unsafe { sys::proxy_close_stream(StreamType::HttpRequest as u32) };
                routeiq_guest::log_info(&format!("probe close_stream status={}", s));
                Action::Pause
            }
            "effective_context" => self.effective_context(),
            "done" => self.done(),
            "unimplemented" => self.unimplemented(),
            other => {
                routeiq_guest::log_warn(&format!("probe: unknown scenario {}", other));
                Action::Continue
            }
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.scenario != "body_rewrite" {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let original = hostcalls::get_buffer_bytes(BufferType::HttpRequestBody, 0, body_size).unwrap_or_default();
        self.req_body_seen = original.len();
        let _ = hostcalls::set_buffer_bytes(BufferType::HttpRequestBody, 0, 0, b"PREFIX:");
        let _ = hostcalls::set_buffer_bytes(BufferType::HttpRequestBody, original.len() + 7, 0, b":SUFFIX");
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _eos: bool) -> Action {
        if self.scenario.starts_with("headers_write") {
            let mut pairs = hostcalls::get_map_bytes(MapType::HttpResponseHeaders).unwrap_or_default();
            pairs.push((b"x-set-pairs".to_vec(), b"yes".to_vec()));
            let s = code(&hostcalls::set_map(MapType::HttpResponseHeaders, &pairs));
            let _ = hostcalls::add_http_response_header("x-probe-seen", "response");
            let req = self.scenario.trim_start_matches("headers_write:").to_string();
            let _ = hostcalls::add_http_response_header("x-probe-write-status", &format!("{},set_pairs={}", req, s));
        } else if self.scenario == "body_rewrite" {
            let _ = hostcalls::add_http_response_header("x-req-body-seen", &self.req_body_seen.to_string());
        } else if self.scenario == "continue_stream" {
            let s = self.continue_status.unwrap_or(u32::MAX);
            let bad = unsafe { sys::proxy_continue_stream(99) };
            let _ = hostcalls::add_http_response_header("x-continue-status", &s.to_string());
            let _ = hostcalls::add_http_response_header("x-bad-stream-status", &bad.to_string());
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, _end_of_stream: bool) -> Action {
        if self.scenario == "body_rewrite" && body_size > 0 {
            if let Ok(chunk) = hostcalls::get_buffer_bytes(BufferType::HttpResponseBody, 0, body_size) {
                let upper = chunk.to_ascii_uppercase();
                let _ = hostcalls::set_buffer_bytes(BufferType::HttpResponseBody, 0, chunk.len(), &upper);
            }
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        let msg = match hostcalls::get_property(&["request", "path"]) {
            Ok(v) => format!("probe on_log path={}", text(&v)),
            Err(s) => format!("probe on_log path=!status={}", s.code()),
        };
        routeiq_guest::log_info(&msg);
    }

    fn on_done(&mut self) -> bool {
        true
    }
}

routeiq_guest::main! {
    routeiq_guest::set_root_context(|root_id| -> Box<dyn RootContext> {
        Box::new(ProbeRoot {
            state: Rc::new(RootState {
                root_id,
                plugin_config: Err(Status::NotFound),
                vm_config: Err(Status::NotFound),
            }),
        })
    });
}
