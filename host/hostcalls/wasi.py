"""WASI preview1 as a proxy-wasm host offers it (Envoy's model): fd_write to stdout/stderr
goes to the plugin log, clocks, random_get, environ_* (per-plugin variables only), args_*
(empty), poll_oneoff (no events: nothing can be waited on), proc_exit (ends the guest with
a trap), and the errno Envoy answers for everything a sandbox has not (files, sockets).
Offered as `wasi_snapshot_preview1` and `wasi_unstable`; docs/plugin-host.md has the table."""

from __future__ import annotations

import os
import struct
import time

from routeiq.abi.proxy_wasm import WasiClock, WasiErrno, WasiFd
from routeiq.runtime.errors import GuestExit
from routeiq.runtime.vm import TrapRequest

from .state import HostEnv

WASI_MODULES = ("wasi_snapshot_preview1", "wasi_unstable")
_MAX_RANDOM = 1024 * 1024
_IOVEC = struct.Struct("<II")
_FDSTAT = struct.Struct("<BxHxxxxQQ")  # filetype, flags, rights_base, rights_inheriting
_FILETYPE_CHARACTER_DEVICE = 2
_RIGHTS_FD_WRITE = 1 << 6


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
        if data:
            self.env.write_stdio(fd, data)
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
        self.env.flush_stdio()  # what a runtime prints before exiting (a Go panic) is kept
        raise TrapRequest(GuestExit(f"called proc_exit({code})", detail=str(code)))

    def sched_yield(self) -> int:
        return WasiErrno.SUCCESS

    def poll_oneoff(self, _subscriptions: int, _events: int, _count: int, ret_nevents: int) -> int:
        """No event can happen in the sandbox: answer at once with zero events, as Envoy
        does (the Go runtime polls for its timers and treats an error as fatal)."""
        self.env.vm.write_u32(ret_nevents, 0)
        return WasiErrno.SUCCESS

    def fd_fdstat_get(self, fd: int, ret_stat: int) -> int:
        """stdout and stderr: a character device that can be written (24-byte fdstat)."""
        if fd not in (WasiFd.STDOUT, WasiFd.STDERR):
            return WasiErrno.BADF
        self.env.vm.write(ret_stat, _FDSTAT.pack(_FILETYPE_CHARACTER_DEVICE, 0, _RIGHTS_FD_WRITE, 0))
        return WasiErrno.SUCCESS

    def fd_close(self, _fd: int) -> int:
        return WasiErrno.SUCCESS  # Envoy answers success: there is nothing to close

    def fd_seek(self, _fd: int, _offset: int, _whence: int, ret_offset: int) -> int:
        self.env.vm.write_u64(ret_offset, 0)  # Envoy answers success; stdio has no position
        return WasiErrno.SUCCESS

    # Files and sockets do not exist in the sandbox.
    def fd_badf(self, *_args: int) -> int:
        return WasiErrno.BADF

    def nosys(self, *_args: int) -> int:
        return WasiErrno.NOSYS
