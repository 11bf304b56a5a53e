"""`routeiq policy check`: what each configured plugin may do, and what would be refused."""

from __future__ import annotations

import hashlib
from pathlib import Path

from routeiq.config import LoadedConfig
from routeiq.policy.admission import admit
from routeiq.policy.model import PolicyModel
from routeiq.runtime.errors import PluginLoadError
from routeiq.runtime.limits import SandboxLimits


def explain(config: LoadedConfig) -> tuple[str, bool]:
    """A human report and whether every plugin would be admitted."""
    policy = config.load_policy()
    if config.policy_override is not None:
        source = str(config.policy_override)
    elif isinstance(config.model.policy, str):
        source = config.model.policy
    elif config.model.policy is not None:
        source = f"inline in {config.path}"
    else:
        source = "none (every plugin is denied every capability)"
    lines = [f"policy: {source}"]
    ok = True
    for spec in config.plugin_specs():
        ok = _explain_one(lines, policy, "plugin", spec.name, spec.wasm_path, spec.limits, spec.vm_id, "plugins") and ok
    for tool in config.model.mcp.tools:  # MCP tools: the policy's `tools:` entries (docs/mcp.md)
        limits = SandboxLimits(fuel=tool.limits.fuel, memory_bytes=tool.limits.memory_mb * 1024 * 1024, timeout_ms=tool.limits.timeout_ms)
        ok = _explain_one(lines, policy, "tool", tool.name, config.resolve(tool.wasm), limits, "", "tools") and ok
    return "\n".join(lines), ok


def _explain_one(lines: list[str], policy: PolicyModel | None, kind: str, name: str, wasm_path: Path, limits: SandboxLimits, vm_id: str, section: str) -> bool:
    """Append what one module may do; False if it would be refused."""
    lines.append("")
    lines.append(f"{kind} {name} ({wasm_path})")
    try:
        wasm = wasm_path.read_bytes()
    except OSError as exc:
        lines.append(f"  REFUSED: cannot read module: {exc.strerror or exc}")
        return False
    digest = hashlib.sha256(wasm).hexdigest()
    lines.append(f"  sha256:        {digest}")
    try:
        admission = admit(policy, name, wasm_path, wasm, digest, limits, vm_id=vm_id, section=section)
    except PluginLoadError as exc:
        lines.append(f"  REFUSED: {exc}")
        return False
    grant, manifest = admission.grant, admission.manifest
    needs = ", ".join(c.value for c in manifest.capabilities) or "nothing"
    lines.append(f"  manifest:      {admission.manifest_origin}; needs {needs}")
    lines.append(f"  pinned by:     {grant.pinned_by}")
    lines.append(f"  capabilities:  {', '.join(sorted(c.value for c in grant.capabilities)) or 'none'}")
    if grant.callouts:
        lines.append("  callouts:      " + "; ".join(r.describe() for r in grant.callouts))
    lines.append(f"  kv namespaces: own {grant.namespace!r}" + (f"; read {sorted(grant.kv_read)}" if grant.kv_read else "") + (f"; write {sorted(grant.kv_write)}" if grant.kv_write else ""))
    limits = admission.limits
    gl = grant.limits
    lines.append(
        f"  limits:        fuel {limits.fuel}, memory {limits.memory_bytes // (1024 * 1024)} MiB, {limits.timeout_ms} ms per callback; "
        f"{gl.callouts_per_request} callouts/request ({gl.callout_timeout_ms} ms, {gl.callout_max_response_bytes} B max); "
        f"kv key {gl.kv_key_bytes} B, value {gl.kv_value_bytes} B"
    )
    if grant.pinned_by.startswith("unpinned"):
        lines.append("  warning:       unpinned: any module named like this gets these grants")
    return True
