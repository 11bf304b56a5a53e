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
//! | `props` | every name in header `x-props` (comma-separated dotted names; segments split on the first two dots, or one dotted segment with header `x-props-dotted`) -> `<name>=<hex of value>` or `<name>!status=<s>`. With `x-props-phase: response` no local answer: `Continue`, and the same items joined by `;` in response header `x-props`, read in on_http_response_headers. Either way `on_log` logs INFO `probe props on_log <items joined by ;>` |
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
//! | `kv` | key `probe:k`: `get_missing_status=<s>` (get_shared_data_with_cas: 1 = missing, 0 = present, else the error), `create_cas_nonzero=<0\|1>` (cas returned by that get != 0), `set_status=<s>` (set `x-kv-value` or `v1`, cas 0), `value=<v>` + `cas=<n>` (or `value!status=<s>` + `cas!status=<s>`), `cas_mismatch_status=<s>` (set `wrong` with cas+1), `cas_set_status=<s>` (set `v2` with cas), `value2=<v>`; if header `x-kv-key`: `other=<v>` / `other!status=<s>`; if header `x-kv-put: k=v`: `put_status=<s>` (set k=v, cas 0) |
//! | `kv_big` | `status=<s>`: set_shared_data(key = `x-key-len` (default 10) times `a`, value = `x-value-len` (default 10) times `a`, cas 0) |
//! | `queue` | `register_status=<s>`, `queue_id=<n>` (only if 0), `enqueue_status=<s>` (`m1`, `m2`; first failure), `first=<v>`, `second=<v>` (or `!status=`), `empty_status=<s>` (third dequeue), `resolve_status=<s>`, `resolved_id=<n>` (only if 0; vm id `x-vm-id` or `probe`, name `probe_q`), `missing_status=<s>` (`probe`/`nope`), `bad_queue_status=<s>` (enqueue to 999999) |
//! | `timers` | `ticks=<n>`, `queue_ready_items=<n>` (root-context counters, see below) |
//! | `metrics` | `define_status=<s>`, `metric_id=<n>` (only if 0; counter `probe_requests`), `inc_status=<s>` (+2), `value=<n>`, `negative_status=<s>` (-1), `gauge=<n>` (gauge `probe_gauge` define + record 42 + get; first failure as `gauge!status=<s>`), `hist_status=<s>` (histogram `probe_hist` define + record 5), `bad_type_status=<s>` (define type 9) |
//! | `callout` | proxy_http_call(upstream = `x-upstream` or `127.0.0.1:1`, headers `:method` = `x-method` or `GET`, `:path` = `x-path` or `/`, `:authority` = upstream, `:scheme` = `x-scheme` or `http`; body = `x-call-body` or empty; no trailers; timeout = `x-timeout-ms` or 1000). Refused: answers `call_status=<s>` at once. Else `Pause`; `on_http_call_response` answers `call_status=0`, `num_headers=<n>`, `status=<:status>`, `body=<text>` (buffer 4, `body=` when body_size is 0), `x-echo=<v>`, `get_status=<code>` (proxy_get_status); failures as `key!status=<s>` |
//! | `callout_flood` | `x-count` (default 10) calls to `x-upstream` or `127.0.0.1:1` (GET `/`, timeout `x-timeout-ms` or 1000); answers at once `ok=<n>`, `refused=<n>`, `first_refused_status=<s>` (0 if none); responses are ignored |
//! | `llm` | `status=<s>` (routeiq_get_llm_request), then if 0: `model=<m>`, `messages=<count>`, `first_role=<role>` (empty without messages), `stream=<0\|1>`, `params=<sorted param keys, comma-joined>` (or `decode_error=<text>` if the CBOR does not decode); if header `x-pin-model`: `pin_status=<s>` (routeiq_set_llm_model(value)); if header `x-set-content`: `set_status=<s>` (routeiq_set_llm_messages([{role: user, content: value}])). With header `x-llm-pass` no local answer: `Continue`, and response header `x-probe-llm: <the same lines joined by ';'>` |
//! | `llm_bad_cbor` | routeiq_set_llm_messages with malformed payloads: `garbage_status=<s>` (`ff 00 13`), `truncated_status=<s>` (array of 3 with one map), `wrong_shape_status=<s>` (text `hello`), `deep_status=<s>` (10000 x `0x81`), `huge_len_status=<s>` (text header claiming 2^60 bytes) |
//! | `llm_response` | no local answer. Response headers: add `x-probe-llm-response: status=<s>;deployment=<d>;strategy=<st>` (routeiq_get_llm_response; empty values unless 0). `on_log`: INFO `probe llm_response status=<s> deployment=<d> total_tokens=<n>` (after the `probe on_log path=` line) |
//! | `denied_calls` | one line per gated call with valid arguments: `proxy_http_call`, `proxy_get_shared_data`, `proxy_set_shared_data`, `proxy_register_shared_queue`, `proxy_resolve_shared_queue`, `proxy_enqueue_shared_queue`, `proxy_dequeue_shared_queue`, `proxy_define_metric`, `proxy_increment_metric`, `proxy_record_metric`, `proxy_get_metric`, `proxy_set_tick_period_milliseconds`, `request_body_read`, `response_body_read` = `<s>`; answers at once |
//!
//! Always: `on_log` logs INFO `probe on_log path=<request.path>` (or
//! `probe on_log path=!status=<s>`); `on_done` returns true.
//!
//! Root context: if the plugin configuration contains `"tick_ms":N`,
//! `on_configure` calls `proxy_set_tick_period_milliseconds(N)` and logs INFO
//! `probe tick_ms=<N> status=<s>`. `on_tick` counts ticks; on the first one
//! it registers queue `ticks` and enqueues `tick`. `on_queue_ready(q)`
//! dequeues everything from `q` and adds the count to `queue_ready_items`
//! (except for `probe_q`, which the `queue` scenario drains itself).
//!
//! Configuration: any bytes; only echoed by the `config` scenario (and
//! scanned for `"tick_ms":N`). The VM configuration is only echoed.

