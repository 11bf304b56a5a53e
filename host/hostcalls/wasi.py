"""The WASI preview1 subset proxy-wasm guests import: fd_write (to the plugin log),
clock_time_get, random_get, environ_* (per-plugin variables only), args_* (empty),
proc_exit (traps the guest), and stubs answering an errno for the rest of what
wasm32-wasi toolchains link in. Offered as `wasi_snapshot_preview1` and `wasi_unstable`."""

from __future__ import annotations

import os
import struct
import time

from routeiq.abi.proxy_wasm import LogLevel, WasiClock, WasiErrno, WasiFd
from routeiq.runtime.errors import GuestExit
from routeiq.runtime.vm import TrapRequest

from .state import HostEnv

WASI_MODULES = ("wasi_snapshot_preview1", "wasi_unstable")
_MAX_RANDOM = 1024 * 1024
_IOVEC = struct.Struct("<II")


class WasiCalls:
    def __init__(self, env: HostEnv) -> None:
        self.env = env

    def fd_write(self, fd: int, iovs: int, iovs_len: int, ret_written: int) -> int:
        vm = self.env.vm
        if fd not in (WasiFd.STDOUT, WasiFd.STDERR):
            return WasiErrno.BADF
        table = vm.read(iovs, 8 * iovs_len)
        chunks = [vm.read(*_IOVEC.unpack_from(table, 8 * i)) for i in range(iovs_len)]
        data = b"".join(chunks)
        vm.write_u32(ret_written, len(data))
        # Each write is one log record (as Envoy does); a trailing newline is dropped.
        if data:
            level = LogLevel.INFO if fd == WasiFd.STDOUT else LogLevel.ERROR
            self.env.emit_log(level, data.decode("utf-8", "replace").removesuffix("\n"))
        return WasiErrno.SUCCESS

    def clock_time_get(self, clock_id: int, _precision: int, ret_time: int) -> int:
        if clock_id == WasiClock.REALTIME:
            now = time.time_ns()
        elif clock_id == WasiClock.MONOTONIC:
            now = time.monotonic_ns()
        else:
            return WasiErrno.NOTSUP
        self.env.vm.write_u64(ret_time, now)
        return WasiErrno.SUCCESS

    def clock_res_get(self, clock_id: int, ret_resolution: int) -> int:
        if clock_id not in (WasiClock.REALTIME, WasiClock.MONOTONIC):
            return WasiErrno.NOTSUP
        self.env.vm.write_u64(ret_resolution, 1)
        return WasiErrno.SUCCESS

    def random_get(self, buf: int, size: int) -> int:
        if size > _MAX_RANDOM:
            return WasiErrno.INVAL
        self.env.vm.write(buf, os.urandom(size))
        return WasiErrno.SUCCESS

    def _environ(self) -> list[bytes]:
        return [f"{k}={v}".encode() + b"\0" for k, v in self.env.plugin.environment]

    def environ_sizes_get(self, ret_count: int, ret_buf_size: int) -> int:
        entries = self._environ()
        vm = self.env.vm
        vm.check_writable((ret_count, 4), (ret_buf_size, 4))
        vm.write_u32(ret_count, len(entries))
        vm.write_u32(ret_buf_size, sum(len(e) for e in entries))
        return WasiErrno.SUCCESS

    def environ_get(self, ret_array: int, ret_buf: int) -> int:
        entries = self._environ()
        vm = self.env.vm
        vm.check_writable((ret_array, 4 * len(entries)), (ret_buf, sum(len(e) for e in entries)))
        offset = ret_buf
        for i, entry in enumerate(entries):
            vm.write_u32(ret_array + 4 * i, offset)
            vm.write(offset, entry)
            offset += len(entry)
        return WasiErrno.SUCCESS

    def args_sizes_get(self, ret_argc: int, ret_buf_size: int) -> int:
        vm = self.env.vm
        vm.check_writable((ret_argc, 4), (ret_buf_size, 4))
        vm.write_u32(ret_argc, 0)
        vm.write_u32(ret_buf_size, 0)
        return WasiErrno.SUCCESS

    def args_get(self, _ret_argv: int, _ret_buf: int) -> int:
        return WasiErrno.SUCCESS

    def proc_exit(self, code: int) -> None:
        raise TrapRequest(GuestExit(f"called proc_exit({code})", detail=str(code)))

    def sched_yield(self) -> int:
        return WasiErrno.SUCCESS

    # Files, sockets and polling do not exist in the sandbox.
    def fd_badf(self, *_args: int) -> int:
        return WasiErrno.BADF

    def nosys(self, *_args: int) -> int:
        return WasiErrno.NOSYS
