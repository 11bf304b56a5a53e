//! # token_budget — per-key token budget per time window (LLM ABI + shared KV)
//!
//! Behaviour:
//! * `on_request_headers`: only for LLM requests (`routeiq_get_llm_request`
//!   returns 0). `NOT_FOUND` passes silently; any other status logs WARN
//!   `token_budget: llm request unavailable (status <s>)` and passes. Both
//!   are not counted and get no budget header.
//!   * Who pays (first match wins): `consumer:<id>` from property
//!     `routeiq.consumer.id` (the virtual key the gateway authenticated;
//!     headers never override it); `header:<value>` only when the config
//!     names a `header` (opt-in and SPOOFABLE: a client picking a new value
//!     gets a new budget); `addr:<ip>` from `source.address` without its
//!     port; else one shared `anonymous` budget.
//!   * `window = now_s / window_s` (`proxy_get_current_time_nanoseconds`,
//!     integer division); shared-data key `tb:<fingerprint>:<window>` (FNV-1a of
//!     the client string above, never a header value itself), value =
//!     decimal tokens used (missing key or unparsable value = 0).
//!   * `used >= budget_tokens`: local response `429`, details
//!     `token_budget`, header `content-type: application/json`, body
//!     `{"error":{"message":"token budget exhausted","type":"insufficient_quota","code":"token_budget"}}`;
//!     returns `Pause`.
//!   * Otherwise the request continues; `on_response_headers` adds
//!     `x-token-budget-remaining: <budget_tokens - used>` (the value read
//!     before this request).
//!   * Fail open: a shared-data error other than `NOT_FOUND` (e.g. 12 when
//!     `shared_kv` is denied) or a clock error logs WARN
//!     `token_budget: shared data unavailable (status <s>)` /
//!     `token_budget: clock unavailable (status <s>)`; the request continues
//!     without the header and is not charged.
//! * `on_log` (admitted requests only): `routeiq_get_llm_response` ->
//!   `usage.total_tokens` (`n`), added to the same key (the window the
//!   request started in) with a CAS loop of at most 32 attempts:
//!   `get_shared_data_with_cas` (a missing key keeps the host's creation
//!   token, so creation is atomic on RouteIQ), `set_shared_data(key,
//!   used + n, cas)`, retry on 8 `CAS_MISMATCH`. Then logs INFO
//!   `token_budget: key=<fingerprint> used=<new total> (+<n>)`.
//!   `get_llm_response` failing (e.g. `NOT_FOUND`: no upstream answer)
//!   logs DEBUG `token_budget: no llm response (status <s>)` and charges
//!   nothing. Other failures log WARN
//!   `token_budget: usage of <n> tokens not recorded (status <s>)` (status
//!   8 after 32 mismatches).
//!
//! Plugin configuration (JSON object, all keys optional, unknown keys and
//! wrong types ignored; empty/invalid JSON = defaults):
//! `{"budget_tokens": 1000, "window_s": 86400, "header": "x-api-key"}`.
//! `budget_tokens >= 0` (0 rejects every LLM request), `window_s >= 1`,
//! `header` lower-cased (default and empty = none). `on_configure` logs DEBUG
//! `token_budget: budget_tokens=<n> window_s=<n> header=<h or ->`.
//!
//! The check is not a reservation: concurrent requests that all see
//! `used < budget` are all admitted, and the budget can be overshot by
//! their combined usage. Keys of past windows are never deleted.
//!
//! Host calls: `proxy_get_buffer_bytes(7)`, `proxy_get_header_map_value`,
//! `proxy_add_header_map_value`, `proxy_get_property`,
//! `proxy_get_current_time_nanoseconds`,
//! `proxy_get_shared_data`, `proxy_set_shared_data`,
//! `routeiq_get_llm_request`, `routeiq_get_llm_response`,
//! `proxy_send_local_response`, `proxy_log`.

use routeiq_guest::config_json as json;

use routeiq_guest::hostcalls;
use routeiq_guest::llm;
use routeiq_guest::{Action, HttpContext, RootContext, Status};
use std::rc::Rc;

const EXHAUSTED_BODY: &str =
    r#"{"error":{"message":"token budget exhausted","type":"insufficient_quota","code":"token_budget"}}"#;
const MAX_ATTEMPTS: usize = 32;

#[derive(Clone, Debug)]
struct Config {
    budget_tokens: u64,
    window_s: u64,
    /// Opt-in, spoofable: key on this client-chosen header when there is no consumer.
    header: Option<String>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            budget_tokens: 1000,
            window_s: 86400,
            header: None,
        }
    }
}

impl Config {
    fn parse(bytes: &[u8]) -> Config {
        let mut c = Config::default();
        for (key, value) in json::object_members(bytes) {
            match (key.as_str(), value) {
                ("budget_tokens", json::Value::Int(n)) if n >= 0 => c.budget_tokens = n as u64,
                ("window_s", json::Value::Int(n)) if n >= 1 => c.window_s = n as u64,
                ("header", json::Value::Str(s)) if !s.is_empty() => c.header = Some(s.to_ascii_lowercase()),
                _ => {}
            }
        }
        c
    }
}

/// `k-` + FNV-1a 64 of `value` in hex: stable across workers, not the credential itself.
fn fingerprint(value: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in value.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("k-{:016x}", hash)
}

