//! # rate_limiter — fixed-window request limit per consumer (shared KV)
//!
//! Behaviour (per HTTP request, in `on_request_headers`):
//! * Who is counted (`<who>`), first match wins:
//!   1. `consumer:<id>` — property `routeiq.consumer.id`, the virtual key the
//!      gateway authenticated (`keys.enabled`). Headers never override it, so a
//!      client cannot escape its quota by changing `x-api-key`.
//!   2. `header:<value>` — only when the config names a `header` (opt-in).
//!      SPOOFABLE: the client chooses the value, so a new value is a new
//!      quota. Use it only behind something that authenticates that header.
//!   3. `addr:<ip>` — property `source.address` without its port (the peer
//!      address; behind a proxy that is the proxy's address).
//!   4. `anonymous` — one shared bucket when none of the above is known.
//!   A `<who>` longer than 64 bytes is replaced by `fp:<FNV-1a 64 in hex>`, so a
//!   long header value cannot push the key past the host's key-size limit (which
//!   would make the limiter fail open).
//! * `window = now_s / window_s`, `now_s` from
//!   `proxy_get_current_time_nanoseconds` (integer division). The counter
//!   lives in shared data under the key `<key_prefix>:<who>:<window>`,
//!   value = decimal request count (unparsable value = 0).
//! * Compare-and-swap loop, at most 32 attempts:
//!   `get_shared_data_with_cas(key)`; if `count >= limit` the request is
//!   rejected, else `set_shared_data(key, count + 1, cas)`. A missing key
//!   is created with value `1` and the cas the host returned with
//!   `NOT_FOUND` (RouteIQ writes a creation token there, so two concurrent
//!   creators cannot both win; other hosts write 0 = unconditional).
//!   `CAS_MISMATCH` (8) retries.
//! * **Rejected**: local response status `429`, details
//!   `rate_limit_exceeded`, headers `content-type: application/json`,
//!   `retry-after: <seconds until the window ends, 1..=window_s>`,
//!   `x-ratelimit-limit: <limit>`, `x-ratelimit-remaining: 0`, body
//!   `{"error":{"message":"rate limit exceeded","type":"rate_limit_exceeded"}}`;
//!   returns `Pause`.
//! * **Counted**: returns `Continue`; `on_response_headers` then adds
//!   `x-ratelimit-limit: <limit>` and
//!   `x-ratelimit-remaining: <limit - count - 1>`.
//! * **Contention** (32 CAS mismatches in a row): local response `503`,
//!   details `rate_limiter_contention`, `content-type: application/json`,
//!   body `{"error":{"message":"rate limiter contention","type":"rate_limit_error"}}`;
//!   returns `Pause`.
//! * **Fail open**: any other shared-data error (e.g. 12 UNIMPLEMENTED or
//!   2 BAD_ARGUMENT when the `shared_kv` capability is denied) logs WARN
//!   `rate_limiter: shared data unavailable (status <s>)` and the request
//!   continues without rate-limit headers. Same if the clock fails
//!   (`rate_limiter: clock unavailable (status <s>)`).
//!
//! Plugin configuration (JSON object, all keys optional, unknown keys and
//! wrong types ignored; empty/invalid JSON = all defaults):
//! `{"limit": 5, "window_s": 60, "header": "x-api-key", "key_prefix": "rl"}`.
//! Defaults `limit=10` (`>= 0`; 0 rejects everything), `window_s=60`
//! (`>= 1`), no `header` (lower-cased; empty = none), `key_prefix="rl"`.
//! `on_configure` logs DEBUG
//! `rate_limiter: limit=<n> window_s=<n> header=<h or -> key_prefix=<p>`.
//!
//! Old windows' keys are never deleted (proxy-wasm shared data has no
//! delete or TTL); each key/window pair costs one small entry.
//!
//! Host calls: `proxy_get_buffer_bytes(7)`, `proxy_get_header_map_value`,
//! `proxy_add_header_map_value`, `proxy_get_property`,
//! `proxy_get_current_time_nanoseconds`, `proxy_get_shared_data`,
//! `proxy_set_shared_data`, `proxy_send_local_response`, `proxy_log`.

use routeiq_guest::config_json as json;

use routeiq_guest::hostcalls;
use routeiq_guest::{Action, HttpContext, RootContext, Status};
use std::rc::Rc;

const LIMITED_BODY: &str = r#"{"error":{"message":"rate limit exceeded","type":"rate_limit_exceeded"}}"#;
const CONTENTION_BODY: &str = r#"{"error":{"message":"rate limiter contention","type":"rate_limit_error"}}"#;
const MAX_ATTEMPTS: usize = 32;

#[derive(Clone, Debug)]
struct Config {
    limit: u64,
    window_s: u64,
    /// Opt-in, spoofable: key on this client-chosen header when there is no consumer.
    header: Option<String>,
    key_prefix: String,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            limit: 10,
            window_s: 60,
            header: None,
            key_prefix: "rl".to_string(),
        }
    }
}

impl Config {
    fn parse(bytes: &[u8]) -> Config {
        let mut c = Config::default();
        for (key, value) in json::object_members(bytes) {
            match (key.as_str(), value) {
                ("limit", json::Value::Int(n)) if n >= 0 => c.limit = n as u64,
                ("window_s", json::Value::Int(n)) if n >= 1 => c.window_s = n as u64,
                ("header", json::Value::Str(s)) if !s.is_empty() => c.header = Some(s.to_ascii_lowercase()),
                ("key_prefix", json::Value::Str(s)) => c.key_prefix = s,
                _ => {}
            }
        }
        c
    }
}

