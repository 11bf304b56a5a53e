"""`routeiq plugin inspect FILE.wasm`: what a module is, what it exports and imports, and
which capabilities its imports need."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import wasmtime

from routeiq.abi.capabilities import GATED_CALLS, MANIFEST_SECTION
from routeiq.abi.proxy_wasm import ABI_VERSION_EXPORTS
from routeiq.policy.manifest import ManifestError, custom_sections, load_manifest

BODY_CALLS = {"proxy_get_buffer_bytes", "proxy_set_buffer_bytes", "proxy_get_buffer_status"}


def is_component(wasm: bytes) -> bool:
    # Core modules are version 1 (01 00 00 00); components use layer 1 in bytes 6-7.
    return wasm[:4] == b"\0asm" and wasm[6:8] == b"\x01\x00"


def inspect_module(path: Path) -> dict[str, Any]:
    wasm = path.read_bytes()
    info: dict[str, Any] = {"file": str(path), "size": len(wasm), "sha256": hashlib.sha256(wasm).hexdigest()}
    try:
        manifest, origin = load_manifest(path, wasm)
        info["manifest"] = {"origin": origin, **manifest.model_dump(mode="json", exclude_none=True)}
    except ManifestError as exc:
        info["manifest"] = {"error": str(exc)}
    if is_component(wasm):
        info["kind"] = "component"
        # Which world, without compiling it (tens of seconds): the export's interface name
        # is in the binary as is. Loading checks the world for real (routeiq.mcp.component_tool).
        info["mcp_tool"] = b"routeiq:tool/tool@" in wasm
        return info
    info["kind"] = "core module"
    engine = wasmtime.Engine()
    try:
        module = wasmtime.Module(engine, wasm)
    except wasmtime.WasmtimeError as exc:
        info["error"] = f"not a valid module: {str(exc).splitlines()[0]}"
        return info
    exports = [e.name for e in module.exports]
    info["abi_version"] = next((v for n, v in ABI_VERSION_EXPORTS.items() if n in exports), None)
    info["exports"] = exports
    info["callbacks"] = [e for e in exports if e.startswith("proxy_on_") or e in ("_initialize", "_start", "malloc")]
    info["mcp_tool"] = "routeiq_tool_call" in exports  # docs/mcp.md: served with mcp.tools, not plugins
    imports = []
    needs: set[str] = set()
    for imp in module.imports:
        name = imp.name or ""
        capability = GATED_CALLS.get(name)
        if capability is not None:
            needs.add(capability.value)
            note = capability.value
        elif name in BODY_CALLS:
            note = "request_body / response_body when used on body buffers"
        elif name in ("routeiq_tool_set_output", "routeiq_tool_finish"):
            note = "MCP tools only (abi/mcp_tool.md)"
        else:
            note = "always allowed"
        imports.append({"module": imp.module, "name": name, "capability": note})
    info["imports"] = imports
    info["capabilities_needed_by_imports"] = sorted(needs)
    info["custom_sections"] = sorted(custom_sections(wasm))
    declared = set(info.get("manifest", {}).get("capabilities", []))
    missing = sorted(needs - declared)
    if missing:
        info["warning"] = f"imports need {', '.join(missing)} but the manifest does not declare it: those calls will be denied unless granted"
    return info


def format_inspection(info: dict[str, Any]) -> str:
    lines = [f"{info['file']}", f"  kind:      {info['kind']}", f"  size:      {info['size']} bytes", f"  sha256:    {info['sha256']}"]
    if "error" in info:
        lines.append(f"  ERROR:     {info['error']}")
        return "\n".join(lines)
    if info["kind"] == "core module":
        lines.append(f"  ABI:       proxy-wasm {info['abi_version'] or '(no proxy_abi_version_* export: not loadable)'}")
        lines.append(f"  callbacks: {', '.join(info['callbacks']) or 'none'}")
    if info.get("mcp_tool"):
        schemas = [k for k in ("input_schema", "output_schema") if k in info.get("manifest", {})]
        export = "routeiq_tool_call" if info["kind"] == "core module" else "routeiq:tool/tool"
        lines.append(f"  MCP tool:  exports {export}; manifest declares {', '.join(schemas) or 'no schemas (input_schema is required)'} (docs/mcp.md)")
    manifest = info.get("manifest", {})
    if "error" in manifest:
        lines.append(f"  manifest:  ERROR {manifest['error']}")
    else:
        lines.append(f"  manifest:  {manifest.get('origin')}; capabilities {manifest.get('capabilities', [])}")
        build = manifest.get("build")
        if isinstance(build, dict):  # what `routeiq plugin build` recorded: rebuild with this to reproduce the sha256
            lines.append(f"  built by:  {build.get('lang')} with {build.get('toolchain')}")
    if info["kind"] == "core module":
        lines.append("  imports:")
        for imp in info["imports"]:
            lines.append(f"    {imp['module']}.{imp['name']:<40} {imp['capability']}")
        if info.get("warning"):
            lines.append(f"  warning:   {info['warning']}")
    return "\n".join(lines)


def to_json(info: dict[str, Any]) -> str:
    return json.dumps(info, indent=2)


__all__ = ["inspect_module", "format_inspection", "to_json", "MANIFEST_SECTION"]
