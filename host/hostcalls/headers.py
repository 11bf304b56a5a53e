"""Header map host calls: proxy_{get,set}_header_map_pairs, proxy_get_header_map_size,
proxy_{get,add,replace,remove}_header_map_value."""

from __future__ import annotations

from routeiq.abi.proxy_wasm import MapFormatError, MapType, Status, decode_map

from .memory import return_bytes
from .header_rules import HeaderRefused
from .state import HeaderMap, HostEnv

_KNOWN_MAPS = frozenset(int(m) for m in MapType)
# Plain ints: comparing against IntEnum members costs a method call each on this path.
_REQUEST_HEADERS = int(MapType.HTTP_REQUEST_HEADERS)
_RESPONSE_HEADERS = int(MapType.HTTP_RESPONSE_HEADERS)


def _map(env: HostEnv, map_type: int) -> HeaderMap | None:
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


class HeaderCalls:
    def __init__(self, env: HostEnv) -> None:
        self.env = env

    def proxy_get_header_map_pairs(self, map_type: int, ret_data: int, ret_size: int) -> int:
        if map_type not in _KNOWN_MAPS:
            return Status.BAD_ARGUMENT
        hmap = _map(self.env, map_type)
        data = hmap.serialize() if hmap is not None else b""
        return return_bytes(self.env, data, ret_data, ret_size)

    def proxy_get_header_map_size(self, map_type: int, ret_size: int) -> int:
        if map_type not in _KNOWN_MAPS:
            return Status.BAD_ARGUMENT
        hmap = _map(self.env, map_type)
        self.env.vm.write_u32(ret_size, len(hmap.serialize()) if hmap is not None else 0)
        return Status.OK

    def proxy_set_header_map_pairs(self, map_type: int, data: int, size: int) -> int:
        if map_type not in _KNOWN_MAPS:
            return Status.BAD_ARGUMENT
        raw = self.env.vm.read(data, size)
        hmap = _map(self.env, map_type)
        if hmap is None or not hmap.writable:
            return Status.BAD_ARGUMENT
        try:
            hmap.set_all(decode_map(raw))
        except MapFormatError:
            return Status.BAD_ARGUMENT
        except HeaderRefused as refused:
            return self.env.deny("proxy_set_header_map_pairs", refused.reason, refused.detail, Status.BAD_ARGUMENT)
        return Status.OK

    def proxy_get_header_map_value(self, map_type: int, key: int, key_size: int, ret_data: int, ret_size: int) -> int:
        if map_type not in _KNOWN_MAPS:
            return Status.BAD_ARGUMENT
        vm = self.env.vm
        name = vm.read(key, key_size)
        vm.check_u32_pair(ret_data, ret_size)
        hmap = _map(self.env, map_type)
        value = hmap.get(name) if hmap is not None else None
        if value is None:
            return Status.NOT_FOUND
        return return_bytes(self.env, value, ret_data, ret_size)

    def _mutate(self, map_type: int) -> HeaderMap | int:
        if map_type not in _KNOWN_MAPS:
            return Status.BAD_ARGUMENT
        hmap = _map(self.env, map_type)
        if hmap is None or not hmap.writable:
            return Status.BAD_ARGUMENT
        return hmap

    def proxy_add_header_map_value(self, map_type: int, key: int, key_size: int, value: int, value_size: int) -> int:
        vm = self.env.vm
        name, val = vm.read(key, key_size), vm.read(value, value_size)
        hmap = self._mutate(map_type)
        if isinstance(hmap, int):
            return hmap
        try:
            hmap.add(name, val)
        except HeaderRefused as refused:
            return self.env.deny("proxy_add_header_map_value", refused.reason, refused.detail, Status.BAD_ARGUMENT)
        return Status.OK

    def proxy_replace_header_map_value(self, map_type: int, key: int, key_size: int, value: int, value_size: int) -> int:
        vm = self.env.vm
        name, val = vm.read(key, key_size), vm.read(value, value_size)
        hmap = self._mutate(map_type)
        if isinstance(hmap, int):
            return hmap
        try:
            hmap.replace(name, val)
        except HeaderRefused as refused:
            return self.env.deny("proxy_replace_header_map_value", refused.reason, refused.detail, Status.BAD_ARGUMENT)
        return Status.OK

    def proxy_remove_header_map_value(self, map_type: int, key: int, key_size: int) -> int:
        name = self.env.vm.read(key, key_size)
        hmap = self._mutate(map_type)
        if isinstance(hmap, int):
            return hmap
        try:
            hmap.remove(name)
        except HeaderRefused as refused:
            return self.env.deny("proxy_remove_header_map_value", refused.reason, refused.detail, Status.BAD_ARGUMENT)
        return Status.OK
