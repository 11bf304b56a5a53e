"""Property host calls: proxy_get_property, proxy_set_property.

Paths follow Envoy's attribute names (request.path, request.headers.<name>, plugin_name,
...). Strings are raw bytes, integers 8-byte little-endian, maps serialized like headers.
Paths a plugin sets are kept per request (Envoy's filter state), so plugins can talk.
"""

from __future__ import annotations

import struct

from routeiq.abi.proxy_wasm import Status, encode_map

from .group import CallGroup
from .state import HttpStream

_I64 = struct.Struct("<q")


def _int(value: int) -> bytes:
    return _I64.pack(value)


def _request_property(stream: HttpStream, key: bytes, rest: tuple[bytes, ...]) -> bytes | None:
    headers = stream.request_headers
    path = headers.get(b":path") or b"/"
    if key == b"headers":
        if rest:
            return headers.get(rest[0])
        return encode_map([(k, v) for k, v in headers.pairs if not k.startswith(b":")])
    if rest:
        return None
    simple = {
        b"path": lambda: path,
        b"url_path": lambda: path.split(b"?", 1)[0],
        b"query": lambda: path.split(b"?", 1)[1] if b"?" in path else b"",
        b"host": lambda: headers.get(b":authority") or headers.get(b"host"),
        b"scheme": lambda: headers.get(b":scheme") or stream.scheme.encode(),
        b"method": lambda: headers.get(b":method"),
        b"id": lambda: stream.request_id.encode(),
        b"protocol": lambda: stream.protocol.encode(),
        b"time": lambda: _int(stream.start_ns),
        b"useragent": lambda: headers.get(b"user-agent"),
        b"referer": lambda: headers.get(b"referer"),
        b"size": lambda: _int(int(headers.get(b"content-length") or 0)),
        b"total_size": lambda: _int(stream.request_body_size),
    }
    getter = simple.get(key)
    return getter() if getter else None


def _response_property(stream: HttpStream, key: bytes, rest: tuple[bytes, ...]) -> bytes | None:
    headers = stream.response_headers
    if key == b"headers":
        if headers is None:
            return None
        if rest:
            return headers.get(rest[0])
        return encode_map([(k, v) for k, v in headers.pairs if not k.startswith(b":")])
    if rest:
        return None
    if key == b"code" and stream.response_code:
        return _int(stream.response_code)
    if key == b"code_details" and stream.local_response is not None:
        return stream.local_response.details.encode()
    if key == b"total_size":
        return _int(stream.response_body_size)
    return None


def _address(endpoint: tuple[str, int] | None, key: bytes) -> bytes | None:
    if endpoint is None:
        return None
    host, port = endpoint
    if key == b"address":
        return f"{host}:{port}".encode()
    if key == b"port":
        return _int(port)
    return None


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
        if stream is None or len(path) < 2:
            return None
        head, key, rest = path[0], path[1], path[2:]
        if head == b"request":
            return _request_property(stream, key, rest)
        if head == b"response":
            return _response_property(stream, key, rest)
        if head == b"source" and not rest:
            return _address(stream.client, key)
        if head == b"destination" and not rest:
            return _address(stream.server, key)
        return None

    def proxy_get_property(self, path: tuple[bytes, ...]) -> tuple[int, bytes]:
        """`path` is the attribute's segments, e.g. (b"request", b"path")."""
        value = self.resolve(path)
        if value is None:
            return Status.NOT_FOUND, b""
        return Status.OK, value

    def proxy_set_property(self, path: tuple[bytes, ...], value: bytes) -> int:
        stream = self.env.stream
        if stream is None:
            return Status.NOT_FOUND
        if not path:
            return Status.BAD_ARGUMENT
        stream.filter_state[path] = value
        return Status.OK
