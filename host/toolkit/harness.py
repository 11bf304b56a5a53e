"""PluginTestHarness: run a plugin against requests and responses you describe, with no
gateway, no network and no upstream. The real host runs it (same sandbox, policy, host
calls and filter chain as the gateway); the upstream is a recorder that answers what the
test says."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Iterator, Mapping, Sequence

from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send

from routeiq.dispatch.loader import load_plugin
from routeiq.dispatch.plugin_spec import PluginSpec
from routeiq.gateway.plugin_filter import PluginFilter
from routeiq.gateway.plugin_logs import PluginLogBook
from routeiq.hostcalls.state import HostServices
from routeiq.policy.manifest import load_manifest
from routeiq.policy.model import parse_policy
from routeiq.runtime.limits import SandboxLimits
from routeiq.runtime.wasm_runtime import WasmRuntime


@dataclass
class UpstreamReply:
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=lambda: {"content-type": "application/json"})
    body: bytes | str = b'{"ok": true}'
    chunks: Sequence[bytes | str] | None = None  # sent as separate body chunks when given


@dataclass
class UpstreamRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Exchange:
    status: int
    headers: dict[str, str]
    body: bytes
    upstream: UpstreamRequest | None  # None when a plugin answered locally
    logs: list[str]

    @property
    def answered_locally(self) -> bool:
        return self.upstream is None

    def json(self) -> Any:
        return json.loads(self.body)


class _Recorder:
    def __init__(self) -> None:
        self.reply = UpstreamReply()
        self.last: UpstreamRequest | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        self.last = UpstreamRequest(scope["method"], scope["path"] + (f"?{scope['query_string'].decode()}" if scope.get("query_string") else ""), {k.decode(): v.decode() for k, v in scope["headers"]}, body)
        reply = self.reply
        await send({"type": "http.response.start", "status": reply.status, "headers": [(k.encode(), v.encode()) for k, v in reply.headers.items()]})
        chunks = list(reply.chunks) if reply.chunks is not None else [reply.body]
        for i, chunk in enumerate(chunks):
            data = chunk.encode() if isinstance(chunk, str) else chunk
            await send({"type": "http.response.body", "body": data, "more_body": i < len(chunks) - 1})


class PluginTestHarness:
    """with PluginTestHarness("build/my_filter.wasm", config={...}) as h:
    r = h.request("GET", "/v1/models", headers={"x-api-key": "k"})"""

    def __init__(
        self,
        module: str | Path,
        *,
        name: str | None = None,
        config: Any = None,
        vm_config: Any = None,
        capabilities: Sequence[str] | None = None,
        policy: Mapping[str, Any] | None = None,
        fail_open: bool = False,
        limits: SandboxLimits | None = None,
        env: Mapping[str, str] | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        path = Path(module)
        self.name = name or path.stem
        wasm = path.read_bytes()
        if policy is None:
            # Grant what the plugin declares (or what the test says), nothing more.
            declared = capabilities if capabilities is not None else [c.value for c in load_manifest(path, wasm)[0].capabilities]
            policy = {"plugins": {self.name: {"unpinned": True, "capabilities": list(declared)}}}
        self.logbook = PluginLogBook()
        self.services = HostServices()
        self.runtime = WasmRuntime(cache_dir=cache_dir)  # None: compile every time, cache nothing
        spec = PluginSpec(
            name=self.name,
            wasm_path=path,
            plugin_config=_as_bytes(config),
            vm_config=_as_bytes(vm_config),
            fail_open=fail_open,
            limits=limits or SandboxLimits(),
            environment=tuple(sorted((env or {}).items())),
        )
        self.plugin = load_plugin(spec, self.runtime, self.logbook, parse_policy(policy, "harness policy"), self.services)
        self.plugin.start()
        self._recorder = _Recorder()
        self._filter = PluginFilter(self._recorder, [self.plugin])

        @contextlib.asynccontextmanager
        async def lifespan(_: Starlette) -> AsyncIterator[None]:
            self.plugin.start_background()
            yield

        self._client = TestClient(Starlette(routes=[Mount("/", app=self._filter)], lifespan=lifespan))
        self._client.__enter__()

    def request(
        self,
        method: str = "GET",
        path: str = "/",
        headers: Mapping[str, str] | None = None,
        body: bytes | str = b"",
        reply: UpstreamReply | None = None,
    ) -> Exchange:
        self._recorder.reply = reply or UpstreamReply()
        self._recorder.last = None
        before = len(self.logbook.messages(self.name))
        response = self._client.request(method, path, headers=dict(headers or {}), content=body.encode() if isinstance(body, str) else body)
        return Exchange(
            status=response.status_code,
            headers={k.lower(): v for k, v in response.headers.items()},
            body=response.content,
            upstream=self._recorder.last,
            logs=self.logbook.messages(self.name)[before:],
        )

    def kv(self, key: str, namespace: str | None = None) -> bytes | None:
        return self.services.store.get(namespace or self.name, key)[0]

    @property
    def logs(self) -> list[str]:
        return self.logbook.messages(self.name)

    @property
    def denials(self) -> list[tuple[str, str]]:
        return [(r.call, r.reason) for r in self.services.audit.recent(self.name)]

    def close(self) -> None:
        self._client.__exit__(None, None, None)
        self.plugin.close()
        self.runtime.close()

    def __enter__(self) -> "PluginTestHarness":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _as_bytes(value: Any) -> bytes:
    if value is None:
        return b""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value, separators=(",", ":")).encode()


@contextlib.contextmanager
def harness(module: str | Path, **options: Any) -> Iterator[PluginTestHarness]:
    h = PluginTestHarness(module, **options)
    try:
        yield h
    finally:
        h.close()
