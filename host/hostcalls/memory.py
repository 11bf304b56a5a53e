"""Moving values between host and guest memory the way every proxy-wasm host call does."""

from __future__ import annotations

from routeiq.abi.proxy_wasm import Status

from .state import HostEnv


def return_bytes(env: HostEnv, data: bytes, ret_data_ptr: int, ret_size_ptr: int) -> int:
    """Copy `data` into guest memory allocated by the guest and write (pointer, size) back.

    The return slots are checked first, so a bad pointer costs the guest no allocation.
    """
    vm = env.vm
    vm.check_u32_pair(ret_data_ptr, ret_size_ptr)
    if not data:
        vm.write_u32_pair(ret_data_ptr, 0, ret_size_ptr, 0)
        return Status.OK
    ptr = vm.allocate(len(data))
    if not ptr:
        return Status.INTERNAL_FAILURE
    vm.write(ptr, data)
    vm.write_u32_pair(ret_data_ptr, ptr, ret_size_ptr, len(data))
    return Status.OK
