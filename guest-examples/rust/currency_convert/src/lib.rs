//! # currency_convert — an MCP tool that asks a rates service by HTTP callout
//!
//! Input `{"amount": 10, "from": "EUR", "to": "USD"}`, output
//! `{"amount": 10.8, "currency": "USD", "rate": 1.08}`. The rate comes from
//! the operator's cluster named in the config (`clusters:`; the policy's
//! `callouts:` rule for this tool must grant it): `GET <path>?from=EUR&to=USD`
//! answering JSON with a numeric `rate`. The proxy-wasm way: the call
//! dispatches `proxy_http_call` and waits (`Step::Wait`); the response
//! arrives in `proxy_on_http_call_response`, where the tool sets its output
//! and finishes. A refused callout (cluster not granted) and a failed one are
//! tool errors naming why.
//!
//! Config: `{"cluster": "rates", "path": "/rates", "timeout_ms": 0}`
//! (timeout 0: the cluster's own). Capabilities: `http_callout`.

use routeiq_guest::config_json::{object_members, Value};
use routeiq_guest::hostcalls;
use routeiq_guest::tool::{CallResponse, Step};
use std::cell::RefCell;

routeiq_guest::manifest!(
    r#"{"name": "currency_convert", "version": "0.1.0",
  "description": "Convert an amount of money between currencies at the current rate (asked from the operator's rates service).",
  "capabilities": ["http_callout"],
  "input_schema": {"type": "object", "additionalProperties": false, "required": ["amount", "from", "to"],
    "properties": {"amount": {"type": "number", "description": "The amount to convert."},
      "from": {"type": "string", "pattern": "^[A-Z]{3}$", "description": "ISO 4217 code of its currency."},
      "to": {"type": "string", "pattern": "^[A-Z]{3}$", "description": "ISO 4217 code of the currency wanted."}}},
  "output_schema": {"type": "object", "required": ["amount", "currency", "rate"],
    "properties": {"amount": {"type": "number"}, "currency": {"type": "string"}, "rate": {"type": "number"}}}}"#
);

struct Pending {
    amount: f64,
    to: String,
}

thread_local! {
    // One call at a time runs on a tool's VM: the call waiting for its rate.
    static PENDING: RefCell<Option<Pending>> = RefCell::new(None);
}

fn number(v: Value) -> Option<f64> {
    match v {
        Value::Int(n) => Some(n as f64),
        Value::Float(x) => Some(x),
        _ => None,
    }
}

fn start(input: &[u8]) -> Step {
    let (mut amount, mut from, mut to) = (0.0, String::new(), String::new());
    for (key, v) in object_members(input) {
        match (key.as_str(), v) {
            ("amount", v) => amount = number(v).unwrap_or(0.0),
            ("from", Value::Str(s)) => from = s,
            ("to", Value::Str(s)) => to = s,
            _ => {}
        }
    }
    let (mut cluster, mut path, mut timeout_ms) = (String::from("rates"), String::from("/rates"), 0u32);
    for (key, v) in object_members(&routeiq_guest::tool::config()) {
        match (key.as_str(), v) {
            ("cluster", Value::Str(s)) => cluster = s,
            ("path", Value::Str(s)) => path = s,
            ("timeout_ms", Value::Int(n)) if n >= 0 => timeout_ms = n as u32,
            _ => {}
        }
    }
    // from/to match ^[A-Z]{3}$ (the host checked the input schema): safe in a query.
    let target = format!("{}?from={}&to={}", path, from, to);
    let headers = [(":method", "GET"), (":path", target.as_str()), (":authority", cluster.as_str()), ("accept", "application/json")];
    match hostcalls::http_call(&cluster, &headers, b"", &[], timeout_ms) {
        Ok(_) => {
            PENDING.with(|p| *p.borrow_mut() = Some(Pending { amount, to }));
            Step::Wait
        }
        Err(status) => Step::Done(Err(format!("the rates service {:?} cannot be called: {:?} (is it a cluster the policy grants this tool?)", cluster, status))),
    }
}

fn on_response(response: CallResponse) -> Step {
    let pending = match PENDING.with(|p| p.borrow_mut().take()) {
        Some(p) => p,
        None => return Step::Done(Err(String::from("a rate arrived for no call"))),
    };
    if response.status == 0 {
        return Step::Done(Err(format!("the rates service did not answer: {}", response.message)));
    }
    if response.status != 200 {
        return Step::Done(Err(format!("the rates service answered HTTP {}", response.status)));
    }
    let rate = object_members(&response.body).into_iter().find(|(k, _)| k == "rate").and_then(|(_, v)| number(v));
    match rate {
        Some(rate) if rate.is_finite() && rate > 0.0 => {
            let amount = pending.amount * rate;
            Step::Done(Ok(format!("{{\"amount\": {:?}, \"currency\": \"{}\", \"rate\": {:?}}}", amount, pending.to, rate)))
        }
        _ => Step::Done(Err(String::from("the rates service answered no positive numeric `rate`"))),
    }
}

routeiq_guest::tool_with_callouts!(start, on_response);