use routeiq_guest::hostcalls;
use routeiq_guest::llm;
use routeiq_guest::sys;
use routeiq_guest::types::{clock, fd};
use routeiq_guest::wasi;
use routeiq_guest::{Action, BufferType, HttpContext, MapType, MetricType, RootContext, Status, StreamType};
use std::cell::Cell;
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

/// Mutable state shared by the root context and its HTTP contexts.
#[derive(Default)]
struct Shared {
    /// `on_tick` calls seen by the root context.
    ticks: Cell<u64>,
    /// Items the root context dequeued in `on_queue_ready`.
    queue_ready_items: Cell<u64>,
    /// Id of `probe_q` once the `queue` scenario registered it: the root's
    /// `on_queue_ready` leaves that queue to the scenario.
    probe_q: Cell<Option<u32>>,
}

/// Finds `"tick_ms":N` (whitespace allowed after the colon) in the plugin
/// configuration and returns N.
fn parse_tick_ms(config: &[u8]) -> Option<u32> {
    let needle = b"\"tick_ms\":";
    let at = config.windows(needle.len()).position(|w| w == needle)? + needle.len();
    let rest = &config[at..];
    let start = rest.iter().position(|c| !matches!(c, b' ' | b'\t' | b'\n' | b'\r'))?;
    let digits: Vec<u8> = rest[start..].iter().copied().take_while(|c| c.is_ascii_digit()).collect();
    std::str::from_utf8(&digits).ok()?.parse::<u32>().ok()
}

