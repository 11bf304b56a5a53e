"""Capabilities: what an operator grants a plugin, and which host calls each one gates.

A plugin declares the capabilities it needs in its manifest (custom section
`routeiq.manifest`, or a `<module>.manifest.json` beside the module); the operator's
policy grants them. Host calls not listed here are part of every HTTP filter's basic
contract (headers, properties, logging, local responses) and are never gated.
"""

from __future__ import annotations

from enum import Enum


class Capability(str, Enum):
    HTTP_CALLOUT = "http_callout"
    SHARED_KV = "shared_kv"
    SHARED_QUEUE = "shared_queue"
    METRICS = "metrics"
    TIMERS = "timers"
    REQUEST_BODY = "request_body"
    RESPONSE_BODY = "response_body"
    LLM_REQUEST = "llm_request"  # the routeiq_* LLM request/response extension calls


GATED_CALLS: dict[str, Capability] = {
    "proxy_http_call": Capability.HTTP_CALLOUT,
    "proxy_dispatch_http_call": Capability.HTTP_CALLOUT,
    "proxy_get_shared_data": Capability.SHARED_KV,
    "proxy_set_shared_data": Capability.SHARED_KV,
    "proxy_register_shared_queue": Capability.SHARED_QUEUE,
    "proxy_resolve_shared_queue": Capability.SHARED_QUEUE,
    "proxy_enqueue_shared_queue": Capability.SHARED_QUEUE,
    "proxy_dequeue_shared_queue": Capability.SHARED_QUEUE,
    "proxy_define_metric": Capability.METRICS,
    "proxy_increment_metric": Capability.METRICS,
    "proxy_record_metric": Capability.METRICS,
    "proxy_get_metric": Capability.METRICS,
    "proxy_set_tick_period_milliseconds": Capability.TIMERS,
    "routeiq_get_llm_request": Capability.LLM_REQUEST,
    "routeiq_set_llm_messages": Capability.LLM_REQUEST,
    "routeiq_set_llm_model": Capability.LLM_REQUEST,
    "routeiq_get_llm_response": Capability.LLM_REQUEST,
}
"""Host calls gated as a whole. Body buffers are gated per buffer type (request_body,
response_body) inside proxy_{get,set}_buffer_bytes and proxy_get_buffer_status."""

MANIFEST_SECTION = "routeiq.manifest"

# Extension to proxy_get_shared_data: on NOT_FOUND the host writes this value to
# return_cas; proxy_set_shared_data with it succeeds only if the key is still absent
# (an atomic create). Hosts without the extension write 0, which sets unconditionally.
CREATE_IF_ABSENT_CAS = 0xFFFFFFFF
