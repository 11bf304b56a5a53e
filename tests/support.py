"""Helpers shared by tests: config snippets, free ports, a real uvicorn in a thread."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import uvicorn

from routeiq.abi.capabilities import Capability
from routeiq.config import ServerConfig
from routeiq.gateway.http_server import uvicorn_config

ALL_GRANTED = object()


def grant_everything(names: list[str], **extra: Any) -> dict[str, Any]:
    """A policy granting every capability (but no callout targets) to each named plugin."""
    entry = {"unpinned": True, "capabilities": [c.value for c in Capability], **extra}
    return {"plugins": {name: dict(entry) for name in names}}


def plugin(name: str, wasm: Path, **extra: Any) -> dict[str, Any]:
    return {"name": name, "wasm": str(wasm), **extra}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(app: Any, **options: Any) -> Iterator[str]:
    """Run `app` under a real uvicorn on loopback in a thread; yield its base URL.
    `options` go to uvicorn (`ssl_certfile`/`ssl_keyfile`: served over https)."""
    port = free_port()
    gateway = getattr(getattr(app, "state", None), "gateway", None)
    server_settings = gateway.config.model.server if gateway is not None else ServerConfig()
    config = uvicorn_config(app, server_settings, host="127.0.0.1", port=port, log_level="warning", **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"{'https' if options.get('ssl_certfile') else 'http'}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)




class FakeClock:
    """A monotonic clock that moves only when a test moves it (`clock.advance(0.3)`): for
    circuit breakers and quarantine windows, instead of sleeping through a cool-down."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for deadline, future in self._sleepers:
            if deadline <= self.now and not future.done():
                future.get_loop().call_soon_threadsafe(_resolve, future)
        self._sleepers = [(d, f) for d, f in self._sleepers if d > self.now and not f.done()]

    async def sleep(self, seconds: float) -> None:
        """asyncio.sleep on this clock: returns once the test has moved it `seconds` on."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.now + seconds, future))
        await future

    def next_wake(self) -> float | None:
        """Seconds until the earliest pending `sleep` ends (None when nothing sleeps)."""
        pending = [d for d, f in self._sleepers if not f.done()]
        return max(0.0, min(pending) - self.now) if pending else None


def _resolve(future: "asyncio.Future[None]") -> None:
    if not future.done():
        future.set_result(None)


def eventually(check: Any, timeout: float = 5.0) -> Any:
    """Poll `check()` until it returns something truthy (on_log runs after the client
    has its last byte, so log assertions must wait for it)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.01)


def redis_server_binary(search_path: str | None = None) -> str:
    """redis-server on PATH (or /usr/bin). Tests never install it: `./dev setup` does."""
    import shutil

    where = search_path if search_path is not None else os.pathsep.join([os.environ.get("PATH", ""), "/usr/bin"])
    found = shutil.which("redis-server", path=where)
    if not found:
        raise RuntimeError("redis-server is required by the Redis tests and is not installed: run `./dev setup` (Debian package redis-server)")
    return found