/// Who pays for this request; see the module docs for the order.
fn client_of(header: Option<&str>) -> String {
    if let Ok(Some(id)) = hostcalls::get_property_string(&["routeiq", "consumer", "id"]) {
        return format!("consumer:{}", id);
    }
    if let Some(value) = header.and_then(hostcalls::get_http_request_header) {
        return format!("header:{}", value);
    }
    if let Ok(Some(address)) = hostcalls::get_property_string(&["source", "address"]) {
        // "ip:port": the port changes per connection, the client does not.
        let ip = address.rsplit_once(':').map_or(address.as_str(), |(ip, _)| ip);
        return format!("addr:{}", ip);
    }
    "anonymous".to_string()
}

struct BudgetRoot {
    config: Rc<Config>,
}

impl RootContext for BudgetRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = hostcalls::get_plugin_configuration().unwrap_or_default();
        let config = Config::parse(&bytes);
        routeiq_guest::log_debug(&format!(
            "token_budget: budget_tokens={} window_s={} header={}",
            config.budget_tokens,
            config.window_s,
            config.header.as_deref().unwrap_or("-")
        ));
        self.config = Rc::new(config);
        true
    }

    fn create_http_context(&mut self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Budget {
            config: self.config.clone(),
            admitted: None,
        }))
    }
}

/// An admitted request: who pays, where, and what was used before it.
struct Admitted {
    client: String,
    kv_key: String,
    used: u64,
}

struct Budget {
    config: Rc<Config>,
    admitted: Option<Admitted>,
}

fn parse_tokens(v: &[u8]) -> u64 {
    std::str::from_utf8(v).ok().and_then(|s| s.trim().parse::<u64>().ok()).unwrap_or(0)
}

/// Adds `n` to the counter at `key`; returns the new total.
fn charge(key: &str, n: u64) -> Result<u64, Status> {
    for _ in 0..MAX_ATTEMPTS {
        let (current, cas) = hostcalls::get_shared_data_with_cas(key)?;
        let total = current.as_deref().map_or(0, parse_tokens).saturating_add(n);
        match hostcalls::set_shared_data(key, total.to_string().as_bytes(), cas) {
            Ok(()) => return Ok(total),
            Err(Status::CasMismatch) => continue,
            Err(s) => return Err(s),
        }
    }
    Err(Status::CasMismatch)
}

impl HttpContext for Budget {
    fn on_http_request_headers(&mut self, _num_headers: usize, _eos: bool) -> Action {
        match llm::get_llm_request() {
            Ok(_) => {}
            Err(Status::NotFound) => return Action::Continue,
            Err(s) => {
                routeiq_guest::log_warn(&format!("token_budget: llm request unavailable (status {})", s.code()));
                return Action::Continue;
            }
        }
        // A header is usually a credential: only a fingerprint reaches shared data and logs.
        let client = fingerprint(&client_of(self.config.header.as_deref()));
        let now_s = match hostcalls::get_current_time_nanoseconds() {
            Ok(ns) => ns / 1_000_000_000,
            Err(s) => {
                routeiq_guest::log_warn(&format!("token_budget: clock unavailable (status {})", s.code()));
                return Action::Continue;
            }
        };
        let kv_key = format!("tb:{}:{}", client, now_s / self.config.window_s);
        let used = match hostcalls::get_shared_data(&kv_key) {
            Ok((v, _)) => parse_tokens(&v),
            Err(Status::NotFound) => 0,
            Err(s) => {
                routeiq_guest::log_warn(&format!("token_budget: shared data unavailable (status {})", s.code()));
                return Action::Continue;
            }
        };
        if used >= self.config.budget_tokens {
            let _ = hostcalls::send_local_response(
                429,
                "token_budget",
                EXHAUSTED_BODY.as_bytes(),
                &[("content-type", "application/json")],
                hostcalls::NO_GRPC_STATUS,
            );
            return Action::Pause;
        }
        self.admitted = Some(Admitted { client, kv_key, used });
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _eos: bool) -> Action {
        if let Some(a) = &self.admitted {
            let remaining = self.config.budget_tokens - a.used;
            let _ = hostcalls::add_http_response_header("x-token-budget-remaining", &remaining.to_string());
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        let a = match self.admitted.take() {
            Some(a) => a,
            None => return,
        };
        let n = match llm::get_llm_response() {
            Ok(r) => r.usage.total_tokens,
            Err(s) => {
                routeiq_guest::log_debug(&format!("token_budget: no llm response (status {})", s.code()));
                return;
            }
        };
        match charge(&a.kv_key, n) {
            Ok(total) => routeiq_guest::log_info(&format!("token_budget: key={} used={} (+{})", a.client, total, n)),
            Err(s) => routeiq_guest::log_warn(&format!(
                "token_budget: usage of {} tokens not recorded (status {})",
                n,
                s.code()
            )),
        }
    }
}

routeiq_guest::manifest!(
    r#"{"name": "token_budget", "version": "0.1.0", "description": "Per-consumer LLM token budget per time window (virtual key, else client address), counted in shared data", "capabilities": ["llm_request", "shared_kv"]}"#
);

routeiq_guest::main! {
    routeiq_guest::set_root_context(|_context_id| -> Box<dyn RootContext> {
        Box::new(BudgetRoot { config: Rc::new(Config::default()) })
    });
}
