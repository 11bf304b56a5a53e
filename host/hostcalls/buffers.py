"""Buffer host calls: proxy_get_buffer_bytes, proxy_set_buffer_bytes, proxy_get_buffer_status."""

from __future__ import annotations

from routeiq.abi.capabilities import Capability
from routeiq.abi.proxy_wasm import BufferType, Status

from .group import CallGroup

_KNOWN_BUFFERS = frozenset(int(b) for b in BufferType)
_READ_ONLY = frozenset({BufferType.VM_CONFIGURATION, BufferType.PLUGIN_CONFIGURATION, BufferType.HTTP_CALL_RESPONSE_BODY})
_GATED = {BufferType.HTTP_REQUEST_BODY: Capability.REQUEST_BODY, BufferType.HTTP_RESPONSE_BODY: Capability.RESPONSE_BODY}


class BufferCalls(CallGroup):
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

    def _readable(self, call: str, buffer_type: int) -> bytes | bytearray | int:
        """The buffer, or the status that refuses it (unknown, not granted, not here)."""
        if buffer_type not in _KNOWN_BUFFERS:
            return Status.BAD_ARGUMENT
        capability = _GATED.get(buffer_type)  # type: ignore[call-overload]
        if capability is not None:
            denied = self.require(call, capability)
            if denied is not None:
                return denied
        buf = self._buffer(buffer_type)
        return Status.NOT_FOUND if buf is None else buf

    def proxy_get_buffer_bytes(self, buffer_type: int, start: int, max_size: int) -> tuple[int, bytes]:
        buf = self._readable("proxy_get_buffer_bytes", buffer_type)
        if isinstance(buf, int):
            return buf, b""
        if start > len(buf):
            return Status.BAD_ARGUMENT, b""
        return Status.OK, bytes(memoryview(buf)[start : start + max_size])  # one copy

    def proxy_get_buffer_status(self, buffer_type: int) -> tuple[int, int]:
        """The buffer's size (the core ABI also answers flags, always 0 here)."""
        buf = self._readable("proxy_get_buffer_status", buffer_type)
        if isinstance(buf, int):
            return buf, 0
        return Status.OK, len(buf)

    def proxy_set_buffer_bytes(self, buffer_type: int, start: int, size: int, value: bytes) -> int:
        """Replace `size` bytes at `start` (append past the end), within the plugin's buffer cap."""
        buf = self._readable("proxy_set_buffer_bytes", buffer_type)
        if isinstance(buf, int):
            return buf
        if buffer_type in _READ_ONLY or not isinstance(buf, bytearray):
            return Status.BAD_ARGUMENT
        length = len(buf)
        replaced = 0 if start >= length else min(size, length - start)
        cap = self.env.plugin.max_buffer_bytes
        if length - replaced + len(value) > cap:
            return self.deny("proxy_set_buffer_bytes", "buffer_limit", f"the body would exceed {cap} bytes (plugins[].limits.max_buffer_bytes)", Status.BAD_ARGUMENT)
        if start >= length:
            buf.extend(value)  # append (start may be SIZE_MAX)
        else:
            buf[start : start + size] = value  # prepend, inject or replace
        return Status.OK

    def plugin_configuration(self) -> tuple[int, bytes]:
        return Status.OK, bytes(self.env.plugin.plugin_config)

    def vm_configuration(self) -> tuple[int, bytes]:
        return Status.OK, bytes(self.env.plugin.vm_config)