struct ProbeRoot {
    state: Rc<RootState>,
    shared: Rc<Shared>,
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
        if let Some(ms) = pc.as_ref().ok().and_then(|c| parse_tick_ms(c)) {
            let s = code(&hostcalls::set_tick_period_milliseconds(ms));
            routeiq_guest::log_info(&format!("probe tick_ms={} status={}", ms, s));
        }
        let old = &self.state;
        self.state = Rc::new(RootState {
            root_id: old.root_id,
            plugin_config: pc,
            vm_config: old.vm_config.clone(),
        });
        true
    }

    fn on_tick(&mut self) {
        let n = self.shared.ticks.get() + 1;
        self.shared.ticks.set(n);
        if n == 1 {
            match hostcalls::register_shared_queue("ticks") {
                Ok(id) => {
                    let s = code(&hostcalls::enqueue_shared_queue(id, b"tick"));
                    routeiq_guest::log_info(&format!("probe ticks queue={} enqueue_status={}", id, s));
                }
                Err(s) => routeiq_guest::log_info(&format!("probe ticks register_status={}", s.code())),
            }
        }
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        if self.shared.probe_q.get() == Some(queue_id) {
            return;
        }
        let mut n = 0u64;
        while hostcalls::dequeue_shared_queue(queue_id).is_ok() {
            n += 1;
        }
        self.shared.queue_ready_items.set(self.shared.queue_ready_items.get() + n);
    }

    fn create_http_context(&mut self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Probe {
            context_id,
            root: self.state.clone(),
            shared: self.shared.clone(),
            scenario: String::new(),
            req_body_seen: 0,
            continue_status: None,
            call_token: None,
            llm_header: None,
        }))
    }
}

struct Probe {
    context_id: u32,
    root: Rc<RootState>,
    shared: Rc<Shared>,
    scenario: String,
    req_body_seen: usize,
    continue_status: Option<u32>,
    /// Token of the `callout` scenario's pending HTTP call.
    call_token: Option<u32>,
    /// `llm` with `x-llm-pass`: value of the `x-probe-llm` response header.
    llm_header: Option<String>,
}

fn header(name: &str) -> Option<String> {
    hostcalls::get_http_request_header(name)
}

fn header_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    header(name).and_then(|v| v.trim().parse::<T>().ok()).unwrap_or(default)
}

/// Pseudo-headers of the probe's outgoing HTTP calls.
fn call_headers(upstream: &str, method: &str, path: &str, scheme: &str) -> Vec<(String, String)> {
    vec![
        (":method".to_string(), method.to_string()),
        (":path".to_string(), path.to_string()),
        (":authority".to_string(), upstream.to_string()),
        (":scheme".to_string(), scheme.to_string()),
    ]
}

