"""Property host calls: proxy_get_property, proxy_set_property.

Paths follow Envoy's attribute names (request.path, request.headers.<name>, plugin_name,
...) with Envoy's encodings: strings raw bytes, integers 8-byte little-endian, booleans
one byte, timestamps and durations int64 ns, maps serialized like header maps. An
attribute the gateway cannot answer truthfully (connection ids, TLS details, upstream
hosts) is NOT_FOUND, never a made-up value. The route attributes (`route_name`,
`cluster_name`, `route_metadata`, and their `xds.` forms) come from the matched route of
config `routes:`; a path into `route_metadata` walks it as Envoy walks the Metadata
message (`filter_metadata`, then the filter's Struct), leaves encoded as CEL values. Values are computed on demand: a
filter reading one attribute per request pays for that one only.
Paths a plugin sets are kept per request (Envoy's filter state), so plugins can talk.
`routeiq.consumer.<id|key_hash|key_name|key_alias|user_id|team_id|team_alias>` is the
virtual key the gateway authenticated (NOT_FOUND without one).
"""

from __future__ import annotations

import struct
from typing import Any, Callable

from google.protobuf import struct_pb2

from routeiq.abi.proxy_wasm import Status, encode_map

from .group import CallGroup
from .state import HeaderMap, HttpStream, RouteInfo

_I64 = struct.Struct("<q")


def _int(value: int) -> bytes:
    return _I64.pack(value)


def _map(headers: HeaderMap) -> bytes:
    # Envoy serializes its header map as a CEL map: every key once (pseudo-headers
    # included), repeated headers' values joined by commas.
    joined: dict[bytes, list[bytes]] = {}
    for k, v in headers.pairs:
        joined.setdefault(k, []).append(v)
    return encode_map([(k, b",".join(vs)) for k, vs in joined.items()])


def _byte_size(headers: HeaderMap | None) -> int:
    # Envoy's HeaderMap::byteSize(): names and values, no framing.
    return sum(len(k) + len(v) for k, v in headers.pairs) if headers is not None else 0


def _path(stream: HttpStream) -> bytes:
    return stream.request_headers.get(b":path") or b"/"


def _request_size(stream: HttpStream) -> bytes:
    # Envoy: the content-length header when there is one, else the body bytes received.
    length = stream.request_headers.get(b"content-length")
    if length is not None and length.isdigit():
        return _int(int(length))
    return _int(stream.request_body_size)


Getter = Callable[[HttpStream], "bytes | None"]

_REQUEST: dict[bytes, Getter] = {
    b"path": _path,
    b"url_path": lambda s: _path(s).split(b"?", 1)[0],
    b"query": lambda s: _path(s).partition(b"?")[2],
    b"host": lambda s: s.request_headers.get(b":authority") or s.request_headers.get(b"host"),
    b"scheme": lambda s: s.request_headers.get(b":scheme") or s.scheme.encode(),
    b"method": lambda s: s.request_headers.get(b":method"),
    b"id": lambda s: s.request_id.encode(),
    b"protocol": lambda s: s.protocol.encode(),
    b"time": lambda s: _int(s.start_ns),
    # Envoy answers the duration once the request is complete (on_done, on_log).
    b"duration": lambda s: _int(s.end_ns - s.start_ns) if s.end_ns else None,
    b"useragent": lambda s: s.request_headers.get(b"user-agent"),
    b"referer": lambda s: s.request_headers.get(b"referer"),
    b"size": _request_size,
    b"total_size": lambda s: _int(s.request_body_size + _byte_size(s.request_headers)),
}


def _grpc_status(stream: HttpStream) -> bytes | None:
    for headers in (stream.response_trailers, stream.response_headers):
        value = headers.get(b"grpc-status") if headers is not None else None
        if value is not None and value.isdigit():
            return _int(int(value))
    return None


_RESPONSE: dict[bytes, Getter] = {
    b"code": lambda s: _int(s.response_code),
    b"code_details": lambda s: s.response_details.encode() if s.response_details else None,
    b"grpc_status": _grpc_status,
    b"size": lambda s: _int(s.response_body_size),
    b"total_size": lambda s: _int(s.response_body_size + _byte_size(s.response_headers) + _byte_size(s.response_trailers)),
}

_CONNECTION: dict[bytes, Getter] = {
    # Without TLS there is no peer certificate: Envoy answers false. Over TLS the ASGI
    # scope does not say whether the client presented one, so that stays NOT_FOUND.
    b"mtls": lambda s: b"\x00" if s.scheme == "http" else None,
}


def _map_property(headers: HeaderMap | None, rest: tuple[bytes, ...]) -> bytes | None:
    if headers is None or len(rest) > 1:
        return None
    return headers.get(rest[0]) if rest else _map(headers)


def _request_property(stream: HttpStream, key: bytes, rest: tuple[bytes, ...]) -> bytes | None:
    if key == b"headers":
        return _map_property(stream.request_headers, rest)
    getter = _REQUEST.get(key)
    return getter(stream) if getter is not None and not rest else None