struct LimiterRoot {
    config: Rc<Config>,
}

impl RootContext for LimiterRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = hostcalls::get_plugin_configuration().unwrap_or_default();
        let config = Config::parse(&bytes);
        routeiq_guest::log_debug(&format!(
            "rate_limiter: limit={} window_s={} header={} key_prefix={}",
            config.limit,
            config.window_s,
            config.header.as_deref().unwrap_or("-"),
            config.key_prefix
        ));
        self.config = Rc::new(config);
        true
    }

    fn create_http_context(&mut self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Limiter {
            config: self.config.clone(),
            remaining: None,
        }))
    }
}

struct Limiter {
    config: Rc<Config>,
    /// Set when the request was counted: remaining requests in the window.
    remaining: Option<u64>,
}

/// Outcome of one attempt to count the request.
enum Attempt {
    Counted(u64),
    Limited,
    Retry,
    Unavailable(Status),
}

/// Who this request is counted against, at most 64 bytes (see `client_of`).
fn bounded(who: String) -> String {
    if who.len() <= 64 {
        return who;
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in who.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("fp:{:016x}", hash)
}

/// Who this request is counted against; see the module docs for the order.
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

fn parse_count(v: &[u8]) -> u64 {
    std::str::from_utf8(v).ok().and_then(|s| s.trim().parse::<u64>().ok()).unwrap_or(0)
}

impl Limiter {
    fn attempt(&self, key: &str) -> Attempt {
        let (count, cas) = match hostcalls::get_shared_data_with_cas(key) {
            Ok((Some(v), cas)) => (parse_count(&v), cas),
            Ok((None, cas)) => (0, cas),
            Err(s) => return Attempt::Unavailable(s),
        };
        if count >= self.config.limit {
            return Attempt::Limited;
        }
        let next = (count + 1).to_string();
        match hostcalls::set_shared_data(key, next.as_bytes(), cas) {
            Ok(()) => Attempt::Counted(self.config.limit - count - 1),
            Err(Status::CasMismatch) => Attempt::Retry,
            Err(s) => Attempt::Unavailable(s),
        }
    }

    fn reject(&self, retry_after: u64) -> Action {
        let retry = retry_after.to_string();
        let limit = self.config.limit.to_string();
        let _ = hostcalls::send_local_response(
            429,
            "rate_limit_exceeded",
            LIMITED_BODY.as_bytes(),
            &[
                ("content-type", "application/json"),
                ("retry-after", retry.as_str()),
                ("x-ratelimit-limit", limit.as_str()),
                ("x-ratelimit-remaining", "0"),
            ],
            hostcalls::NO_GRPC_STATUS,
        );
        Action::Pause
    }
}

impl HttpContext for Limiter {
    fn on_http_request_headers(&mut self, _num_headers: usize, _eos: bool) -> Action {
        let client = bounded(client_of(self.config.header.as_deref()));
        let now_s = match hostcalls::get_current_time_nanoseconds() {
            Ok(ns) => ns / 1_000_000_000,
            Err(s) => {
                routeiq_guest::log_warn(&format!("rate_limiter: clock unavailable (status {})", s.code()));
                return Action::Continue;
            }
        };
        let window_s = self.config.window_s;
        let window = now_s / window_s;
        let retry_after = window_s - now_s % window_s;
        let key = format!("{}:{}:{}", self.config.key_prefix, client, window);
        for _ in 0..MAX_ATTEMPTS {
            match self.attempt(&key) {
                Attempt::Counted(remaining) => {
                    self.remaining = Some(remaining);
                    return Action::Continue;
                }
                Attempt::Limited => return self.reject(retry_after),
                Attempt::Retry => continue,
                Attempt::Unavailable(s) => {
                    routeiq_guest::log_warn(&format!("rate_limiter: shared data unavailable (status {})", s.code()));
                    return Action::Continue;
                }
            }
        }
        let _ = hostcalls::send_local_response(
            503,
            "rate_limiter_contention",
            CONTENTION_BODY.as_bytes(),
            &[("content-type", "application/json")],
            hostcalls::NO_GRPC_STATUS,
        );
        Action::Pause
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _eos: bool) -> Action {
        if let Some(remaining) = self.remaining {
            let _ = hostcalls::add_http_response_header("x-ratelimit-limit", &self.config.limit.to_string());
            let _ = hostcalls::add_http_response_header("x-ratelimit-remaining", &remaining.to_string());
        }
        Action::Continue
    }
}

routeiq_guest::manifest!(
    r#"{"name": "rate_limiter", "version": "0.1.0", "description": "Fixed-window request limit per consumer (virtual key, else client address), counted in shared data", "capabilities": ["shared_kv"],
    "config_schema": {"type": "object", "additionalProperties": false, "properties": {
        "limit": {"type": "integer", "minimum": 0, "description": "Requests allowed per window and consumer (0: none)"},
        "window_s": {"type": "integer", "minimum": 1, "description": "Window length in seconds"},
        "header": {"type": "string", "minLength": 1, "description": "Opt-in, spoofable: count per this client header when there is no consumer"},
        "key_prefix": {"type": "string", "minLength": 1, "maxLength": 32, "description": "Prefix of the shared-data counters"}}}}"#
);

routeiq_guest::main! {
    routeiq_guest::set_root_context(|_context_id| -> Box<dyn RootContext> {
        Box::new(LimiterRoot { config: Rc::new(Config::default()) })
    });
}
