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
"""Host calls gated as a whole: for a plugin without the capability they are linked to
a stub that audits the call and answers UNIMPLEMENTED (as proxy-wasm-cpp-host links
stubs for calls outside `allowed_capabilities`). Body buffers are gated per buffer type
(request_body, response_body) inside proxy_{get,set}_buffer_bytes and
proxy_get_buffer_status, since the argument decides."""

UNGATED_CALLS: frozenset[str] = frozenset(
    {
        # logging, clock, configuration
        "proxy_log",
        "proxy_get_log_level",
        "proxy_get_current_time_nanoseconds",
        # header maps
        "proxy_get_header_map_pairs",
        "proxy_set_header_map_pairs",
        "proxy_get_header_map_size",
        "proxy_get_header_map_value",
        "proxy_add_header_map_value",
        "proxy_replace_header_map_value",
        "proxy_remove_header_map_value",
        # buffers (gated per buffer type, see above)
        "proxy_get_buffer_bytes",
        "proxy_set_buffer_bytes",
        "proxy_get_buffer_status",
        # stream control and contexts
        "proxy_send_local_response",
        "proxy_continue_stream",
        "proxy_close_stream",
        "proxy_continue_request",
        "proxy_continue_response",
        "proxy_clear_route_cache",
        "proxy_set_effective_context",
        "proxy_done",
        # properties
        "proxy_get_property",
        "proxy_set_property",
        # the status of the callout response being delivered (no callout without the grant)
        "proxy_get_status",
        # foreign functions (compress, uncompress, clear_route_cache): pure computation on
        # the plugin's own bytes, bounded by its limits, like Envoy's
        "proxy_call_foreign_function",
    }
)
"""The basic contract of every HTTP filter. Every host call the host links is in exactly
one of GATED_CALLS and UNGATED_CALLS: the import tables refuse to build otherwise, so a
new host call cannot be added without deciding its gate."""

MANIFEST_SECTION = "routeiq.manifest"

# Extension to proxy_get_shared_data: on NOT_FOUND the host writes this value to
# return_cas; proxy_set_shared_data with it succeeds only if the key is still absent
# (an atomic create). Hosts without the extension write 0, which sets unconditionally.
CREATE_IF_ABSENT_CAS = 0xFFFFFFFF
