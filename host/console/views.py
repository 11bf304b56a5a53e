"""What each console page shows, read from the same objects the admin API, /metrics and
/health read (never a second bookkeeping). Secrets never leave here: plugin config values
the schema marks writeOnly / format password, or whose name says secret, are masked;
virtual keys are shown by their key_name (sk-...abcd) only."""

from __future__ import annotations

import asyncio
import os
import re
from dataclasses import dataclass
from typing import Any, Callable

from routeiq.gateway.plugin_set import PluginSet
from routeiq.gateway.replica_sync import ReplicaSync
from routeiq.identity.keys import KeyStore
from routeiq.identity.spend import SpendLedger
from routeiq.llm.router import LlmRouter
from routeiq.llm.routing_replication import SharedRouting
from routeiq.mcp.tools import ToolSet
from routeiq.services.audit import AuditLog
from routeiq.services.breakers import BreakerBoard
from routeiq.strict_json import JsonInputError, loads

from .series import LiveSeries

MASK = "••••••"
SECRET_NAME = re.compile(r"(secret|passw|api[_-]?key|credential|private[_-]?key|(^|_)token$|^authorization$)", re.IGNORECASE)


@dataclass
class ConsoleSources:
    """The narrow parts of the gateway the console reads (given by the composition root)."""

    plugins: PluginSet
    audit: AuditLog
    breakers: BreakerBoard
    series: LiveSeries
    router: Callable[[], LlmRouter | None]
    routing: SharedRouting | None
    replicas: ReplicaSync | None
    keys: KeyStore | None
    ledger: SpendLedger | None
    tools: ToolSet | None


def mask_secrets(value: Any, schema: dict[str, Any] | None, name: str = "") -> Any:
    """`value` with every secret-looking leaf replaced by MASK."""
    schema = schema if isinstance(schema, dict) else {}
    if schema.get("writeOnly") or schema.get("format") == "password" or (name and SECRET_NAME.search(name) and not isinstance(value, (dict, list))):
        return MASK
    if isinstance(value, dict):
        props = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        return {k: mask_secrets(v, props.get(k), k) for k, v in value.items()}
    if isinstance(value, list):
        items = schema.get("items") if isinstance(schema.get("items"), dict) else None
        return [mask_secrets(v, items, name) for v in value]
    return value


def plugin_config(plugin: Any) -> tuple[Any, bool]:
    """The running config as JSON with secrets masked, and whether it is JSON at all."""
    raw = plugin.spec.plugin_config
    if not raw.strip():
        return {}, True
    try:
        document = loads(raw)
    except JsonInputError:
        return None, False
    return mask_secrets(document, plugin.admission.manifest.config_schema), True


def plugin_summary(plugins: PluginSet) -> list[dict[str, Any]]:
    rows = []
    for entry in plugins.describe():
        row = {k: entry.get(k) for k in ("name", "kind", "state", "abi_version", "sha256", "fail_open", "traps", "quarantines", "quarantine_reason", "capabilities", "pinned_by", "last_error")}
        row["route_instances"] = entry.get("route_instances", [])
        # A plugin left out at startup (on_startup_failure: continue) has only a name, a state and its error.
        row["capabilities"] = row["capabilities"] or []
        row["traps"] = row["traps"] or 0
        rows.append(row)
    return rows


def plugin_detail(sources: ConsoleSources, name: str) -> dict[str, Any] | None:
    try:
        plugin = sources.plugins.plugin(name)
    except KeyError:
        return None
    manifest = plugin.admission.manifest
    config, is_json = plugin_config(plugin)
    denials = [
        {"call": call, "reason": reason, "count": count} for (who, call, reason), count in sorted(sources.audit.counts.items()) if who == plugin.spec.name
    ]
    return {
        **plugin.describe(),
        "version": manifest.version,
        "description": manifest.description,
        "manifest_origin": plugin.admission.manifest_origin,
        "config": config,
        "config_is_json": is_json,
        "schema": manifest.config_schema,
        "hooks": plugin.hooks.describe(),
        "denials": denials,
    }


async def nodes(sources: ConsoleSources) -> dict[str, Any]:
    """Every node and worker sharing operator state (kv: redis), else this worker alone."""
    if sources.replicas is None:
        return {"shared": False, "converged": True, "version": None, "nodes": [{"node": "this worker", "pid": os.getpid(), "converged": True, "version": None}]}
    view = await sources.replicas.view()
    return {"shared": True, **view}


