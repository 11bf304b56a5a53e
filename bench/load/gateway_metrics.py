"""RouteIQ's own /metrics, read around a wrk phase: where the time inside the gateway went.

The gateway times every plugin callback and every request itself; the difference of two
scrapes divided by the requests served gives per-request plugin time, callbacks and
gateway-internal latency for exactly that phase (scrapes are not counted as requests).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import httpx

_SAMPLE = re.compile(r"^(routeiq_plugin_callback_seconds|routeiq_request_seconds)_(sum|count)(?:\{([^}]*)\})?\s+(\S+)$", re.M)
_TRAPS = re.compile(r'^routeiq_plugin_traps_total\{([^}]*)\}\s+(\S+)$', re.M)
_OPENED = re.compile(r'^routeiq_breaker_transitions_total\{[^}]*to="open"[^}]*\}\s+(\S+)$', re.M)
_QUARANTINED = re.compile(r'^routeiq_plugin_quarantined\{plugin="([^"]*)"\}\s+1(?:\.0)?$', re.M)


@dataclass
class Snapshot:
    callbacks: dict[tuple[str, str, str], float] = field(default_factory=dict)  # (plugin, callback, sum|count)
    request_sum_s: float = 0.0
    request_count: float = 0.0
    traps: float = 0.0                 # guest traps so far, all plugins
    quarantined: tuple[str, ...] = ()  # plugins quarantined right now
    breaker_opened: float = 0.0        # circuit breaker transitions to open so far


@dataclass
class PhaseCost:
    """Per request served by the gateway during one phase."""

    requests: float
    plugin_us: float            # time inside plugin callbacks (all plugins, all callbacks)
    gateway_us: float           # mean time the gateway measured for a request (its own view)
    callbacks: float            # plugin callbacks
    response_body_calls: float  # proxy_on_response_body calls of the first response-body plugin
    traps: float = 0.0          # guest traps during the phase (total, not per request)
    quarantined: tuple[str, ...] = ()
    breaker_opened: float = 0.0  # breakers that opened during the phase


def scrape(base_url: str) -> Snapshot:
    with httpx.Client(timeout=10, trust_env=False) as client:
        text = client.get(base_url + "/metrics").text
    snap = Snapshot()
    for name, kind, labels, value in _SAMPLE.findall(text):
        if name == "routeiq_request_seconds":
            if kind == "sum":
                snap.request_sum_s = float(value)
            else:
                snap.request_count = float(value)
            continue
        lab = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        snap.callbacks[(lab.get("plugin", ""), lab.get("callback", ""), kind)] = float(value)
    snap.traps = sum(float(v) for _, v in _TRAPS.findall(text))
    snap.quarantined = tuple(_QUARANTINED.findall(text))
    snap.breaker_opened = sum(float(v) for v in _OPENED.findall(text))
    return snap


def request_count(base_url: str) -> float:
    return scrape(base_url).request_count


def cost(before: Snapshot, after: Snapshot) -> PhaseCost:
    requests = after.request_count - before.request_count
    if requests <= 0:
        return PhaseCost(0.0, 0.0, 0.0, 0.0, 0.0, after.traps - before.traps, after.quarantined,
                         after.breaker_opened - before.breaker_opened)

    def delta(pred: object) -> float:
        return sum(v - before.callbacks.get(k, 0.0) for k, v in after.callbacks.items() if pred(k))  # type: ignore[operator]

    body_plugins = sorted({k[0] for k in after.callbacks if k[1] == "proxy_on_response_body"})
    first = body_plugins[0] if body_plugins else None
    return PhaseCost(
        requests=requests,
        plugin_us=delta(lambda k: k[2] == "sum") / requests * 1e6,
        gateway_us=(after.request_sum_s - before.request_sum_s) / requests * 1e6,
        callbacks=delta(lambda k: k[2] == "count") / requests,
        response_body_calls=delta(lambda k: k[2] == "count" and k[0] == first and k[1] == "proxy_on_response_body") / requests if first else 0.0,
        traps=after.traps - before.traps,
        quarantined=after.quarantined,
        breaker_opened=after.breaker_opened - before.breaker_opened,
    )
