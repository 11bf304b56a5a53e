"""Header map host calls: proxy_{get,set}_header_map_pairs, proxy_get_header_map_size,
proxy_{get,add,replace,remove}_header_map_value."""

from __future__ import annotations

from routeiq.abi.proxy_wasm import MapType, Pairs, Status

from .group import CallGroup
from .header_rules import HeaderRefused
from .state import HeaderMap, HostEnv

_KNOWN_MAPS = frozenset(int(m) for m in MapType)
# Plain ints: comparing against IntEnum members costs a method call each on this path.
_REQUEST_HEADERS = int(MapType.HTTP_REQUEST_HEADERS)
_RESPONSE_HEADERS = int(MapType.HTTP_RESPONSE_HEADERS)


def header_map(env: HostEnv, map_type: int) -> HeaderMap | None:
    """The map `map_type` names in the current context, or None (not in this phase)."""
    stream = env.stream
    if stream is not None:
        if map_type == _REQUEST_HEADERS:
            return stream.request_headers
        if map_type == _RESPONSE_HEADERS:
            return stream.response_headers
    if map_type in (MapType.HTTP_CALL_RESPONSE_HEADERS, MapType.HTTP_CALL_RESPONSE_TRAILERS):
        result = env.callout_response
        if result is None:
            return None
        pairs = result.headers if map_type == MapType.HTTP_CALL_RESPONSE_HEADERS else result.trailers
        return HeaderMap(pairs, writable=False)
    if stream is None:
        return None
    if map_type == MapType.HTTP_REQUEST_TRAILERS:
        return stream.request_trailers
    if map_type == MapType.HTTP_RESPONSE_TRAILERS:
        return stream.response_trailers
    return None


class HeaderCalls(CallGroup):
    def proxy_get_header_map_pairs(self, map_type: int) -> tuple[int, Pairs]:
        if map_type not in _KNOWN_MAPS:
            return Status.BAD_ARGUMENT, []
        hmap = header_map(self.env, map_type)
        return Status.OK, hmap.pairs if hmap is not None else []

    def proxy_get_header_map_size(self, map_type: int) -> tuple[int, int]:
        if map_type not in _KNOWN_MAPS:
            return Status.BAD_ARGUMENT, 0
        hmap = header_map(self.env, map_type)
        return Status.OK, hmap.serialized_size() if hmap is not None else 0

    def proxy_get_header_map_value(self, map_type: int, name: bytes) -> tuple[int, bytes]:
        # The stream's own maps first, header_map() inlined: the hottest host call.
        active = self.env.active
        stream = active.stream if active is not None else None
        if stream is not None and map_type == _REQUEST_HEADERS:
            hmap: HeaderMap | None = stream.request_headers
        elif stream is not None and map_type == _RESPONSE_HEADERS:
            hmap = stream.response_headers
        elif map_type not in _KNOWN_MAPS:
            return Status.BAD_ARGUMENT, b""
        else:
            hmap = header_map(self.env, map_type)
        value = hmap.get(name) if hmap is not None else None
        if value is None:
            return Status.NOT_FOUND, b""
        return Status.OK, value

    def _writable(self, map_type: int) -> HeaderMap | None:
        active = self.env.active  # the stream's own maps first, header_map() inlined
        stream = active.stream if active is not None else None
        if stream is not None and map_type == _REQUEST_HEADERS:
            hmap = stream.request_headers
        elif stream is not None and map_type == _RESPONSE_HEADERS:
            hmap = stream.response_headers
        elif map_type not in _KNOWN_MAPS:
            return None
        else:
            hmap = header_map(self.env, map_type)
        if hmap is None or not hmap.writable:
            return None
        return hmap

    def proxy_set_header_map_pairs(self, map_type: int, pairs: Pairs) -> int:
        hmap = self._writable(map_type)
        if hmap is None:
            return Status.BAD_ARGUMENT
        try:
            hmap.set_all(pairs)
        except HeaderRefused as refused:
            return self.deny("proxy_set_header_map_pairs", refused.reason, refused.detail, Status.BAD_ARGUMENT)
        return Status.OK

    def proxy_add_header_map_value(self, map_type: int, name: bytes, value: bytes) -> int:
        active = self.env.active  # _writable() inlined for the stream's own maps: the commonest write
        stream = active.stream if active is not None else None
        if stream is not None and map_type == _REQUEST_HEADERS:
            hmap: HeaderMap | None = stream.request_headers
        elif stream is not None and map_type == _RESPONSE_HEADERS:
            hmap = stream.response_headers
        else:
            hmap = self._writable(map_type)
        if hmap is None or not hmap.writable:
            return Status.BAD_ARGUMENT
        try:
            hmap.add(name, value)
        except HeaderRefused as refused:
            return self.deny("proxy_add_header_map_value", refused.reason, refused.detail, Status.BAD_ARGUMENT)
        return Status.OK

    def proxy_replace_header_map_value(self, map_type: int, name: bytes, value: bytes) -> int:
        hmap = self._writable(map_type)
        if hmap is None:
            return Status.BAD_ARGUMENT
        try:
            hmap.replace(name, value)
        except HeaderRefused as refused:
            return self.deny("proxy_replace_header_map_value", refused.reason, refused.detail, Status.BAD_ARGUMENT)
        return Status.OK

    def proxy_remove_header_map_value(self, map_type: int, name: bytes) -> int:
        hmap = self._writable(map_type)
        if hmap is None:
            return Status.BAD_ARGUMENT
        try:
            hmap.remove(name)
        except HeaderRefused as refused:
            return self.deny("proxy_remove_header_map_value", refused.reason, refused.detail, Status.BAD_ARGUMENT)
        return Status.OK
