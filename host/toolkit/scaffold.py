"""`routeiq plugin new --lang L NAME`: a plugin project that builds, tests and loads."""

from __future__ import annotations

import json
from pathlib import Path

from .project import LANGUAGES, PROJECT_FILE, ProjectError, templates_root
from .tool_scaffold import tool_files

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
AS_PROJECT_FILES = ("package.json", "package-lock.json", "asconfig.json", "routeiq-manifest-transform.mjs")


def _from_example(text: str, example: str, name: str, dash: str) -> str:
    """The tagger example, renamed: our template tests expect x-<name> headers."""
    return (
        text.replace("x-routeiq-tagged", f"x-{dash}")
        .replace("x-routeiq-plugin", f"x-{dash}-plugin")
        .replace(example, name)
    )


def _example_files(lang: str, name: str) -> dict[str, str | bytes]:
    root = templates_root()
    dash = name.replace("_", "-")
    if lang == "c":
        text = (root / "c" / "c_tagger" / "c_tagger.c").read_text()
        return {f"{name}.c": _from_example(text, "c_tagger", name, dash)}
    if lang == "python":
        text = (root / "python" / "py_tagger" / "app.py").read_text()
        manifest = json.dumps({"name": name, "version": "0.1.0", "capabilities": []}) + "\n"
        return {"app.py": _from_example(text, "py_tagger", name, dash), "manifest.json": manifest}
    # assemblyscript: a small npm project of its own (pinned by the copied lock file)
    base = root / "assemblyscript"
    files: dict[str, str | bytes] = {f: (base / f).read_bytes() for f in AS_PROJECT_FILES}
    for lib in sorted((base / "lib").glob("*.ts")):
        files[f"lib/{lib.name}"] = lib.read_bytes()
    files[f"{name}/index.ts"] = _from_example((base / "as_tagger" / "index.ts").read_text(), "as_tagger", name, dash)
    files[f"{name}/manifest.json"] = json.dumps({"name": name, "version": "0.1.0", "capabilities": []}) + "\n"
    return files


def scaffold(lang: str, name: str, parent: Path, kind: str = "filter") -> Path:
    """A filter project (`kind` "filter") or an MCP tool project (`kind` "tool")."""
    if lang not in LANGUAGES:
        raise ProjectError(f"--lang must be one of {', '.join(LANGUAGES)}")
    if not name.isidentifier():
        raise ProjectError(f"plugin name {name!r} must be an identifier (letters, digits, _)")
    directory = parent / name
    if directory.exists():
        raise ProjectError(f"{directory} already exists")
    values = {"name": name, "dash": name.replace("_", "-"), "lang": lang}
    files: dict[str, str | bytes] = {"README.md": README.format(**values), "tests.yaml": TESTS.format(**values)}
    if kind == "tool":
        files = dict(tool_files(lang, name))
    elif lang in TEMPLATES:
        files.update({rel: text.format(**values) for rel, text in TEMPLATES[lang].items()})
    else:
        files.update(_example_files(lang, name))
    files[PROJECT_FILE] = f"name: {name}\nlang: {lang}\n" + ("kind: tool\n" if kind == "tool" else "")
    for rel, content in files.items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return directory
