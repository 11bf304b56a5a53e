"""Foreign functions: proxy_call_foreign_function(name, arguments) -> result, as Envoy's
host offers them (source/extensions/common/wasm/foreign.cc).

- `compress`: the arguments deflated in the zlib format, as zlib's `compress()` writes
  them (default level); a zlib failure answers SERIALIZATION_FAILURE.
- `uncompress`: the arguments inflated as zlib's `uncompress()` does: one complete zlib
  stream (bytes after its end are ignored); anything else (not zlib, truncated, empty)
  answers SERIALIZATION_FAILURE. Envoy grows its output buffer without bound; here the
  output stops at the plugin's `limits.max_buffer_bytes` (what it may hold of a body), and
  more answers SERIALIZATION_FAILURE, audited `foreign_output_limit` (a zip bomb does not
  fill the gateway's memory).
- `clear_route_cache`: what `proxy_clear_route_cache` does (the route is re-matched once
  the request headers have passed the chain); it answers OK and returns nothing.

Any other name (Envoy's `verify_signature`, `sign`, `set_envoy_filter_state`,
`declare_property`, `expr_create` / `expr_evaluate` / `expr_delete`, or a name no host
knows) answers NOT_FOUND, as Envoy answers for a function it does not register.
A result goes to a guest allocation (proxy_on_memory_allocate), like every bytes result.
"""

from __future__ import annotations

import zlib
from typing import Callable

from routeiq.abi.proxy_wasm import Status

from .group import CallGroup
from .stream import clear_route_cache

CALL = "proxy_call_foreign_function"


class ForeignCalls(CallGroup):
    def proxy_call_foreign_function(self, name: str, arguments: bytes) -> tuple[int, bytes]:
        function: Callable[[bytes], tuple[int, bytes]] | None = {
            "compress": self._compress,
            "uncompress": self._uncompress,
            "clear_route_cache": self._clear_route_cache,
        }.get(name)
        if function is None:
            return Status.NOT_FOUND, b""
        return function(arguments)

    def _compress(self, arguments: bytes) -> tuple[int, bytes]:
        try:
            return Status.OK, zlib.compress(arguments)
        except zlib.error:
            return Status.SERIALIZATION_FAILURE, b""

    def _uncompress(self, arguments: bytes) -> tuple[int, bytes]:
        limit = self.env.plugin.max_buffer_bytes
        inflater = zlib.decompressobj()
        try:
            out = inflater.decompress(arguments, limit + 1)
        except zlib.error:
            return Status.SERIALIZATION_FAILURE, b""
        if len(out) > limit:
            status = self.deny(CALL, "foreign_output_limit", f"uncompress: the output exceeds limits.max_buffer_bytes ({limit} bytes)", Status.SERIALIZATION_FAILURE)
            return status, b""
        if not inflater.eof:
            return Status.SERIALIZATION_FAILURE, b""  # truncated, or empty
        return Status.OK, out

    def _clear_route_cache(self, _arguments: bytes) -> tuple[int, bytes]:
        return clear_route_cache(self.env), b""
