//! # tagger — header tagging and deny-list example filter
//!
//! Behaviour (per HTTP request):
//! * **Deny rule** (checked in `on_request_headers`): the request is denied
//!   if it carries a header named `deny_header` (any value, name compared
//!   lower-case), OR its path starts with one of `deny_paths` (plain byte
//!   prefix match; the path is the `:path` request header, or the
//!   `request.path` property when no `:path` header exists). A denied
//!   request is answered with `proxy_send_local_response`:
//!   status `403`, details `blocked by tagger`, header
//!   `content-type: application/json`, body
//!   `{"error":{"message":"blocked by tagger","type":"forbidden"}}`,
//!   and the callback returns `Pause`.
//! * Otherwise the request header `x-routeiq-tagged: <tag>` is added and the
//!   callback returns `Continue`.
//! * `on_response_headers` always adds `x-routeiq-plugin: tagger` (also to
//!   the local 403 response if the host runs response callbacks for it).
//!
//! Plugin configuration (JSON object, all keys optional, unknown keys and
//! non-matching types ignored):
//! `{"tag":"demo","deny_header":"x-block","deny_paths":["/admin"]}`
//! Defaults: `tag="routeiq"`, `deny_header="x-block"`, `deny_paths=[]`.
//! An empty or unparsable configuration means all defaults.

use routeiq_guest::config_json as json;

use routeiq_guest::hostcalls;
use routeiq_guest::{Action, HttpContext, RootContext};
use std::rc::Rc;

const DENY_BODY: &str = r#"{"error":{"message":"blocked by tagger","type":"forbidden"}}"#;

#[derive(Clone, Debug)]
struct Config {
    tag: String,
    deny_header: String,
    deny_paths: Vec<String>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            tag: "routeiq".to_string(),
            deny_header: "x-block".to_string(),
            deny_paths: Vec::new(),
        }
    }
}

impl Config {
    fn parse(bytes: &[u8]) -> Config {
        let mut c = Config::default();
        for (key, value) in json::object_members(bytes) {
            match (key.as_str(), value) {
                ("tag", json::Value::Str(s)) => c.tag = s,
                ("deny_header", json::Value::Str(s)) => c.deny_header = s.to_ascii_lowercase(),
                ("deny_paths", json::Value::StrList(l)) => c.deny_paths = l,
                _ => {}
            }
        }
        c
    }
}

struct TaggerRoot {
    config: Rc<Config>,
}

impl RootContext for TaggerRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = hostcalls::get_plugin_configuration().unwrap_or_default();
        let config = Config::parse(&bytes);
        routeiq_guest::log_debug(&format!(
            "tagger: tag={} deny_header={} deny_paths={:?}",
            config.tag, config.deny_header, config.deny_paths
        ));
        self.config = Rc::new(config);
        true
    }

    fn create_http_context(&mut self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Tagger {
            config: self.config.clone(),
        }))
    }
}

struct Tagger {
    config: Rc<Config>,
}

impl Tagger {
    fn request_path() -> String {
        if let Some(p) = hostcalls::get_http_request_header(":path") {
            return p;
        }
        hostcalls::get_property_string(&["request", "path"])
            .ok()
            .and_then(|v| v)
            .unwrap_or_default()
    }

    fn denied(&self) -> bool {
        if !self.config.deny_header.is_empty()
            && hostcalls::get_http_request_header(&self.config.deny_header).is_some()
        {
            return true;
        }
        if self.config.deny_paths.is_empty() {
            return false;
        }
        let path = Tagger::request_path();
        self.config.deny_paths.iter().any(|p| path.starts_with(p.as_str()))
    }
}

impl HttpContext for Tagger {
    fn on_http_request_headers(&mut self, _num_headers: usize, _eos: bool) -> Action {
        if self.denied() {
            let _ = hostcalls::send_local_response(
                403,
                "blocked by tagger",
                DENY_BODY.as_bytes(),
                &[("content-type", "application/json")],
                hostcalls::NO_GRPC_STATUS,
            );
            return Action::Pause;
        }
        let _ = hostcalls::add_http_request_header("x-routeiq-tagged", &self.config.tag);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _eos: bool) -> Action {
        let _ = hostcalls::add_http_response_header("x-routeiq-plugin", "tagger");
        Action::Continue
    }
}

routeiq_guest::manifest!(r#"{"name": "tagger", "version": "0.1.0", "description": "Header tagging and deny-list example filter", "capabilities": []}"#);

routeiq_guest::main! {
    routeiq_guest::set_root_context(|_context_id| -> Box<dyn RootContext> {
        Box::new(TaggerRoot { config: Rc::new(Config::default()) })
    });
}
