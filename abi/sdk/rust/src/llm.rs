//! RouteIQ LLM extension ABI: typed access to the parsed chat request and
//! to the upstream answer.
//!
//! Host functions (module `env`, raw imports in [`crate::sys`]); all are
//! gated by the plugin capability `llm_request` (without it the host
//! answers 12 `UNIMPLEMENTED`):
//!
//! | host call | wrapper | statuses |
//! |---|---|---|
//! | `routeiq_get_llm_request(ret_data, ret_size)` | [`get_llm_request`] | 0; 1 not an LLM request |
//! | `routeiq_set_llm_messages(data, size)` (CBOR) | [`set_llm_messages`] | 0; 4 not CBOR of the right shape; 1 not an LLM request; 2 already upstream |
//! | `routeiq_set_llm_model(data, size)` (UTF-8) | [`set_llm_model`] | 0; 1 no such model group; 2 already upstream |
//! | `routeiq_get_llm_response(ret_data, ret_size)` | [`get_llm_response`] | 0; 1 no upstream answer yet / not an LLM request |
//!
//! Wire format: CBOR ([`crate::cbor`]). The request is a map
//! `{"model": text, "messages": [{"role": text, "content": text|null}],
//! "stream": bool, "params": {<every other top-level request field>}}`;
//! the response is a map `{"model", "deployment", "provider_model",
//! "strategy": text, "status": int, "latency_ms": float,
//! "usage": {"prompt_tokens", "completion_tokens", "total_tokens": int}}`.
//!
//! Decoding is lenient about absence and strict about types: a missing (or
//! `null`) field takes its default (`""`, `0`, `false`, empty), unknown
//! keys are ignored, a field of the wrong type is an error. The `get_*`
//! wrappers report undecodable host data as `Err(Status::ParseFailure)`;
//! use the `*_bytes` variants plus [`LlmRequest::decode`] /
//! [`LlmResponse::decode`] to see the [`DecodeError`].

use crate::cbor::{self, Value};
use crate::memory::take_host_buffer;
use crate::sys;
use crate::types::Status;
use std::fmt;
use std::ptr::null_mut;

/// One chat message. `content` is `None` when the request has `null`
/// content (e.g. an assistant message that only carries tool calls).
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub role: String,
    pub content: Option<String>,
}

impl Message {
    /// A message with text content.
    pub fn new(role: &str, content: &str) -> Message {
        Message {
            role: role.to_string(),
            content: Some(content.to_string()),
        }
    }

    /// `{"role": text, "content": text}` (`None` content is encoded as
    /// `null`).
    pub fn to_cbor(&self) -> Value {
        Value::Map(vec![
            (Value::text("role"), Value::text(self.role.as_str())),
            (
                Value::text("content"),
                match &self.content {
                    Some(c) => Value::text(c.as_str()),
                    None => Value::Null,
                },
            ),
        ])
    }
}

/// The parsed chat request (`routeiq_get_llm_request`).
#[derive(Clone, Debug, PartialEq)]
pub struct LlmRequest {
    /// The requested model (group) name.
    pub model: String,
    pub messages: Vec<Message>,
    pub stream: bool,
    /// Every other top-level field of the request body, in host order.
    pub params: Vec<(String, Value)>,
}

/// Token usage of an upstream answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

/// What the gateway did with the request (`routeiq_get_llm_response`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LlmResponse {
    /// Model group.
    pub model: String,
    /// Deployment id that answered.
    pub deployment: String,
    /// Model name at the provider.
    pub provider_model: String,
    /// Routing strategy that chose the deployment.
    pub strategy: String,
    /// HTTP status of the upstream answer.
    pub status: u32,
    pub latency_ms: f64,
    /// Complete at `on_log` (also for streams); may be partial earlier.
    pub usage: Usage,
}

/// Why host data could not be turned into the typed structs.
#[derive(Clone, Debug, PartialEq)]
pub enum DecodeError {
    /// The bytes are not one well-formed CBOR item.
    Cbor(cbor::Error),
    /// Well-formed CBOR of the wrong shape; names the offending field.
    Shape(&'static str),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Cbor(e) => write!(f, "{}", e),
            DecodeError::Shape(what) => write!(f, "llm: unexpected shape: {}", what),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Field lookup: `None` when missing or `null`.
fn field<'a>(map: &'a Value, key: &str) -> Option<&'a Value> {
    match map.get(key) {
        None | Some(Value::Null) => None,
        Some(v) => Some(v),
    }
}