def _response_property(stream: HttpStream, key: bytes, rest: tuple[bytes, ...]) -> bytes | None:
    if not stream.response_code:
        return None  # no response yet (request callbacks)
    if key == b"headers":
        return _map_property(stream.response_headers, rest)
    if key == b"trailers":
        return _map_property(stream.response_trailers, rest)
    getter = _RESPONSE.get(key)
    return getter(stream) if getter is not None and not rest else None


def _address(endpoint: tuple[str, int] | None, key: bytes) -> bytes | None:
    if endpoint is None:
        return None
    host, port = endpoint
    if key == b"address":
        return f"{host}:{port}".encode()
    if key == b"port":
        return _int(port)
    return None


class _Unserializable(Exception):
    """A value Envoy cannot serialize either (a null): SERIALIZATION_FAILURE."""


def _cel_value(value: Any) -> bytes:
    """A Struct value as Envoy's serializeValue writes the CEL value it unwraps to:
    strings raw, numbers as doubles, booleans one byte, maps and lists as pairs."""
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bool):
        return b"\x01" if value else b"\x00"
    if isinstance(value, (int, float)):
        return struct.pack("<d", float(value))  # a Struct number is a double
    if isinstance(value, dict):
        return encode_map([(str(k).encode(), _cel_value(v)) for k, v in value.items()])
    if isinstance(value, list):
        return encode_map([(_cel_value(v), b"") for v in value])
    raise _Unserializable()


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _metadata_message(metadata: dict[str, Any]) -> bytes:
    """envoy.config.core.v3.Metadata in protobuf wire format (what Envoy answers for the
    whole message): field 1, map<string, google.protobuf.Struct> filter_metadata."""
    out = b""
    for name, fields in (metadata.get("filter_metadata") or {}).items():
        value = struct_pb2.Struct()
        value.update(fields)
        out += _field(1, _field(1, str(name).encode()) + _field(2, value.SerializeToString()))
    return out


def _route_metadata(route: RouteInfo, rest: tuple[bytes, ...]) -> bytes | None:
    if not rest:
        return _metadata_message(route.metadata)
    if rest[0] == b"typed_filter_metadata":
        return encode_map([]) if len(rest) == 1 else None
    if rest[0] != b"filter_metadata":
        return None  # not a field of the Metadata message
    value: Any = route.metadata.get("filter_metadata") or {}
    for segment in rest[1:]:
        key = segment.decode("utf-8", "replace")
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return None
    return _cel_value(value)


def _route_property(route: RouteInfo | None, key: bytes, rest: tuple[bytes, ...]) -> bytes | None:
    if route is None:
        return None
    if key == b"route_name" and not rest:
        return route.name.encode()
    if key == b"cluster_name" and not rest:
        return route.cluster_name.encode() if route.cluster_name is not None else None
    if key == b"route_metadata":
        return _route_metadata(route, rest)
    return None


_ROUTE_KEYS = frozenset({b"route_name", b"cluster_name", b"route_metadata"})


class PropertyCalls(CallGroup):
    def resolve(self, path: tuple[bytes, ...]) -> bytes | None:
        plugin = self.env.plugin
        stream = self.env.stream
        if stream is not None and path in stream.filter_state:
            return stream.filter_state[path]
        if len(path) == 1:
            key = path[0]
            if key == b"plugin_name":
                return plugin.name.encode()
            if key == b"plugin_root_id":
                return plugin.root_id.encode()
            if key == b"plugin_vm_id":
                return plugin.vm_id.encode()
        if stream is None:
            return None
        if path and path[0] in _ROUTE_KEYS:
            return _route_property(stream.route, path[0], path[1:])
        if len(path) < 2:
            return None
        head, key, rest = path[0], path[1], path[2:]
        if head == b"xds" and key in _ROUTE_KEYS:
            return _route_property(stream.route, key, rest)
        if head == b"request":
            return _request_property(stream, key, rest)
        if head == b"routeiq" and key == b"consumer" and len(rest) == 1:
            # Who the gateway authenticated (keys.enabled), never a client-chosen value.
            value = stream.consumer.get(rest[0].decode("latin-1")) if stream.consumer is not None else None
            return value.encode() if value is not None else None
        if head == b"response":
            return _response_property(stream, key, rest)
        if head == b"source" and not rest:
            return _address(stream.client, key)
        if head == b"destination" and not rest:
            return _address(stream.server, key)
        if head == b"connection" and not rest:
            getter = _CONNECTION.get(key)
            return getter(stream) if getter is not None else None
        return None

    def proxy_get_property(self, path: tuple[bytes, ...]) -> tuple[int, bytes]:
        """`path` is the attribute's segments, e.g. (b"request", b"path")."""
        try:
            value = self.resolve(path)
        except _Unserializable:
            return Status.SERIALIZATION_FAILURE, b""
        if value is None:
            return Status.NOT_FOUND, b""
        return Status.OK, value

    def proxy_set_property(self, path: tuple[bytes, ...], value: bytes) -> int:
        stream = self.env.stream
        if stream is None:
            return Status.NOT_FOUND
        if not path:
            return Status.BAD_ARGUMENT
        if path[:2] == (b"routeiq", b"consumer"):
            return Status.BAD_ARGUMENT  # read-only: a plugin cannot pose as another consumer
        stream.filter_state[path] = value
        return Status.OK
