"""MCP tool test cases in YAML (`routeiq plugin test DIR` on a tool project runs
DIR/tests.yaml through the gateway's own tool execution path, no gateway needed):

kind: tool
config: {stopwords: [the]}     # mcp.tools[].config (optional)
capabilities: [shared_kv]      # granted (optional; default: what the manifest declares)
limits: {timeout_ms: 200}      # mcp.tools[].limits (optional)
cases:
  - name: converts
    arguments: {value: 10, from: km, to: mi}
    expect:
      error: false                          # true: the call answers isError
      result: {unit: mi}                    # these members of the structured result
      text_contains: "..."                  # in the text content (the message of an error)
      refused: false                        # true: the arguments break input_schema
      logs_contain: ["..."]

HTTP callouts need the operator's clusters, which a case file has not: test a callout tool
in a gateway (docs/mcp.md)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Callable

import yaml
from pydantic import BaseModel, ConfigDict, Field

from routeiq.abi.proxy_wasm import LogLevel
from routeiq.config import LimitsConfig, McpToolConfig
from routeiq.gateway.plugin_logs import PluginLogBook
from routeiq.hostcalls.state import HostServices
from routeiq.mcp.tools import ToolInputError, WasmTool
from routeiq.policy.manifest import load_manifest
from routeiq.policy.model import parse_policy
from routeiq.runtime.wasm_runtime import WasmRuntime

from .cases import CaseResult, load_case_file


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ToolExpectation(_Strict):
    error: bool | None = None
    result: dict[str, Any] | None = None
    text_contains: str | None = None
    refused: bool = False
    logs_contain: list[str] = Field(default_factory=list)


class ToolCase(_Strict):
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    expect: ToolExpectation = Field(default_factory=ToolExpectation)


class ToolCaseFile(_Strict):
    kind: str = "tool"
    config: Any = None
    capabilities: list[str] | None = None
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    cases: list[ToolCase]


def is_tool_case_file(path: Path) -> bool:
    """A case file for a tool says `kind: tool` (the filter format has no `kind`)."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and data.get("kind") == "tool"


def load_tool_cases(path: Path) -> ToolCaseFile:
    return load_case_file(path, ToolCaseFile)


def _check(case: ToolCase, outcome: Any, refusal: str | None, logs: list[str]) -> list[str]:
    e = case.expect
    if refusal is not None:
        return [] if e.refused else [f"the arguments were refused: {refusal}"]
    fail = ["the arguments were accepted, expected a refusal by input_schema"] if e.refused else []
    if e.error is not None and outcome.is_error != e.error:
        fail.append(f"isError {outcome.is_error}, expected {e.error} ({outcome.text[:200]!r})")
    for key, want in (e.result or {}).items():
        have = outcome.structured.get(key) if isinstance(outcome.structured, dict) else None
        if have != want:
            fail.append(f"result.{key}: {have!r}, expected {want!r}")
    if e.text_contains is not None and e.text_contains not in outcome.text:
        fail.append(f"text does not contain {e.text_contains!r}: {outcome.text[:200]!r}")
    for needle in e.logs_contain:
        if not any(needle in line for line in logs):
            fail.append(f"no log line contains {needle!r} (logs: {logs})")
    return fail


def run_tool_cases(
    module: Path,
    cases_path: Path,
    name: str | None = None,
    on_result: Callable[[CaseResult], None] = lambda _: None,
    progress: Callable[[str], None] = lambda _: None,
    cache_dir: Path | None = None,
) -> list[CaseResult]:
    """Run every case on one WasmTool (the gateway's class: same sandbox, policy, checks);
    `cache_dir` keeps the compiled module between runs, as for filter cases."""
    spec = load_tool_cases(cases_path)
    name = name or module.stem
    wasm = module.read_bytes()
    declared = spec.capabilities if spec.capabilities is not None else [c.value for c in load_manifest(module, wasm)[0].capabilities]
    policy = parse_policy({"tools": {name: {"unpinned": True, "capabilities": list(declared)}}}, "plugin test policy")
    entry = McpToolConfig(name=name, wasm=str(module), config=spec.config, limits=spec.limits, log_level="debug")
    logbook = PluginLogBook()
    progress(f"loading tool {module.name} ({len(wasm) / 1e6:.1f} MB) and {len(spec.cases)} cases")
    tool = WasmTool(entry, module, WasmRuntime(cache_dir=cache_dir), policy, HostServices(), logbook, LogLevel.DEBUG, 1024 * 1024)
    results = []
    try:
        for case in spec.cases:
            seen = len(logbook.messages(name))
            outcome, refusal = None, None
            try:
                outcome = asyncio.run(tool.call(case.arguments, "plugin-test"))
            except ToolInputError as exc:
                refusal = str(exc)
            results.append(CaseResult(case.name, _check(case, outcome, refusal, logbook.messages(name)[seen:])))
            on_result(results[-1])
    finally:
        tool.close()
    return results
