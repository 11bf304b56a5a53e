"""Buffer host calls: proxy_get_buffer_bytes, proxy_set_buffer_bytes, proxy_get_buffer_status."""

from __future__ import annotations

from routeiq.abi.capabilities import Capability
from routeiq.abi.proxy_wasm import BufferType, Status

from .memory import return_bytes
from .state import HostEnv

_KNOWN_BUFFERS = frozenset(int(b) for b in BufferType)
_READ_ONLY = frozenset({BufferType.VM_CONFIGURATION, BufferType.PLUGIN_CONFIGURATION, BufferType.HTTP_CALL_RESPONSE_BODY})
_GATED = {BufferType.HTTP_REQUEST_BODY: Capability.REQUEST_BODY, BufferType.HTTP_RESPONSE_BODY: Capability.RESPONSE_BODY}


class BufferCalls:
    def __init__(self, env: HostEnv) -> None:
        self.env = env

    def _gate(self, call: str, buffer_type: int) -> int | None:
        capability = _GATED.get(buffer_type)  # type: ignore[call-overload]
        return self.env.require(call, capability) if capability is not None else None

    def _buffer(self, buffer_type: int) -> bytes | bytearray | None:
        env = self.env
        if buffer_type == BufferType.PLUGIN_CONFIGURATION:
            return env.plugin.plugin_config
        if buffer_type == BufferType.VM_CONFIGURATION:
            return env.plugin.vm_config
        if buffer_type == BufferType.HTTP_CALL_RESPONSE_BODY:
            return env.callout_response.body if env.callout_response is not None else None
        stream = env.stream
        if stream is None:
            return None
        if buffer_type == BufferType.HTTP_REQUEST_BODY:
            return stream.request_body
        if buffer_type == BufferType.HTTP_RESPONSE_BODY:
            return stream.response_body
        return None

    def proxy_get_buffer_bytes(self, buffer_type: int, start: int, max_size: int, ret_data: int, ret_size: int) -> int:
        if buffer_type not in _KNOWN_BUFFERS:
            return Status.BAD_ARGUMENT
        self.env.vm.check_writable((ret_data, 4), (ret_size, 4))
        denied = self._gate("proxy_get_buffer_bytes", buffer_type)
        if denied is not None:
            return denied
        buf = self._buffer(buffer_type)
        if buf is None:
            return Status.NOT_FOUND
        if start > len(buf):
            return Status.BAD_ARGUMENT
        return return_bytes(self.env, bytes(buf[start : start + max_size]), ret_data, ret_size)

    def proxy_get_buffer_status(self, buffer_type: int, ret_size: int, ret_flags: int) -> int:
        if buffer_type not in _KNOWN_BUFFERS:
            return Status.BAD_ARGUMENT
        vm = self.env.vm
        vm.check_writable((ret_size, 4), (ret_flags, 4))
        denied = self._gate("proxy_get_buffer_status", buffer_type)
        if denied is not None:
            return denied
        buf = self._buffer(buffer_type)
        if buf is None:
            return Status.NOT_FOUND
        vm.write_u32(ret_size, len(buf))
        vm.write_u32(ret_flags, 0)
        return Status.OK

    def proxy_set_buffer_bytes(self, buffer_type: int, start: int, size: int, data: int, data_size: int) -> int:
        if buffer_type not in _KNOWN_BUFFERS:
            return Status.BAD_ARGUMENT
        value = self.env.vm.read(data, data_size)
        denied = self._gate("proxy_set_buffer_bytes", buffer_type)
        if denied is not None:
            return denied
        return self.write("proxy_set_buffer_bytes", buffer_type, start, size, value)

    def write(self, call: str, buffer_type: int, start: int, size: int, value: bytes) -> int:
        """Replace `size` bytes at `start` (append past the end), within the plugin's buffer cap."""
        buf = self._buffer(buffer_type)
        if buf is None:
            return Status.NOT_FOUND
        if buffer_type in _READ_ONLY or not isinstance(buf, bytearray):
            return Status.BAD_ARGUMENT
        length = len(buf)
        replaced = 0 if start >= length else min(size, length - start)
        cap = self.env.plugin.max_buffer_bytes
        if length - replaced + len(value) > cap:
            return self.env.deny(call, "buffer_limit", f"the body would exceed {cap} bytes (plugins[].limits.max_buffer_bytes)", Status.BAD_ARGUMENT)
        if start >= length:
            buf.extend(value)  # append (start may be SIZE_MAX)
        else:
            buf[start : start + size] = value  # prepend, inject or replace
        return Status.OK
