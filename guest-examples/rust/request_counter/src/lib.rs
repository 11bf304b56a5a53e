//! # request_counter — request/response metrics
//!
//! Metrics (defined by the root context in `on_configure`, once per VM;
//! a metric whose definition failed is skipped afterwards):
//! * counter `requests_total`: +1 per request (`on_request_headers`)
//! * counter `responses_5xx_total`: +1 per response whose `:status` is
//!   `>= 500` (`on_response_headers`)
//! * gauge `in_flight`: +1 in `on_request_headers`, -1 in `on_log` (end of
//!   stream; if the host deletes the context without `on_log`, in `Drop`)
//! * histogram `request_header_bytes`: records the serialized size of the
//!   request headers (`proxy_get_header_map_size(0)`)
//!
//! `on_response_headers` also adds the response header
//! `x-requests-seen: <current value of requests_total>`
//! (`proxy_get_metric`); it is left out when that read fails.
//!
//! Errors from metric calls (e.g. 12 UNIMPLEMENTED or 2 BAD_ARGUMENT when
//! the `metrics` capability is denied) never affect the request: the first
//! one logs WARN `request_counter: metrics unavailable (status <s>)`, once
//! per VM, later ones are silent. All callbacks return `Continue`.
//!
//! Configuration: none (ignored).
//!
//! Host calls: `proxy_define_metric`, `proxy_increment_metric`,
//! `proxy_record_metric`, `proxy_get_metric`, `proxy_get_header_map_size`,
//! `proxy_get_header_map_value`, `proxy_add_header_map_value`, `proxy_log`.

use routeiq_guest::hostcalls;
use routeiq_guest::{Action, HttpContext, MapType, MetricType, RootContext, Status};
use std::cell::Cell;
use std::rc::Rc;

thread_local! {
    static WARNED: Cell<bool> = Cell::new(false);
}

/// Logs the first metric error of this VM at WARN; later ones are ignored.
fn note_error(s: Status) {
    if !WARNED.with(|w| w.replace(true)) {
        routeiq_guest::log_warn(&format!("request_counter: metrics unavailable (status {})", s.code()));
    }
}

fn check<T>(r: Result<T, Status>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(s) => {
            note_error(s);
            None
        }
    }
}

#[derive(Default)]
struct Metrics {
    requests_total: Cell<Option<u32>>,
    responses_5xx_total: Cell<Option<u32>>,
    in_flight: Cell<Option<u32>>,
    request_header_bytes: Cell<Option<u32>>,
}

impl Metrics {
    fn define_all(&self) {
        let all: [(&Cell<Option<u32>>, MetricType, &str); 4] = [
            (&self.requests_total, MetricType::Counter, "requests_total"),
            (&self.responses_5xx_total, MetricType::Counter, "responses_5xx_total"),
            (&self.in_flight, MetricType::Gauge, "in_flight"),
            (&self.request_header_bytes, MetricType::Histogram, "request_header_bytes"),
        ];
        for (slot, kind, name) in all.iter() {
            if slot.get().is_none() {
                slot.set(check(hostcalls::define_metric(*kind, name)));
            }
        }
    }
}

fn increment(id: &Cell<Option<u32>>, delta: i64) -> bool {
    match id.get() {
        Some(id) => check(hostcalls::increment_metric(id, delta)).is_some(),
        None => false,
    }
}

struct CounterRoot {
    metrics: Rc<Metrics>,
}

impl RootContext for CounterRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        self.metrics.define_all();
        true
    }

    fn create_http_context(&mut self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(RequestCounter {
            metrics: self.metrics.clone(),
            in_flight: false,
        }))
    }
}

struct RequestCounter {
    metrics: Rc<Metrics>,
    /// This request incremented `in_flight` and has not decremented it yet.
    in_flight: bool,
}

impl RequestCounter {
    fn leave(&mut self) {
        if self.in_flight {
            self.in_flight = false;
            increment(&self.metrics.in_flight, -1);
        }
    }
}

impl HttpContext for RequestCounter {
    fn on_http_request_headers(&mut self, _num_headers: usize, _eos: bool) -> Action {
        let m = &self.metrics;
        increment(&m.requests_total, 1);
        if !self.in_flight {
            self.in_flight = increment(&m.in_flight, 1);
        }
        if let Some(id) = m.request_header_bytes.get() {
            if let Ok(size) = hostcalls::get_map_size(MapType::HttpRequestHeaders) {
                check(hostcalls::record_metric(id, size as u64));
            }
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _eos: bool) -> Action {
        let m = &self.metrics;
        let status = hostcalls::get_http_response_header(":status")
            .and_then(|s| s.trim().parse::<u32>().ok())
            .unwrap_or(0);
        if status >= 500 {
            increment(&m.responses_5xx_total, 1);
        }
        if let Some(id) = m.requests_total.get() {
            if let Some(seen) = check(hostcalls::get_metric(id)) {
                let _ = hostcalls::add_http_response_header("x-requests-seen", &seen.to_string());
            }
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        self.leave();
    }
}

impl Drop for RequestCounter {
    fn drop(&mut self) {
        self.leave();
    }
}

routeiq_guest::manifest!(
    r#"{"name": "request_counter", "version": "0.1.0", "description": "Request, 5xx, in-flight and header-size metrics", "capabilities": ["metrics"]}"#
);

routeiq_guest::main! {
    routeiq_guest::set_root_context(|_context_id| -> Box<dyn RootContext> {
        Box::new(CounterRoot { metrics: Rc::new(Metrics::default()) })
    });
}
