"""`routeiq plugin new --lang L NAME`: a plugin project that builds, tests and loads."""

from __future__ import annotations

from pathlib import Path

from .project import PROJECT_FILE, LANGUAGES, ProjectError

README = """# {name}

A RouteIQ plugin ({lang}), scaffolded by `routeiq plugin new`.

    routeiq plugin build .     # -> build/{name}.wasm
    routeiq plugin test .      # runs tests.yaml against the plugin, no gateway needed
    routeiq plugin inspect build/{name}.wasm

Load it in a gateway config:

    plugins:
      - name: {name}
        wasm: path/to/{name}/build/{name}.wasm
        config: {{tag: hello}}

and grant what its manifest declares in the operator policy (`capabilities: []` here):

    plugins:
      {name}:
        sha256: "<routeiq plugin inspect prints it>"
        capabilities: []
"""

TESTS = """# routeiq plugin test . runs these cases against build/{name}.wasm
config: {{tag: hello}}
cases:
  - name: tags the request
    request: {{method: GET, path: /hello}}
    expect:
      status: 200
      local: false
      upstream_headers: {{x-{dash}: hello}}
      headers: {{x-{dash}-plugin: "{name}"}}
  - name: blocks x-block
    request: {{method: GET, path: /hello, headers: {{x-block: "1"}}}}
    expect:
      status: 403
      local: true
      body_contains: blocked by {name}
"""

RUST = '''//! {name}: adds `x-{dash}: <tag>` to requests (tag from the plugin configuration JSON,
//! default "{name}"), answers 403 when the request has `x-block`, and adds
//! `x-{dash}-plugin: {name}` to responses.

use routeiq_guest::hostcalls;
use routeiq_guest::{{Action, HttpContext, RootContext}};

routeiq_guest::manifest!(r#"{{"name": "{name}", "version": "0.1.0", "capabilities": []}}"#);

struct Root {{
    tag: String,
}}

impl RootContext for Root {{
    fn on_configure(&mut self, _size: usize) -> bool {{
        let config = hostcalls::get_plugin_configuration().unwrap_or_default();
        let text = String::from_utf8_lossy(&config);
        // A tiny reader for {{"tag": "..."}}; use a real parser for anything bigger.
        if let Some(start) = text.find("\\"tag\\"") {{
            let rest = &text[start + 5..];
            if let Some(open) = rest.find('"') {{
                if let Some(len) = rest[open + 1..].find('"') {{
                    self.tag = rest[open + 1..open + 1 + len].to_string();
                }}
            }}
        }}
        true
    }}

    fn create_http_context(&mut self, _context_id: u32) -> Option<Box<dyn HttpContext>> {{
        Some(Box::new(Filter {{ tag: self.tag.clone() }}))
    }}
}}

struct Filter {{
    tag: String,
}}

impl HttpContext for Filter {{
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {{
        if hostcalls::get_http_request_header("x-block").is_some() {{
            let _ = hostcalls::send_local_response(
                403,
                "blocked",
                br#"{{"error":{{"message":"blocked by {name}","type":"forbidden"}}}}"#,
                &[("content-type", "application/json")],
                hostcalls::NO_GRPC_STATUS,
            );
            return Action::Pause;
        }}
        let _ = hostcalls::add_http_request_header("x-{dash}", &self.tag);
        Action::Continue
    }}

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {{
        let _ = hostcalls::add_http_response_header("x-{dash}-plugin", "{name}");
        Action::Continue
    }}
}}

routeiq_guest::main! {{
    routeiq_guest::set_root_context(|_id| -> Box<dyn RootContext> {{ Box::new(Root {{ tag: "{name}".to_string() }}) }});
}}
'''

TEMPLATES: dict[str, dict[str, str]] = {"rust": {"src/lib.rs": RUST}}


def register_template(lang: str, files: dict[str, str]) -> None:
    """Toolchain modules add their language's files (kept beside their build code)."""
    TEMPLATES[lang] = files


def scaffold(lang: str, name: str, parent: Path) -> Path:
    if lang not in LANGUAGES:
        raise ProjectError(f"--lang must be one of {', '.join(LANGUAGES)}")
    if not name.isidentifier():
        raise ProjectError(f"plugin name {name!r} must be an identifier (letters, digits, _)")
    templates = TEMPLATES.get(lang)
    if templates is None:
        raise ProjectError(f"no template for {lang} yet")
    directory = parent / name
    if directory.exists():
        raise ProjectError(f"{directory} already exists")
    values = {"name": name, "dash": name.replace("_", "-"), "lang": lang}
    files = {PROJECT_FILE: f"name: {name}\nlang: {lang}\n", "README.md": README, "tests.yaml": TESTS, **templates}
    for rel, text in files.items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.format(**values) if rel != PROJECT_FILE else text)
    return directory