def breakers(sources: ConsoleSources) -> list[dict[str, Any]]:
    return [{"name": b.name, **b.describe()} for b in sorted(sources.breakers.all(), key=lambda b: b.name)]


def routing(sources: ConsoleSources) -> dict[str, Any] | None:
    router = sources.router()
    if router is None:
        return None
    groups = []
    for group, deployments in sorted(router.groups.items()):
        groups.append(
            {
                "name": group,
                "deployments": [
                    {
                        "id": d.id,
                        "provider_model": d.routing.provider_model,
                        "kind": d.kind,
                        "cost_per_1k_tokens": d.routing.cost_per_1k_tokens,
                        "quality": d.routing.quality,
                        "weight": d.routing.weight,
                        "breaker": router.breaker(d).state,
                        "rpm": d.rpm,
                    }
                    for d in deployments
                ],
            }
        )
    shared = sources.routing.describe() if sources.routing is not None else {}
    return {
        "strategy": getattr(router.strategy, "name", type(router.strategy).__name__),
        "decisions": router.decisions,
        "fallbacks": router.fallbacks,
        "groups": groups,
        "artifact": shared.get("artifact"),
        "replication": shared.get("replication"),
    }


async def recent_requests(sources: ConsoleSources, limit: int = 25) -> list[dict[str, Any]]:
    """The latest charged requests (routing decisions with their deployment and cost)."""
    if sources.ledger is None:
        return []
    rows = await asyncio.to_thread(sources.ledger.logs, None, None, None, None, limit)
    keep = ("at", "request_id", "model_group", "deployment", "prompt_tokens", "completion_tokens", "cost", "team_id", "key_name", "key_alias")
    return [{k: row.get(k) for k in keep if k in row} for row in rows]


async def keys_and_spend(sources: ConsoleSources) -> dict[str, Any] | None:
    if sources.keys is None or sources.ledger is None:
        return None
    store, ledger = sources.keys, sources.ledger

    def read() -> dict[str, Any]:
        keys = [k.public() for k in store.list_keys()]
        names = {k["token_hash"]: k.get("key_alias") or k["key_name"] for k in keys}
        by_key = [{"label": names.get(r["token_hash"], r["token_hash"][:10]), "spend": r["spend"] or 0.0, "requests": r["requests"]} for r in ledger.totals_by("token_hash")]
        by_team = [{"label": r["team_id"] or "(no team)", "spend": r["spend"] or 0.0, "requests": r["requests"]} for r in ledger.totals_by("team_id")]
        by_model = [{"label": r["model_group"] or "?", "spend": r["spend"] or 0.0, "requests": r["requests"]} for r in ledger.totals_by("model_group")]
        teams = [t.public() for t in store.list_teams()]
        return {"keys": keys, "teams": teams, "by_key": by_key, "by_team": by_team, "by_model": by_model}

    return await asyncio.to_thread(read)


def tools(sources: ConsoleSources) -> list[dict[str, Any]]:
    if sources.tools is None:
        return []
    out = []
    for name, tool in sorted(sources.tools.tools.items()):
        allow = tool.allow
        who = (["anyone"] if allow.anyone else []) + [f"key {k}" for k in allow.keys] + [f"team {t}" for t in allow.teams]
        if allow.admin_role:
            who.append(f"admin keys ({allow.admin_role} or above)")
        stats = tool.stats
        out.append(
            {
                "name": name,
                "description": tool.admission.manifest.description,
                "sha256": tool.sha256,
                "capabilities": sorted(c.value for c in tool.admission.grant.capabilities),
                "who": who,
                "calls": stats.calls,
                "errors": stats.errors,
                "traps": stats.traps,
                "refused": stats.refused,
            }
        )
    return out


def audit(sources: ConsoleSources, plugin: str = "", call: str = "", reason: str = "", limit: int = 500) -> dict[str, Any]:
    """Recent denials, newest first, filtered by plugin, capability (host call) and reason."""
    records = sources.audit.recent()
    choices = {
        "plugins": sorted({r.plugin for r in records}),
        "calls": sorted({r.call for r in records}),
        "reasons": sorted({r.reason for r in records}),
    }
    picked = [r for r in reversed(records) if (not plugin or r.plugin == plugin) and (not call or r.call == call) and (not reason or r.reason == reason)]
    rows = [{"time": r.time, "plugin": r.plugin, "call": r.call, "reason": r.reason, "detail": r.detail, "request_id": r.request_id} for r in picked[:limit]]
    return {"rows": rows, "total": len(picked), **choices}
