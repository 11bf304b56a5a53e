"""Admitting a module: pin check, manifest vs grant, all before anything is compiled."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from routeiq.runtime.errors import PluginLoadError
from routeiq.runtime.limits import SandboxLimits

from . import signing
from .grants import CalloutRule, Grant, GrantLimits, deny_all
from .manifest import ManifestError, PluginManifest, load_manifest
from .model import CalloutRuleModel, PluginPolicyModel, PolicyModel

DEFAULT_PORTS = {"http": 80, "https": 443}


class AdmissionRefused(PluginLoadError):
    """The policy refuses the module; `reason` is the audit code (pin, capability, manifest)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Admission:
    grant: Grant
    manifest: PluginManifest
    manifest_origin: str
    limits: SandboxLimits


def _rule(r: CalloutRuleModel) -> CalloutRule:
    if r.cluster is not None:
        return CalloutRule("", "", 0, frozenset(r.methods), cluster=r.cluster)
    assert r.host is not None  # the model gives exactly one of host and cluster
    return CalloutRule(r.scheme, r.host.lower().strip("[]"), r.port or DEFAULT_PORTS[r.scheme], frozenset(r.methods))


def _grant(name: str, entry: PluginPolicyModel, pinned_by: str, vm_id: str) -> Grant:
    limits = entry.limits
    return Grant(
        plugin=name,
        capabilities=frozenset(entry.capabilities),
        callouts=tuple(_rule(r) for r in entry.callouts),
        kv_read=frozenset(entry.kv.read),
        kv_write=frozenset(entry.kv.write),
        kv_per_consumer=entry.kv.per_consumer,
        limits=GrantLimits(
            callouts_per_request=limits.callouts_per_request,
            callout_timeout_ms=limits.callout_timeout_ms,
            callout_max_response_bytes=limits.callout_max_response_bytes,
            kv_key_bytes=limits.kv_key_bytes,
            kv_value_bytes=limits.kv_value_bytes,
            queue_item_bytes=limits.queue_item_bytes,
            queue_max_items=limits.queue_max_items,
        ),
        pinned_by=pinned_by,
        vm_id=vm_id,
    )


def _capped(limits: SandboxLimits, entry: PluginPolicyModel | None) -> SandboxLimits:
    """The operator's policy caps what the plugin's config asks for."""
    if entry is None:
        return limits
    policy = entry.limits
    if policy.fuel is not None:
        limits = replace(limits, fuel=min(limits.fuel, policy.fuel))
    if policy.memory_mb is not None:
        limits = replace(limits, memory_bytes=min(limits.memory_bytes, policy.memory_mb * 1024 * 1024))
    if policy.timeout_ms is not None:
        limits = replace(limits, timeout_ms=min(limits.timeout_ms, policy.timeout_ms))
    return limits


def _verify_pin(name: str, entry: PluginPolicyModel, policy: PolicyModel, sha256: str) -> str:
    pins = []
    if entry.sha256:
        if entry.sha256.lower() != sha256:
            raise AdmissionRefused(
                "pin",
                f"module sha256 {sha256} does not match the policy's pin {entry.sha256.lower()} for {name!r} "
                "(the module was changed or rebuilt; update the pin only if you trust the new module)"
            )
        pins.append("sha256")
    if entry.signature is not None:
        key = policy.trusted_keys[entry.signature.key]
        if not signing.verify(key, entry.signature.value, sha256):
            raise AdmissionRefused("pin", f"the signature for {name!r} by trusted key {entry.signature.key!r} does not verify for module sha256 {sha256}")
        pins.append(f"signature ({entry.signature.key})")
    if not pins:
        return "unpinned (policy says unpinned: true)"
    return " and ".join(pins)


def admit(
    policy: PolicyModel | None,
    name: str,
    wasm_path: Path,
    wasm: bytes,
    sha256: str,
    limits: SandboxLimits,
    kept: PluginManifest | None = None,
    vm_id: str = "",
    section: str = "plugins",
) -> Admission:
    """Decide what a module may do, or refuse it with a message naming what is wrong.
    `kept`: the replaced module's manifest, for a swapped-in module that carries none;
    `vm_id`: the config's, whose namespace the module shares (its own is its name);
    `section`: the policy map the module's entry is in (`plugins`, or `tools` for MCP tools)."""
    entry = getattr(policy, section).get(name) if policy is not None else None
    if entry is None:
        grant = deny_all(name, vm_id)
    else:  # a tampered module is reported as such, before its manifest is trusted
        grant = _grant(name, entry, _verify_pin(name, entry, policy, sha256), vm_id)  # type: ignore[arg-type]
    try:
        manifest, origin = load_manifest(wasm_path, wasm, kept)
    except ManifestError as exc:
        raise AdmissionRefused("manifest", f"bad manifest: {exc}") from None
    missing = [c.value for c in manifest.capabilities if c not in grant.capabilities]
    if missing:
        where = "the policy has no entry for it" if entry is None else "the policy does not grant it"
        raise AdmissionRefused("capability", f"{'tool' if section == 'tools' else 'plugin'} {name!r} needs {', '.join(missing)} ({origin}), but {where}")
    return Admission(grant, manifest, origin, _capped(limits, entry))
