"""`routeiq plugin new --kind tool --lang L NAME`: an MCP tool project that `plugin build`
builds and `plugin test` tests (tests.yaml in the tool case format, toolkit/tool_cases.py).

Every language gets the same small tool: `{"name": "Ada"}` -> `{"greeting": "Hello, Ada!"}`
(the greeting word from the config, default "Hello"), and a tool error for a blank name."""

from __future__ import annotations

import json

from .project import ProjectError

TOOL_LANGUAGES = ("rust", "python", "c")

INPUT_SCHEMA = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string", "maxLength": 200, "description": "Who to greet."}}}
OUTPUT_SCHEMA = {"type": "object", "required": ["greeting"], "properties": {"greeting": {"type": "string"}}}


def _manifest(name: str) -> dict[str, object]:
    return {"name": name, "version": "0.1.0", "description": "Greet someone by name.", "capabilities": [], "input_schema": INPUT_SCHEMA, "output_schema": OUTPUT_SCHEMA}


README = """# {name}

An MCP tool ({lang}) for RouteIQ, scaffolded by `routeiq plugin new --kind tool`.

    routeiq plugin build .     # -> build/{name}.wasm
    routeiq plugin test .      # runs tests.yaml (kind: tool) against the tool, no gateway needed
    routeiq plugin inspect build/{name}.wasm

Serve it from a gateway config (docs/mcp.md):

    mcp:
      tools:
        - name: {name}
          wasm: path/to/{name}/build/{name}.wasm
          config: {{greeting: Hi}}
          allow: {{anyone: true}}

and grant it in the operator policy (`capabilities: []` here):

    tools:
      {name}:
        sha256: "<routeiq plugin inspect prints it>"
        capabilities: []
"""

TESTS = """# routeiq plugin test . runs these cases against build/{name}.wasm
kind: tool
config: {{greeting: Hi}}
cases:
  - name: greets
    arguments: {{name: Ada}}
    expect:
      error: false
      result: {{greeting: "Hi, Ada!"}}
  - name: a blank name is a tool error
    arguments: {{name: "  "}}
    expect:
      error: true
      text_contains: a name is required
  - name: arguments that break the input schema never reach the tool
    arguments: {{name: 42}}
    expect:
      refused: true
"""

RUST = '''//! {name}: an MCP tool: `{{"name": "Ada"}}` -> `{{"greeting": "Hello, Ada!"}}` (the word
//! from the config's `greeting`, default "Hello"). The host checked the input against
//! input_schema before the call; a blank name is a tool error.

use routeiq_guest::config_json::{{object_members, Value}};

routeiq_guest::manifest!(r#"{manifest}"#);

fn json_string(s: &str) -> String {{
    let mut out = String::from("\\"");
    for c in s.chars() {{
        match c {{
            '"' => out.push_str("\\\\\\""),
            '\\\\' => out.push_str("\\\\\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\\\u{{:04x}}", c as u32)),
            c => out.push(c),
        }}
    }}
    out.push('"');
    out
}}

fn greet(input: &[u8]) -> Result<String, String> {{
    let mut name = String::new();
    for (key, value) in object_members(input) {{
        if let ("name", Value::Str(s)) = (key.as_str(), value) {{
            name = s;
        }}
    }}
    if name.trim().is_empty() {{
        return Err(String::from("a name is required"));
    }}
    let mut greeting = String::from("Hello");
    for (key, value) in object_members(&routeiq_guest::tool::config()) {{
        if let ("greeting", Value::Str(s)) = (key.as_str(), value) {{
            greeting = s;
        }}
    }}
    Ok(format!("{{{{\\"greeting\\": {{}}}}}}", json_string(&format!("{{}}, {{}}!", greeting, name.trim()))))
}}

routeiq_guest::tool!(greet);
'''

PYTHON = '''"""{name}: an MCP tool: {{"name": "Ada"}} -> {{"greeting": "Hello, Ada!"}} (the word from
the config's `greeting`, default "Hello"). The host checked the input against input_schema
before the call; a blank name is a tool error."""

import routeiq_tool as rt


def call(arguments: dict) -> dict:
    name = arguments["name"].strip()
    if not name:
        raise rt.ToolError("a name is required")
    greeting = (rt.config_json() or {{}}).get("greeting", "Hello")
    return {{"greeting": f"{{greeting}}, {{name}}!"}}
'''

C = '''/*
 * {name}: an MCP tool: {{"name": "Ada"}} -> {{"greeting": "Hello, Ada!"}} (the word from the
 * config's `greeting`, default "Hello"). The host checked the input against input_schema
 * before the call; a blank name is a tool error.
 */
#include "routeiq_tool.h"

PW_MANIFEST({manifest});

static void append_json_string(pw_text *out, const char *s) {{
    pw_text_str(out, "\\"");
    for (; *s; s++) {{
        if (*s == '"' || *s == '\\\\') pw_text_append(out, "\\\\", 1);
        if ((unsigned char)*s < 0x20) continue; /* control characters are dropped */
        pw_text_append(out, s, 1);
    }}
    pw_text_str(out, "\\"");
}}

RT_TOOL_CALL(input, len) {{
    char *name = 0, *greeting = 0;
    pw_json_get_string(input, len, "name", &name);
    const char *trimmed = name ? name : "";
    while (*trimmed == ' ' || *trimmed == '\\t') trimmed++;
    if (!*trimmed) {{
        pw_free(name);
        return rt_tool_error("a name is required");
    }}
    pw_bytes config = {{0, 0}};
    if (pw_get_buffer(PW_BUFFER_PLUGIN_CONFIGURATION, 0, 0x7fffffff, &config) == PW_OK && config.len) pw_json_get_string(config.data, config.len, "greeting", &greeting);
    char buf[512];
    pw_text line, out;
    char text[400];
    pw_text_init(&line, text, sizeof text);
    pw_text_str(&line, greeting ? greeting : "Hello");
    pw_text_str(&line, ", ");
    pw_text_str(&line, trimmed);
    pw_text_str(&line, "!");
    pw_text_init(&out, buf, sizeof buf);
    pw_text_str(&out, "{{\\"greeting\\": ");
    append_json_string(&out, line.buf);
    pw_text_str(&out, "}}");
    pw_free(name);
    pw_free(greeting);
    pw_bytes_free(&config);
    return rt_tool_result_n(out.buf, out.len);
}}
'''


def tool_files(lang: str, name: str) -> dict[str, str]:
    if lang not in TOOL_LANGUAGES:
        raise ProjectError(f"--kind tool supports --lang {', '.join(TOOL_LANGUAGES)} (AssemblyScript tools are not supported yet)")
    values = {"name": name, "lang": lang}
    manifest = _manifest(name)
    files = {"README.md": README.format(**values), "tests.yaml": TESTS.format(**values)}
    if lang == "rust":
        files["src/lib.rs"] = RUST.format(name=name, manifest=json.dumps(manifest))
    elif lang == "python":
        files["tool.py"] = PYTHON.format(name=name)
        files["manifest.json"] = json.dumps(manifest, indent=1) + "\n"
    else:
        files[f"{name}.c"] = C.format(name=name, manifest=json.dumps(manifest))
    return files