fn http_call(upstream: &str, headers: &[(String, String)], body: &[u8], timeout_ms: u32) -> Result<u32, Status> {
    let refs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    hostcalls::http_call(upstream, &refs, body, &[], timeout_ms)
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

    /// `props`: every name in `x-props` (comma-separated, dotted), read as segments
    /// (split on the first two dots) or, with `x-props-dotted`, as one dotted segment.
    /// Values are hex, so binary encodings (integers, maps) survive.
    fn props(&self) -> String {
        let names = header("x-props").unwrap_or_default();
        let dotted = header("x-props-dotted").is_some();
        let mut out = Vec::new();
        for name in names.split(',').filter(|n| !n.is_empty()) {
            let segments: Vec<&str> = if dotted { vec![name] } else { name.splitn(3, '.').collect() };
            match hostcalls::get_property(&segments) {
                Ok(v) => out.push(format!("{}={}", name, v.iter().map(|b| format!("{:02x}", b)).collect::<String>())),
                Err(s) => out.push(format!("{}!status={}", name, s.code())),
            }
        }
        out.join(";")
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

    fn kv(&self) -> Action {
        let mut l = Lines::default();
        let key = "probe:k";
        match hostcalls::get_shared_data_with_cas(key) {
            Ok((value, cas)) => {
                l.num("get_missing_status", if value.is_none() { 1 } else { 0 });
                l.num("create_cas_nonzero", (cas != 0) as u64);
            }
            Err(s) => {
                l.num("get_missing_status", s.code() as u64);
                l.num("create_cas_nonzero", 0);
            }
        }
        let v1 = header("x-kv-value").unwrap_or_else(|| "v1".to_string());
        l.num("set_status", code(&hostcalls::set_shared_data(key, v1.as_bytes(), 0)) as u64);
        let cas = match hostcalls::get_shared_data(key) {
            Ok((v, cas)) => {
                l.kv("value", &text(&v));
                l.num("cas", cas as u64);
                cas
            }
            Err(s) => {
                l.status("value", s.code());
                l.status("cas", s.code());
                0
            }
        };
        let wrong = hostcalls::set_shared_data(key, b"wrong", cas.wrapping_add(1));
        l.num("cas_mismatch_status", code(&wrong) as u64);
        l.num("cas_set_status", code(&hostcalls::set_shared_data(key, b"v2", cas)) as u64);
        match hostcalls::get_shared_data(key) {
            Ok((v, _)) => l.kv("value2", &text(&v)),
            Err(s) => l.status("value2", s.code()),
        }
        if let Some(other) = header("x-kv-key") {
            match hostcalls::get_shared_data(&other) {
                Ok((v, _)) => l.kv("other", &text(&v)),
                Err(s) => l.status("other", s.code()),
            }
        }
        if let Some(put) = header("x-kv-put") {
            let (k, v) = match put.find('=') {
                Some(i) => (&put[..i], &put[i + 1..]),
                None => (put.as_str(), ""),
            };
            l.num("put_status", code(&hostcalls::set_shared_data(k, v.as_bytes(), 0)) as u64);
        }
        respond(l)
    }

    fn kv_big(&self) -> Action {
        let mut l = Lines::default();
        let key = "a".repeat(header_num("x-key-len", 10usize));
        let value = vec![b'a'; header_num("x-value-len", 10usize)];
        l.num("status", code(&hostcalls::set_shared_data(&key, &value, 0)) as u64);
        respond(l)
    }

    fn queue(&self) -> Action {
        let mut l = Lines::default();
        let reg = hostcalls::register_shared_queue("probe_q");
        l.num("register_status", code(&reg) as u64);
        if let Ok(id) = reg {
            l.num("queue_id", id as u64);
            self.shared.probe_q.set(Some(id));
        }
        let qid = reg.unwrap_or(0);
        let e1 = code(&hostcalls::enqueue_shared_queue(qid, b"m1"));
        let e2 = code(&hostcalls::enqueue_shared_queue(qid, b"m2"));
        l.num("enqueue_status", if e1 != 0 { e1 } else { e2 } as u64);
        l.bytes_result("first", &hostcalls::dequeue_shared_queue(qid));
        l.bytes_result("second", &hostcalls::dequeue_shared_queue(qid));
        l.num("empty_status", code(&hostcalls::dequeue_shared_queue(qid)) as u64);
        let vm_id = header("x-vm-id").unwrap_or_else(|| "probe".to_string());
        let resolved = hostcalls::resolve_shared_queue(&vm_id, "probe_q");
        l.num("resolve_status", code(&resolved) as u64);
        if let Ok(id) = resolved {
            l.num("resolved_id", id as u64);
        }
        l.num("missing_status", code(&hostcalls::resolve_shared_queue("probe", "nope")) as u64);
        l.num("bad_queue_status", code(&hostcalls::enqueue_shared_queue(999_999, b"x")) as u64);
        respond(l)
    }

    fn timers(&self) -> Action {
        let mut l = Lines::default();
        l.num("ticks", self.shared.ticks.get());
        l.num("queue_ready_items", self.shared.queue_ready_items.get());
        respond(l)
    }

    fn metrics(&self) -> Action {
        let mut l = Lines::default();
        let def = hostcalls::define_metric(MetricType::Counter, "probe_requests");
        l.num("define_status", code(&def) as u64);
        if let Ok(id) = def {
            l.num("metric_id", id as u64);
        }
        let id = def.unwrap_or(0);
        l.num("inc_status", code(&hostcalls::increment_metric(id, 2)) as u64);
        match hostcalls::get_metric(id) {
            Ok(v) => l.num("value", v),
            Err(s) => l.status("value", s.code()),
        }
        l.num("negative_status", code(&hostcalls::increment_metric(id, -1)) as u64);
        let gauge = hostcalls::define_metric(MetricType::Gauge, "probe_gauge")
            .and_then(|g| hostcalls::record_metric(g, 42).map(|_| g))
            .and_then(hostcalls::get_metric);
        match gauge {
            Ok(v) => l.num("gauge", v),
            Err(s) => l.status("gauge", s.code()),
        }
        let hist = hostcalls::define_metric(MetricType::Histogram, "probe_hist").and_then(|h| hostcalls::record_metric(h, 5));
        l.num("hist_status", code(&hist) as u64);
        let name = "probe_bad_type";
        let mut bad_id: u32 = 0;
        let bad = unsafe { sys::proxy_define_metric(9, name.as_ptr(), name.len(), &mut bad_id) };
        l.num("bad_type_status", bad as u64);
        respond(l)
    }

    fn callout(&mut self) -> Action {
        let upstream = header("x-upstream").unwrap_or_else(|| "127.0.0.1:1".to_string());
        let headers = call_headers(
            &upstream,
            &header("x-method").unwrap_or_else(|| "GET".to_string()),
            &header("x-path").unwrap_or_else(|| "/".to_string()),
            &header("x-scheme").unwrap_or_else(|| "http".to_string()),
        );
        let body = header("x-call-body").unwrap_or_default();
        let timeout = header_num("x-timeout-ms", 1000u32);
        match http_call(&upstream, &headers, body.as_bytes(), timeout) {
            Ok(token) => {
                self.call_token = Some(token);
                Action::Pause
            }
            Err(s) => {
                let mut l = Lines::default();
                l.num("call_status", s.code() as u64);
                respond(l)
            }
        }
    }

    fn callout_response(&mut self, num_headers: usize, body_size: usize) {
        let mut l = Lines::default();
        l.num("call_status", 0);
        l.num("num_headers", num_headers as u64);
        l.bytes_result(
            "status",
            &hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, b":status"),
        );
        if body_size > 0 {
            l.bytes_result(
                "body",
                &hostcalls::get_buffer_bytes(BufferType::HttpCallResponseBody, 0, body_size),
            );
        } else {
            l.kv("body", "");
        }
        l.bytes_result(
            "x-echo",
            &hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, b"x-echo"),
        );
        match hostcalls::get_status() {
            Ok((c, _)) => l.num("get_status", c as u64),
            Err(s) => l.status("get_status", s.code()),
        }
        respond(l);
    }

    fn callout_flood(&self) -> Action {
        let upstream = header("x-upstream").unwrap_or_else(|| "127.0.0.1:1".to_string());
        let headers = call_headers(&upstream, "GET", "/", "http");
        let timeout = header_num("x-timeout-ms", 1000u32);
        let (mut ok, mut refused, mut first_refused) = (0u64, 0u64, None);
        for _ in 0..header_num("x-count", 10u32) {
            match http_call(&upstream, &headers, b"", timeout) {
                Ok(_) => ok += 1,
                Err(s) => {
                    refused += 1;
                    first_refused.get_or_insert(s.code());
                }
            }
        }
        let mut l = Lines::default();
        l.num("ok", ok);
        l.num("refused", refused);
        l.num("first_refused_status", first_refused.unwrap_or(0) as u64);
        respond(l)
    }

    fn llm(&mut self) -> Action {
        let mut l = Lines::default();
        match llm::get_llm_request_bytes() {
            Ok(bytes) => {
                l.num("status", 0);
                match llm::LlmRequest::decode(&bytes) {
                    Ok(req) => {
                        l.kv("model", &req.model);
                        l.num("messages", req.messages.len() as u64);
                        l.kv("first_role", req.messages.first().map_or("", |m| m.role.as_str()));
                        l.num("stream", req.stream as u64);
                        let mut keys: Vec<&str> = req.params.iter().map(|(k, _)| k.as_str()).collect();
                        keys.sort_unstable();
                        l.kv("params", &keys.join(","));
                    }
                    Err(e) => l.kv("decode_error", &e.to_string()),
                }
            }
            Err(s) => l.num("status", s.code() as u64),
        }
        if let Some(model) = header("x-pin-model") {
            l.num("pin_status", code(&llm::set_llm_model(&model)) as u64);
        }
        if let Some(content) = header("x-set-content") {
            let messages = [llm::Message::new("user", &content)];
            l.num("set_status", code(&llm::set_llm_messages(&messages)) as u64);
        }
        if header("x-llm-pass").is_some() {
            let joined: Vec<&str> = l.0.lines().collect();
            self.llm_header = Some(joined.join(";"));
            return Action::Continue;
        }
        respond(l)
    }

    fn llm_bad_cbor(&self) -> Action {
        let mut l = Lines::default();
        let mut truncated = vec![0x83u8]; // array of 3 ...
        truncated.extend_from_slice(&llm::encode_messages(&[llm::Message::new("user", "x")])[1..]); // ... with one map
        let mut huge_len = vec![0x7bu8]; // text, 8-byte length
        huge_len.extend_from_slice(&(1u64 << 60).to_be_bytes());
        let cases: [(&str, Vec<u8>); 5] = [
            ("garbage", vec![0xff, 0x00, 0x13]),
            ("truncated", truncated),
            ("wrong_shape", routeiq_guest::cbor::encode(&routeiq_guest::cbor::Value::text("hello"))),
            ("deep", vec![0x81u8; 10_000]),
            ("huge_len", huge_len),
        ];
        for (name, bytes) in cases.iter() {
            let s = code(&llm::set_llm_messages_bytes(bytes));
            l.num(&format!("{}_status", name), s as u64);
        }
        respond(l)
    }

    fn denied_calls(&self) -> Action {
        let mut l = Lines::default();
        let upstream = "127.0.0.1:1";
        let headers = call_headers(upstream, "GET", "/", "http");
        l.num("proxy_http_call", code(&http_call(upstream, &headers, b"", 1000)) as u64);
        l.num("proxy_get_shared_data", code(&hostcalls::get_shared_data("x")) as u64);
        l.num(
            "proxy_set_shared_data",
            code(&hostcalls::set_shared_data("probe:denied", b"1", 0)) as u64,
        );
        l.num(
            "proxy_register_shared_queue",
            code(&hostcalls::register_shared_queue("probe_denied")) as u64,
        );
        l.num(
            "proxy_resolve_shared_queue",
            code(&hostcalls::resolve_shared_queue("probe", "q")) as u64,
        );
        l.num("proxy_enqueue_shared_queue", code(&hostcalls::enqueue_shared_queue(1, b"x")) as u64);
        l.num("proxy_dequeue_shared_queue", code(&hostcalls::dequeue_shared_queue(1)) as u64);
        l.num(
            "proxy_define_metric",
            code(&hostcalls::define_metric(MetricType::Counter, "probe_denied")) as u64,
        );
        l.num("proxy_increment_metric", code(&hostcalls::increment_metric(1, 1)) as u64);
        l.num("proxy_record_metric", code(&hostcalls::record_metric(1, 1)) as u64);
        l.num("proxy_get_metric", code(&hostcalls::get_metric(1)) as u64);
        let tick = hostcalls::set_tick_period_milliseconds(1000);
        let _ = hostcalls::set_tick_period_milliseconds(0);
        l.num("proxy_set_tick_period_milliseconds", code(&tick) as u64);
        l.num("request_body_read", code(&hostcalls::get_buffer_bytes_raw(0, 0, 10)) as u64);
        l.num("response_body_read", code(&hostcalls::get_buffer_bytes_raw(1, 0, 10)) as u64);
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
            "props" if header("x-props-phase").as_deref() == Some("response") => Action::Continue,
            "props" => {
                let mut l = Lines::default();
                for item in self.props().split(';').filter(|i| !i.is_empty()) {
                    let _ = writeln!(l.0, "{}", item);
                }
                respond(l)
            }
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
            "kv" => self.kv(),
            "kv_big" => self.kv_big(),
            "queue" => self.queue(),
            "timers" => self.timers(),
            "metrics" => self.metrics(),
            "callout" => self.callout(),
            "callout_flood" => self.callout_flood(),
            "denied_calls" => self.denied_calls(),
            "llm" => self.llm(),
            "llm_bad_cbor" => self.llm_bad_cbor(),
            "llm_response" => Action::Continue,
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
        } else if self.scenario == "props" {
            let _ = hostcalls::add_http_response_header("x-props", &self.props());
        } else if self.scenario == "body_rewrite" {
            let _ = hostcalls::add_http_response_header("x-req-body-seen", &self.req_body_seen.to_string());
        } else if self.scenario == "continue_stream" {
            let s = self.continue_status.unwrap_or(u32::MAX);
            let bad = unsafe { sys::proxy_continue_stream(99) };
            let _ = hostcalls::add_http_response_header("x-continue-status", &s.to_string());
            let _ = hostcalls::add_http_response_header("x-bad-stream-status", &bad.to_string());
        } else if self.scenario == "llm" {
            if let Some(v) = &self.llm_header {
                let _ = hostcalls::add_http_response_header("x-probe-llm", v);
            }
        } else if self.scenario == "llm_response" {
            let v = match llm::get_llm_response() {
                Ok(r) => format!("status=0;deployment={};strategy={}", r.deployment, r.strategy),
                Err(s) => format!("status={};deployment=;strategy=", s.code()),
            };
            let _ = hostcalls::add_http_response_header("x-probe-llm-response", &v);
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

    fn on_http_call_response(&mut self, token: u32, num_headers: usize, body_size: usize, _num_trailers: usize) {
        // Only the `callout` scenario waits for its call; responses to the
        // calls of `callout_flood` / `denied_calls` are ignored.
        if self.scenario == "callout" && self.call_token == Some(token) {
            self.call_token = None;
            self.callout_response(num_headers, body_size);
        }
    }

    fn on_log(&mut self) {
        let msg = match hostcalls::get_property(&["request", "path"]) {
            Ok(v) => format!("probe on_log path={}", text(&v)),
            Err(s) => format!("probe on_log path=!status={}", s.code()),
        };
        routeiq_guest::log_info(&msg);
        if self.scenario == "props" {
            routeiq_guest::log_info(&format!("probe props on_log {}", self.props()));
        }
        if self.scenario == "llm_response" {
            let msg = match llm::get_llm_response() {
                Ok(r) => format!(
                    "probe llm_response status=0 deployment={} total_tokens={}",
                    r.deployment, r.usage.total_tokens
                ),
                Err(s) => format!("probe llm_response status={} deployment= total_tokens=0", s.code()),
            };
            routeiq_guest::log_info(&msg);
        }
    }

    fn on_done(&mut self) -> bool {
        true
    }
}

routeiq_guest::manifest!(r#"{"name": "hostcall_probe", "version": "0.1.0", "description": "Host-call conformance probe driven by the x-probe request header", "capabilities": ["http_callout", "shared_kv", "shared_queue", "metrics", "timers", "request_body", "response_body", "llm_request"]}"#);

routeiq_guest::main! {
    routeiq_guest::set_root_context(|root_id| -> Box<dyn RootContext> {
        Box::new(ProbeRoot {
            state: Rc::new(RootState {
                root_id,
                plugin_config: Err(Status::NotFound),
                vm_config: Err(Status::NotFound),
            }),
            shared: Rc::new(Shared::default()),
        })
    });
}
