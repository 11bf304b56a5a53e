//! # pii_guard — blocks or redacts PII in chat messages (LLM extension ABI)
//!
//! Behaviour (per HTTP request, in `on_request_headers`):
//! * `routeiq_get_llm_request`. `NOT_FOUND` (not an LLM request): the
//!   request continues untouched. Any other error (e.g. 12 when the
//!   `llm_request` capability is denied, or 4 when the host's CBOR does not
//!   decode) logs WARN `pii_guard: llm request unavailable (status <s>)`
//!   and the request continues untouched (fail open).
//! * **Blocked**: if the content of any message contains a `forbidden`
//!   pattern (ASCII case-insensitive substring; messages with `null`
//!   content are skipped): local response `400`, details `pii_forbidden`,
//!   header `content-type: application/json`, body
//!   `{"error":{"message":"request blocked by pii_guard: forbidden content","type":"invalid_request_error","code":"pii_forbidden"}}`;
//!   returns `Pause`.
//! * **Redacted** (only if `redact`): in every message content, e-mail
//!   addresses become `[EMAIL]` and phone numbers `[PHONE]` (rules in
//!   `pii.rs`). If anything changed, all messages (same roles and order)
//!   are written back with `routeiq_set_llm_messages`. If that call fails
//!   it logs WARN `pii_guard: set_llm_messages failed (status <s>)`, the
//!   request continues unchanged and the count stays 0.
//! * `on_response_headers` always adds
//!   `x-routeiq-pii-redactions: <n>` (`0` included: nothing redacted,
//!   non-LLM request, blocked request if the host runs response callbacks
//!   for local responses).
//! * `on_log` logs INFO `pii_guard: redactions=<n>`.
//!
//! Plugin configuration (JSON object, all keys optional, unknown keys and
//! wrong types ignored; empty/invalid JSON = defaults):
//! `{"forbidden": ["password:", "ssn:"], "redact": true}`. Defaults
//! `forbidden=[]` (patterns are lower-cased; empty strings are dropped),
//! `redact=true`. `on_configure` logs DEBUG
//! `pii_guard: forbidden=<count> redact=<true|false>`.
//!
//! Host calls: `proxy_get_buffer_bytes(7)`, `routeiq_get_llm_request`,
//! `routeiq_set_llm_messages`, `proxy_send_local_response`,
//! `proxy_add_header_map_value`, `proxy_log`.

use routeiq_guest::config_json as json;
mod pii;

use routeiq_guest::hostcalls;
use routeiq_guest::llm;
use routeiq_guest::{Action, HttpContext, RootContext, Status};
use std::rc::Rc;

const BLOCKED_BODY: &str = r#"{"error":{"message":"request blocked by pii_guard: forbidden content","type":"invalid_request_error","code":"pii_forbidden"}}"#;

#[derive(Clone, Debug)]
struct Config {
    /// Lower-cased, non-empty.
    forbidden: Vec<String>,
    redact: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            forbidden: Vec::new(),
            redact: true,
        }
    }
}

impl Config {
    fn parse(bytes: &[u8]) -> Config {
        let mut c = Config::default();
        for (key, value) in json::object_members(bytes) {
            match (key.as_str(), value) {
                ("forbidden", json::Value::StrList(list)) => {
                    c.forbidden = list
                        .into_iter()
                        .filter(|p| !p.is_empty())
                        .map(|p| p.to_ascii_lowercase())
                        .collect()
                }
                ("redact", json::Value::Bool(b)) => c.redact = b,
                _ => {}
            }
        }
        c
    }
}

struct GuardRoot {
    config: Rc<Config>,
}

impl RootContext for GuardRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = hostcalls::get_plugin_configuration().unwrap_or_default();
        let config = Config::parse(&bytes);
        routeiq_guest::log_debug(&format!(
            "pii_guard: forbidden={} redact={}",
            config.forbidden.len(),
            config.redact
        ));
        self.config = Rc::new(config);
        true
    }

    fn create_http_context(&mut self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Guard {
            config: self.config.clone(),
            redactions: 0,
        }))
    }
}

struct Guard {
    config: Rc<Config>,
    /// Replacements actually applied to the request.
    redactions: usize,
}

impl HttpContext for Guard {
    fn on_http_request_headers(&mut self, _num_headers: usize, _eos: bool) -> Action {
        let request = match llm::get_llm_request() {
            Ok(r) => r,
            Err(Status::NotFound) => return Action::Continue,
            Err(s) => {
                routeiq_guest::log_warn(&format!("pii_guard: llm request unavailable (status {})", s.code()));
                return Action::Continue;
            }
        };
        let forbidden = &self.config.forbidden;
        let blocked = !forbidden.is_empty()
            && request
                .messages
                .iter()
                .any(|m| m.content.as_deref().map_or(false, |c| pii::contains_forbidden(c, forbidden)));
        if blocked {
            let _ = hostcalls::send_local_response(
                400,
                "pii_forbidden",
                BLOCKED_BODY.as_bytes(),
                &[("content-type", "application/json")],
                hostcalls::NO_GRPC_STATUS,
            );
            return Action::Pause;
        }
        if !self.config.redact {
            return Action::Continue;
        }
        let mut messages = request.messages;
        let mut count = 0;
        for m in messages.iter_mut() {
            if let Some(content) = &m.content {
                let (new, n) = pii::redact(content);
                if n > 0 {
                    m.content = Some(new);
                    count += n;
                }
            }
        }
        if count > 0 {
            match llm::set_llm_messages(&messages) {
                Ok(()) => self.redactions = count,
                Err(s) => routeiq_guest::log_warn(&format!("pii_guard: set_llm_messages failed (status {})", s.code())),
            }
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _eos: bool) -> Action {
        let _ = hostcalls::add_http_response_header("x-routeiq-pii-redactions", &self.redactions.to_string());
        Action::Continue
    }

    fn on_log(&mut self) {
        routeiq_guest::log_info(&format!("pii_guard: redactions={}", self.redactions));
    }
}

routeiq_guest::manifest!(
    r#"{"name": "pii_guard", "version": "0.1.0", "description": "Blocks forbidden content and redacts e-mail addresses and phone numbers in chat messages", "capabilities": ["llm_request"]}"#
);

routeiq_guest::main! {
    routeiq_guest::set_root_context(|_context_id| -> Box<dyn RootContext> {
        Box::new(GuardRoot { config: Rc::new(Config::default()) })
    });
}