fn text_field(map: &Value, key: &str, err: &'static str) -> Result<String, DecodeError> {
    match field(map, key) {
        None => Ok(String::new()),
        Some(v) => v.as_str().map(str::to_string).ok_or(DecodeError::Shape(err)),
    }
}

fn uint_field(map: &Value, key: &str, max: u64, err: &'static str) -> Result<u64, DecodeError> {
    match field(map, key) {
        None => Ok(0),
        Some(v) => match v.as_i64() {
            Some(n) if n >= 0 && n as u64 <= max => Ok(n as u64),
            _ => Err(DecodeError::Shape(err)),
        },
    }
}

impl LlmRequest {
    /// Decodes the CBOR bytes returned by `routeiq_get_llm_request`.
    pub fn decode(bytes: &[u8]) -> Result<LlmRequest, DecodeError> {
        let v = cbor::decode(bytes).map_err(DecodeError::Cbor)?;
        LlmRequest::from_cbor(&v)
    }

    /// Builds the request from an already decoded CBOR value.
    pub fn from_cbor(v: &Value) -> Result<LlmRequest, DecodeError> {
        if v.as_map().is_none() {
            return Err(DecodeError::Shape("request: expected a map"));
        }
        let model = text_field(v, "model", "model: expected text")?;
        let stream = match field(v, "stream") {
            None => false,
            Some(s) => s.as_bool().ok_or(DecodeError::Shape("stream: expected bool"))?,
        };
        let mut messages = Vec::new();
        if let Some(m) = field(v, "messages") {
            let items = m.as_array().ok_or(DecodeError::Shape("messages: expected an array"))?;
            for item in items {
                if item.as_map().is_none() {
                    return Err(DecodeError::Shape("messages[]: expected a map"));
                }
                let role = text_field(item, "role", "messages[].role: expected text")?;
                let content = match field(item, "content") {
                    None => None,
                    Some(c) => Some(
                        c.as_str()
                            .ok_or(DecodeError::Shape("messages[].content: expected text or null"))?
                            .to_string(),
                    ),
                };
                messages.push(Message { role, content });
            }
        }
        let mut params = Vec::new();
        if let Some(p) = field(v, "params") {
            let pairs = p.as_map().ok_or(DecodeError::Shape("params: expected a map"))?;
            for (k, val) in pairs {
                let key = k.as_str().ok_or(DecodeError::Shape("params: expected text keys"))?;
                params.push((key.to_string(), val.clone()));
            }
        }
        Ok(LlmRequest {
            model,
            messages,
            stream,
            params,
        })
    }

    /// The request in the host's CBOR shape (useful for tests and mocks).
    pub fn to_cbor(&self) -> Value {
        Value::Map(vec![
            (Value::text("model"), Value::text(self.model.as_str())),
            (
                Value::text("messages"),
                Value::Array(self.messages.iter().map(Message::to_cbor).collect()),
            ),
            (Value::text("stream"), Value::Bool(self.stream)),
            (
                Value::text("params"),
                Value::Map(
                    self.params
                        .iter()
                        .map(|(k, v)| (Value::text(k.as_str()), v.clone()))
                        .collect(),
                ),
            ),
        ])
    }