@contextlib.contextmanager
def redis_server(port: int | None = None) -> Iterator[str]:
    """A throwaway redis-server on loopback (no persistence: a restart on the same
    `port` starts empty); yields its URL."""
    import subprocess

    import redis

    port = port or free_port()
    proc = subprocess.Popen(
        [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--protected-mode", "yes"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("redis-server did not start")
                time.sleep(0.05)
        yield url
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=10)


def _leb(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def with_manifest(wasm: bytes, manifest: dict[str, Any] | None) -> bytes:
    """`wasm` with its routeiq.manifest custom section replaced by `manifest` (None: no
    manifest at all), as a plugin author would build it."""
    from routeiq.abi.capabilities import MANIFEST_SECTION
    from routeiq.policy.manifest import _leb128

    out = bytearray(wasm[:8])
    pos = 8
    while pos < len(wasm):
        start = pos
        size, body = _leb128(wasm, pos + 1)
        end = body + size
        if wasm[start] == 0:
            name_len, name_pos = _leb128(wasm, body)
            if wasm[name_pos : name_pos + name_len].decode() == MANIFEST_SECTION:
                pos = end
                continue
        out += wasm[start:end]
        pos = end
    if manifest is not None:
        import json

        name = MANIFEST_SECTION.encode()
        payload = _leb(len(name)) + name + json.dumps(manifest).encode()
        out += b"\0" + _leb(len(payload)) + payload
    return bytes(out)


@contextlib.contextmanager
def slow_tcp_proxy(target_port: int, delay_s: float) -> Iterator[int]:
    """A loopback TCP proxy to `target_port` that holds every reply chunk for `delay_s`
    (a dependency slowed by a loaded machine or a far network); yields its port."""
    import asyncio

    ready = threading.Event()
    state: dict[str, Any] = {}

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
        try:
            while chunk := await reader.read(65536):
                if delay:
                    await asyncio.sleep(delay)
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(pipe(client_r, up_w, 0.0), pipe(up_r, client_w, delay_s))

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        state["port"] = server.sockets[0].getsockname()[1]
        state["stop"] = asyncio.Event()
        state["loop"] = asyncio.get_running_loop()
        ready.set()
        async with server:
            await state["stop"].wait()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("the TCP proxy did not start")
    try:
        yield state["port"]
    finally:
        state["loop"].call_soon_threadsafe(state["stop"].set)
        thread.join(timeout=5)



def probe_props(text: str, sep: str = ";") -> dict[str, bytes | str]:
    """The hostcall_probe's `props` answer: name -> value bytes, or name -> "!<status>"
    for a failed read (the probe hex-encodes values, so binary encodings survive)."""
    out: dict[str, bytes | str] = {}
    for item in filter(None, text.split(sep)):
        if "!status=" in item:
            name, _, status = item.partition("!status=")
            out[name] = "!" + status
        else:
            name, _, value = item.partition("=")
            out[name] = bytes.fromhex(value)
    return out


def postgres_bin(name: str) -> str:
    """A PostgreSQL server binary (Debian's postgresql package: /usr/lib/postgresql/N/bin).
    Tests never install it: `./dev setup` does."""
    import glob
    import shutil

    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or ([shutil.which(name)] if shutil.which(name) else [])
    if not found:
        raise RuntimeError(f"{name} (PostgreSQL) is required by the PostgreSQL tests and is not installed: run `./dev setup` (Debian package postgresql)")
    return str(found[-1])


class PostgresServer:
    """A throwaway PostgreSQL cluster on loopback (trust auth, fsync off), stoppable and
    restartable on the same port and data directory; `url` names its `routeiq` database."""

    def __init__(self, directory: Path) -> None:
        import subprocess

        self.directory = directory
        self.data = directory / "data"
        self.port = free_port()
        self.url = f"postgresql://routeiq@127.0.0.1:{self.port}/routeiq"
        self.proc: Any = None
        directory.mkdir(parents=True, exist_ok=True)
        # PostgreSQL refuses to run as root: run it as the `postgres` user then.
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as:
            subprocess.run(["chown", "-R", "postgres:postgres", str(directory)], check=True)
        subprocess.run(self._as + [postgres_bin("initdb"), "-D", str(self.data), "-U", "routeiq", "--auth=trust", "-E", "UTF8"], check=True, capture_output=True)
        self.start()
        import psycopg

        with psycopg.connect(f"postgresql://routeiq@127.0.0.1:{self.port}/postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE routeiq")

    def start(self) -> None:
        import subprocess

        import psycopg

        args = ["-D", str(self.data), "-p", str(self.port), "-k", str(self.directory), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=200"]
        self.proc = subprocess.Popen(self._as + [postgres_bin("postgres"), *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(f"postgresql://routeiq@127.0.0.1:{self.port}/postgres", connect_timeout=1).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("postgres did not start")
                time.sleep(0.1)

    def stop(self) -> None:
        import signal

        if self.proc is not None and self.proc.poll() is None:
            try:  # the postmaster itself (runuser does not pass SIGINT on): fast shutdown, connections cut
                pid = int((self.data / "postmaster.pid").read_text().split()[0])
                os.kill(pid, signal.SIGINT)
            except (OSError, ValueError, IndexError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except Exception:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    import shutil
    import tempfile

    # Not under pytest's tmp_path: the `postgres` user must be able to reach it.
    directory = Path(tempfile.mkdtemp(prefix="routeiq-pg-"))
    os.chmod(directory, 0o755)
    server = PostgresServer(directory / "cluster")
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


def registry_binary(search_path: str | None = None) -> str:
    """docker-registry (Debian's OCI Distribution server). Tests never install it: `./dev setup` does."""
    import shutil

    where = search_path if search_path is not None else os.pathsep.join([os.environ.get("PATH", ""), "/usr/bin"])
    found = shutil.which("docker-registry", path=where)
    if not found:
        raise RuntimeError("docker-registry is required by the OCI tests and is not installed: run `./dev setup` (Debian package docker-registry)")
    return found


@contextlib.contextmanager
def registry_server(storage: Path, port: int | None = None) -> Iterator[str]:
    """A throwaway OCI registry on loopback storing under `storage`; yields host:port."""
    import subprocess

    import httpx

    port = port or free_port()
    config = storage / "registry.yml"
    storage.mkdir(parents=True, exist_ok=True)
    config.write_text(
        "version: 0.1\nlog: {level: error}\n"
        f"storage: {{filesystem: {{rootdirectory: {storage / 'data'}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: '127.0.0.1:{port}'}}\n"
    )
    proc = subprocess.Popen([registry_binary(), "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("docker-registry did not start")
            time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
