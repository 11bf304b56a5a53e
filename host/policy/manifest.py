"""A plugin's own declaration of what it needs, read before the module is compiled."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from routeiq import strict_json
from routeiq.abi.capabilities import MANIFEST_SECTION, Capability


KEPT_ORIGIN = "kept from the module it replaced"


class ManifestError(ValueError):
    pass


class PluginManifest(BaseModel):
    """Other keys are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    name: str | None = Field(None, description="The plugin's own name (informational: the config's `plugins[].name` is the one used).")
    version: str | None = Field(None, description="The plugin's version (informational).")
    description: str | None = Field(None, description="One line about the plugin.")
    capabilities: list[Capability] = Field(default_factory=list, description="Capabilities it needs; one the policy does not grant refuses the plugin before it is compiled.")
    depends_on: list[str] = Field(default_factory=list, description="Plugins that must run before this one (the config's `depends_on` overrides).")
    priority: int = Field(0, description="Among plugins free to run, higher runs first (the config's `priority` overrides).")
    config_schema: dict[str, Any] | None = Field(None, description="JSON Schema of the plugin configuration (draft from `$schema`, else 2020-12); a config that does not match is refused.")
    input_schema: dict[str, Any] | None = Field(None, description="MCP tools (docs/mcp.md): JSON Schema of the call's arguments (an object schema); arguments that do not match are refused before the module runs. Required for a tool.")
    output_schema: dict[str, Any] | None = Field(None, description="MCP tools: JSON Schema of the result (an object schema); a result that does not match is a tool error. Optional.")

    @field_validator("config_schema", "input_schema", "output_schema")
    @classmethod
    def _valid_schema(cls, value: dict[str, Any] | None, info: ValidationInfo) -> dict[str, Any] | None:
        # A broken schema is the plugin author's error: refuse the module, not every config.
        if value is not None:
            from .config_schema import check_schema

            check_schema(value, info.field_name or "config_schema")
        return value


def _leb128(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ManifestError("truncated LEB128 in module header")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 35:
            raise ManifestError("LEB128 too long in module header")


def custom_sections(wasm: bytes) -> dict[str, bytes]:
    """Custom sections of a core module, by name (without compiling anything)."""
    if wasm[:4] != b"\0asm":
        raise ManifestError("not a WebAssembly binary")
    sections: dict[str, bytes] = {}
    pos = 8
    while pos < len(wasm):
        section_id = wasm[pos]
        size, pos = _leb128(wasm, pos + 1)
        end = pos + size
        if end > len(wasm):
            raise ManifestError("section runs past the end of the module")
        if section_id == 0:
            name_len, name_pos = _leb128(wasm, pos)
            name = wasm[name_pos : name_pos + name_len].decode("utf-8", "replace")
            sections[name] = wasm[name_pos + name_len : end]
        pos = end
    return sections


def _sidecars(wasm_path: Path) -> list[Path]:
    stem = wasm_path.with_suffix("")
    return [Path(f"{stem}.manifest.json"), Path(f"{stem}.manifest.yaml"), Path(f"{stem}.manifest.yml")]


def load_manifest(wasm_path: Path, wasm: bytes, kept: PluginManifest | None = None) -> tuple[PluginManifest, str]:
    """The manifest and where it came from ("section", a sidecar path, or "none").

    `kept`: the manifest of the module this one replaces (a hot swap), used when this
    module carries none, so a swap keeps the plugin's name, version and config_schema."""
    raw: object = None
    origin = "none"
    section = custom_sections(wasm).get(MANIFEST_SECTION)
    if section is not None:
        origin = f"custom section {MANIFEST_SECTION}"
        try:
            raw = strict_json.loads(section)  # a module's bytes: no NaN, bounded nesting
        except strict_json.JsonInputError as exc:
            raise ManifestError(f"{origin} is not valid JSON: {exc.message}") from None
    else:
        for sidecar in _sidecars(wasm_path):
            if sidecar.exists():
                origin = str(sidecar)
                try:
                    raw = yaml.safe_load(sidecar.read_text())
                except yaml.YAMLError as exc:
                    raise ManifestError(f"{sidecar}: invalid YAML/JSON: {exc}") from None
                break
    if raw is None:
        if kept is not None:
            return kept, KEPT_ORIGIN
        return PluginManifest(), origin
    try:
        return PluginManifest.model_validate(raw), origin
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ManifestError(f"{origin}: {problems}") from None