    /// The first param named `key`.
    pub fn param(&self, key: &str) -> Option<&Value> {
        self.params.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

impl LlmResponse {
    /// Decodes the CBOR bytes returned by `routeiq_get_llm_response`.
    pub fn decode(bytes: &[u8]) -> Result<LlmResponse, DecodeError> {
        let v = cbor::decode(bytes).map_err(DecodeError::Cbor)?;
        LlmResponse::from_cbor(&v)
    }

    /// Builds the response from an already decoded CBOR value.
    pub fn from_cbor(v: &Value) -> Result<LlmResponse, DecodeError> {
        if v.as_map().is_none() {
            return Err(DecodeError::Shape("response: expected a map"));
        }
        let latency_ms = match field(v, "latency_ms") {
            None => 0.0,
            Some(l) => l.as_f64().ok_or(DecodeError::Shape("latency_ms: expected a number"))?,
        };
        let usage = match field(v, "usage") {
            None => Usage::default(),
            Some(u) => {
                if u.as_map().is_none() {
                    return Err(DecodeError::Shape("usage: expected a map"));
                }
                Usage {
                    prompt_tokens: uint_field(u, "prompt_tokens", u64::MAX, "usage.prompt_tokens: expected uint")?,
                    completion_tokens: uint_field(
                        u,
                        "completion_tokens",
                        u64::MAX,
                        "usage.completion_tokens: expected uint",
                    )?,
                    total_tokens: uint_field(u, "total_tokens", u64::MAX, "usage.total_tokens: expected uint")?,
                }
            }
        };
        Ok(LlmResponse {
            model: text_field(v, "model", "model: expected text")?,
            deployment: text_field(v, "deployment", "deployment: expected text")?,
            provider_model: text_field(v, "provider_model", "provider_model: expected text")?,
            strategy: text_field(v, "strategy", "strategy: expected text")?,
            status: uint_field(v, "status", u32::MAX as u64, "status: expected uint")? as u32,
            latency_ms,
            usage,
        })
    }

    /// The response in the host's CBOR shape (useful for tests and mocks).
    pub fn to_cbor(&self) -> Value {
        let int = |n: u64| Value::Int(n.min(i64::MAX as u64) as i64);
        Value::Map(vec![
            (Value::text("model"), Value::text(self.model.as_str())),
            (Value::text("deployment"), Value::text(self.deployment.as_str())),
            (Value::text("provider_model"), Value::text(self.provider_model.as_str())),
            (Value::text("strategy"), Value::text(self.strategy.as_str())),
            (Value::text("status"), Value::Int(self.status as i64)),
            (Value::text("latency_ms"), Value::Float(self.latency_ms)),
            (
                Value::text("usage"),
                Value::Map(vec![
                    (Value::text("prompt_tokens"), int(self.usage.prompt_tokens)),
                    (Value::text("completion_tokens"), int(self.usage.completion_tokens)),
                    (Value::text("total_tokens"), int(self.usage.total_tokens)),
                ]),
            ),
        ])
    }
}

/// The CBOR payload of `routeiq_set_llm_messages`: an array of
/// `{"role", "content"}` maps.
pub fn encode_messages(messages: &[Message]) -> Vec<u8> {
    cbor::encode(&Value::Array(messages.iter().map(Message::to_cbor).collect()))
}

// ---------------------------------------------------------------------------
// Host calls
// ---------------------------------------------------------------------------

/// Raw `routeiq_get_llm_request`: the CBOR bytes as the host sent them.
pub fn get_llm_request_bytes() -> Result<Vec<u8>, Status> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    unsafe {
        Status::check(sys::routeiq_get_llm_request(&mut data, &mut size))?;
        Ok(take_host_buffer(data, size))
    }
}

/// The parsed chat request. `Err(Status::NotFound)` when the stream is not
/// an LLM request, `Err(Status::Unimplemented)` without the `llm_request`
/// capability, `Err(Status::ParseFailure)` if the host's bytes do not
/// decode.
pub fn get_llm_request() -> Result<LlmRequest, Status> {
    let bytes = get_llm_request_bytes()?;
    LlmRequest::decode(&bytes).map_err(|_| Status::ParseFailure)
}

/// Raw `routeiq_set_llm_messages` with caller-provided bytes.
pub fn set_llm_messages_bytes(data: &[u8]) -> Result<(), Status> {
    unsafe { Status::check(sys::routeiq_set_llm_messages(data.as_ptr(), data.len())) }
}

/// Replaces the request's messages. The ABI's shape is `content: text`; a
/// `None` content is sent as CBOR `null`, which a host may refuse with
/// `Err(Status::ParseFailure)`. `Err(Status::BadArgument)` once the request
/// has gone upstream, `Err(Status::NotFound)` for a non-LLM request.
pub fn set_llm_messages(messages: &[Message]) -> Result<(), Status> {
    set_llm_messages_bytes(&encode_messages(messages))
}

/// Pins the model group (plain UTF-8, not CBOR). `Err(Status::NotFound)`
/// if the gateway has no such group, `Err(Status::BadArgument)` once the
/// request has gone upstream.
pub fn set_llm_model(model: &str) -> Result<(), Status> {
    unsafe { Status::check(sys::routeiq_set_llm_model(model.as_ptr(), model.len())) }
}

/// Raw `routeiq_get_llm_response`: the CBOR bytes as the host sent them.
pub fn get_llm_response_bytes() -> Result<Vec<u8>, Status> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    unsafe {
        Status::check(sys::routeiq_get_llm_response(&mut data, &mut size))?;
        Ok(take_host_buffer(data, size))
    }
}

/// What the upstream answered (available from `on_http_response_headers`
/// on; usage is complete at `on_log`). `Err(Status::NotFound)` before the
/// upstream answered or for non-LLM requests; `Err(Status::ParseFailure)`
/// if the host's bytes do not decode.
pub fn get_llm_response() -> Result<LlmResponse, Status> {
    let bytes = get_llm_response_bytes()?;
    LlmResponse::decode(&bytes).map_err(|_| Status::ParseFailure)
}
