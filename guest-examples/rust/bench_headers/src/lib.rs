//! # bench_headers — the benchmark's request-headers hook
//!
//! `on_request_headers` reads one request header (`x-api-key`) and adds one
//! (`x-routeiq-seen: 1`, or `x-routeiq-seen: anonymous` when the key is
//! missing). Nothing else. The same logic is written as a native Python hook
//! and for the other plugin hosts in `bench/`, so the columns compare hosts,
//! not filters.

use routeiq_guest::hostcalls;
use routeiq_guest::{Action, HttpContext, RootContext};

struct Root;

impl RootContext for Root {
    fn create_http_context(&mut self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Hook))
    }
}

struct Hook;

impl HttpContext for Hook {
    fn on_http_request_headers(&mut self, _num_headers: usize, _eos: bool) -> Action {
        let seen = match hostcalls::get_http_request_header("x-api-key") {
            Some(_) => "1",
            None => "anonymous",
        };
        let _ = hostcalls::add_http_request_header("x-routeiq-seen", seen);
        Action::Continue
    }
}

routeiq_guest::manifest!(r#"{"name": "bench_headers", "version": "0.1.0", "description": "Benchmark request-headers hook", "capabilities": []}"#);

routeiq_guest::main! {
    routeiq_guest::set_root_context(|_context_id| -> Box<dyn RootContext> { Box::new(Root) });
}
