"""How a deployment is called: the embedded mock, a direct OpenAI-compatible pass-through
(the gateway's HttpClient, streaming, no per-call translation), or litellm's Router for
everything else."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any, AsyncIterator, Awaitable, Mapping, Sequence, TypeVar

import aiohttp

from routeiq.services.http_client import HttpClient

from .deployments import LiveDeployment
from .mock_provider import MockFailure, MockProvider
from .operations import OperationRequest

RawAnswer = tuple[str, bytes]  # (content type, body) of a non-chat operation


class BackendError(Exception):
    """A deployment call failed. `retryable`: another deployment may do better."""

    def __init__(self, message: str, status: int = 502, retryable: bool = True, body: bytes | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.body = body


def _with_model(body: Mapping[str, Any], model: str) -> dict[str, Any]:
    out = dict(body)
    out["model"] = model
    return out


class EmbeddedBackend:
    def __init__(self, provider: MockProvider) -> None:
        self.provider = provider

    async def complete(self, d: LiveDeployment, body: Mapping[str, Any], timeout_s: float) -> dict[str, Any]:
        return await _mock(d, timeout_s, self.provider.complete(_with_model(body, d.upstream_model), d.upstream_model, timeout_s))

    async def stream(self, d: LiveDeployment, body: Mapping[str, Any], timeout_s: float) -> AsyncIterator[bytes]:
        return await _mock(d, timeout_s, self.provider.stream(_with_model(body, d.upstream_model), d.upstream_model, timeout_s))

    async def call(self, d: LiveDeployment, request: OperationRequest, timeout_s: float) -> RawAnswer:
        return await _mock(d, timeout_s, self.provider.operation(request, d.upstream_model, timeout_s))

    async def open_stream(self, d: LiveDeployment, request: OperationRequest, timeout_s: float) -> AsyncIterator[bytes]:
        return await _mock(d, timeout_s, self.provider.operation_stream(request, d.upstream_model, timeout_s))


_T = TypeVar("_T")


async def _mock(d: LiveDeployment, timeout_s: float, call: Awaitable[_T]) -> _T:
    """A mock call as a deployment call fails: a timeout is a 504, a told failure a 500."""
    try:
        async with asyncio.timeout(timeout_s):
            return await call
    except TimeoutError:
        raise BackendError(f"{d.id} timed out after {timeout_s:g} s", 504) from None
    except MockFailure as exc:
        raise BackendError(str(exc), 500) from None


class PassthroughBackend:
    """Calls on the gateway's HttpClient; the request body goes out as the client sent it
    (aiohttp: bench/results/http_client.md and llm_path.md for why)."""

    def __init__(self, http: HttpClient) -> None:
        self._http = http

    async def _send(self, d: LiveDeployment, body: Mapping[str, Any], timeout_s: float) -> aiohttp.ClientResponse:
        return await self._post(d, "/chat/completions", json.dumps(_with_model(body, d.upstream_model)).encode(), {"content-type": "application/json"}, timeout_s)

    async def _post(self, d: LiveDeployment, path: str, data: Any, headers: dict[str, str], timeout_s: float) -> aiohttp.ClientResponse:
        if d.api_key:
            headers["authorization"] = f"Bearer {d.api_key}"
        # Only a connect limit here: the API bounds the whole attempt (router.timeout_s) or,
        # for a stream, the first chunk and the gaps between chunks.
        try:
            response = await self._http.request(
                "POST",
                f"{d.api_base}{path}",
                data=data,
                headers=headers,
                connect_timeout_s=timeout_s,
                decompress=True,
            )
        except (asyncio.TimeoutError, TimeoutError):
            raise BackendError(f"{d.id} timed out after {timeout_s:g} s", 504) from None
        except aiohttp.ClientError as exc:
            raise BackendError(f"{d.id} unreachable: {exc or type(exc).__name__}", 502) from None
        if response.status >= 400:
            try:
                content = await response.read()
            except (aiohttp.ClientError, asyncio.TimeoutError, TimeoutError):
                content = b""
            response.release()
            retryable = response.status >= 500 or response.status == 429
            raise BackendError(f"{d.id} answered {response.status}", response.status, retryable, content)
        return response

    async def complete(self, d: LiveDeployment, body: Mapping[str, Any], timeout_s: float) -> dict[str, Any]:
        response = await self._send(d, body, timeout_s)
        try:
            return json.loads(await response.read())
        except (asyncio.TimeoutError, TimeoutError):
            raise BackendError(f"{d.id} timed out after {timeout_s:g} s", 504) from None
        except (json.JSONDecodeError, aiohttp.ClientError) as exc:
            raise BackendError(f"{d.id} sent an unreadable answer: {exc}", 502) from None
        finally:
            response.release()

    async def stream(self, d: LiveDeployment, body: Mapping[str, Any], timeout_s: float) -> AsyncIterator[bytes]:
        return _body_chunks(await self._send(d, body, timeout_s))

    async def _send_operation(self, d: LiveDeployment, request: OperationRequest, timeout_s: float) -> aiohttp.ClientResponse:
        body = request.with_model(d.upstream_model)
        if request.operation.multipart:
            form = aiohttp.FormData()
            for key, value in body.items():
                form.add_field(key, str(value))
            for name, filename, content_type, content in request.files:
                form.add_field(name, content, filename=filename, content_type=content_type)
            payload = form()  # the gateway's session sets no Content-Type of its own: say the boundary
            return await self._post(d, request.operation.upstream_path, payload, {"content-type": payload.content_type}, timeout_s)
        return await self._post(d, request.operation.upstream_path, json.dumps(body).encode(), {"content-type": "application/json"}, timeout_s)

    async def call(self, d: LiveDeployment, request: OperationRequest, timeout_s: float) -> RawAnswer:
        response = await self._send_operation(d, request, timeout_s)
        try:
            return response.headers.get("content-type", "application/octet-stream"), await response.read()
        except (asyncio.TimeoutError, TimeoutError):
            raise BackendError(f"{d.id} timed out after {timeout_s:g} s", 504) from None
        except aiohttp.ClientError as exc:
            raise BackendError(f"{d.id} sent an unreadable answer: {exc}", 502) from None
        finally:
            response.release()

    async def open_stream(self, d: LiveDeployment, request: OperationRequest, timeout_s: float) -> AsyncIterator[bytes]:
        return _body_chunks(await self._send_operation(d, request, timeout_s))


async def _body_chunks(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """A streamed answer's bytes as they come; the connection goes back to the pool at the end."""
    try:
        async for chunk in response.content.iter_any():
            yield chunk
    finally:
        response.release()


# litellm's function for each operation (Router methods), and how its answer becomes bytes.
_LITELLM_CALLS = {
    "text_completion": "atext_completion",
    "embeddings": "aembedding",
    "moderations": "amoderation",
    "image_generation": "aimage_generation",
    "speech": "aspeech",
    "transcription": "atranscription",
    "responses": "aresponses",
}


# litellm providers that speak OpenAI's API, whose requests take OpenAI's `user` as it is.
_OPENAI_PROVIDERS = frozenset({"openai", "custom_openai"})


class LitellmBackend:
    """litellm's Router for providers that need translation. One Router per gateway; our
    strategy picks the deployment and litellm honours it through its extension point,
    `Router.set_custom_routing_strategy` (no class patching, so any number of workers)."""

    def __init__(self, deployments: Sequence[LiveDeployment]) -> None:
        self._deployments = [d for d in deployments if d.kind == "litellm"]
        self._router: Any = None

    def router(self) -> Any:
        if self._router is None:
            # Otherwise importing litellm fetches a cost map from the network.
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            from litellm import Router
            from litellm.types.router import CustomRoutingStrategyBase

            from routeiq.log_format import adopt_litellm_loggers

            adopt_litellm_loggers()  # one line per message, in our format, no colour codes

            model_list = [
                {"model_name": d.routing.model, "litellm_params": dict(d.litellm_params), "model_info": {"id": d.id}}
                for d in self._deployments
            ]
            router = Router(model_list=model_list, num_retries=0)

            class HonourRouteIQDecision(CustomRoutingStrategyBase):
                async def async_get_available_deployment(self, model: str, messages: Any = None, input: Any = None, specific_deployment: bool = False, request_kwargs: dict | None = None):  # type: ignore[no-untyped-def, override]
                    return _pick(router, model, request_kwargs)

                def get_available_deployment(self, model: str, messages: Any = None, input: Any = None, specific_deployment: bool = False, request_kwargs: dict | None = None):  # type: ignore[no-untyped-def, override]
                    return _pick(router, model, request_kwargs)

            router.set_custom_routing_strategy(HonourRouteIQDecision())
            self._router = router
        return self._router

    def _kwargs(self, d: LiveDeployment, body: Mapping[str, Any], timeout_s: float, stream: bool) -> dict[str, Any]:
        params = {k: v for k, v in body.items() if k not in ("model", "messages", "stream")}
        if "user" in params and str(d.litellm_params.get("model", "")).split("/", 1)[0] in _OPENAI_PROVIDERS:
            # litellm sends `user` to an OpenAI-compatible provider only for model names it
            # knows (its list of OpenAI's models) and silently drops it otherwise.
            allowed = params.get("allowed_openai_params")
            params["allowed_openai_params"] = [*(allowed if isinstance(allowed, list) else ()), "user"]
        return {"model": d.routing.model, "messages": body.get("messages"), "stream": stream, "timeout": timeout_s, "metadata": {"routeiq_deployment": d.id}, **params}

    async def complete(self, d: LiveDeployment, body: Mapping[str, Any], timeout_s: float) -> dict[str, Any]:
        try:
            response = await self.router().acompletion(**self._kwargs(d, body, timeout_s, False))
        except Exception as exc:  # litellm raises provider-specific exception types
            raise _as_backend_error(d, exc) from None
        return response.model_dump(exclude_none=True)

    async def stream(self, d: LiveDeployment, body: Mapping[str, Any], timeout_s: float) -> AsyncIterator[bytes]:
        kwargs = self._kwargs(d, body, timeout_s, True)  # stream_options as the API sent them
        try:
            response = await self.router().acompletion(**kwargs)
        except Exception as exc:
            raise _as_backend_error(d, exc) from None

        async def chunks() -> AsyncIterator[bytes]:
            async for chunk in response:
                data = chunk.model_dump(exclude_none=True, warnings=False)
                if data.get("usage"):
                    # litellm hangs the usage on a chunk with an empty choice; OpenAI sends
                    # it alone, with `choices: []`, after the finish_reason chunk.
                    choices = [c for c in data.get("choices") or () if c.get("finish_reason") or (c.get("delta") or {}).get("content") or (c.get("delta") or {}).get("tool_calls")]
                    if choices:
                        rest = {k: v for k, v in data.items() if k != "usage"}
                        yield b"data: " + json.dumps({**rest, "choices": choices}).encode() + b"\n\n"
                    data = {**data, "choices": []}
                yield b"data: " + json.dumps(data).encode() + b"\n\n"
            yield b"data: [DONE]\n\n"

        return chunks()


    def _operation_kwargs(self, d: LiveDeployment, request: OperationRequest, timeout_s: float) -> dict[str, Any]:
        kwargs = {k: v for k, v in request.body.items() if k != "model"}
        kwargs.update(model=d.routing.model, timeout=timeout_s, metadata={"routeiq_deployment": d.id})
        if request.files:
            _, filename, _, content = request.files[0]
            kwargs["file"] = (filename, content)
        return kwargs

    async def call(self, d: LiveDeployment, request: OperationRequest, timeout_s: float) -> RawAnswer:
        method = getattr(self.router(), _LITELLM_CALLS[request.operation.name])
        try:
            response = await method(**self._operation_kwargs(d, request, timeout_s))
        except Exception as exc:
            raise _as_backend_error(d, exc) from None
        content = getattr(response, "content", None)
        if request.operation.name == "speech" and isinstance(content, bytes):
            return "audio/mpeg", content
        dumped = response.model_dump(exclude_none=True, warnings=False) if hasattr(response, "model_dump") else response
        return "application/json", json.dumps(dumped, default=str).encode()

    async def open_stream(self, d: LiveDeployment, request: OperationRequest, timeout_s: float) -> AsyncIterator[bytes]:
        method = getattr(self.router(), _LITELLM_CALLS[request.operation.name])
        kwargs = self._operation_kwargs(d, request, timeout_s)
        kwargs["stream"] = True
        try:
            response = await method(**kwargs)
        except Exception as exc:
            raise _as_backend_error(d, exc) from None
        typed = request.operation.name == "responses"  # the Responses API names each event

        async def chunks() -> AsyncIterator[bytes]:
            async for chunk in response:
                data = chunk.model_dump(exclude_none=True, warnings=False) if hasattr(chunk, "model_dump") else chunk
                if not typed and isinstance(data, dict):
                    for choice in data.get("choices") or ():
                        if isinstance(choice, dict):
                            choice.setdefault("text", "")  # OpenAI always sends one (exclude_none dropped it)
                head = f"event: {data.get('type')}\n".encode() if typed and isinstance(data, dict) else b""
                yield head + b"data: " + json.dumps(data, default=str).encode() + b"\n\n"
            if not typed:
                yield b"data: [DONE]\n\n"

        return chunks()


def _pick(router: Any, model: str, request_kwargs: dict | None) -> dict[str, Any]:
    wanted = ((request_kwargs or {}).get("metadata") or {}).get("routeiq_deployment")
    for deployment in router.model_list:
        if deployment.get("model_info", {}).get("id") == wanted:
            return deployment
    raise ValueError(f"deployment {wanted!r} is not in litellm's model list for {model!r}")


def _as_backend_error(d: LiveDeployment, exc: Exception) -> BackendError:
    status = int(getattr(exc, "status_code", 502) or 502)
    status = status if status >= 400 else 502
    retryable = status >= 500 or status == 429 or "timeout" in type(exc).__name__.lower()
    # The provider's message and code, in OpenAI's shape, for the client (litellm's
    # exceptions carry them as `message` / `code`).
    message = str(getattr(exc, "message", "") or exc).splitlines()[0] if str(exc) else type(exc).__name__
    code = getattr(exc, "code", None)
    kind = "server_error" if status >= 500 else ("rate_limit_error" if status == 429 else "invalid_request_error")
    body = json.dumps({"error": {"message": message, "type": kind, "param": getattr(exc, "param", None), "code": code if isinstance(code, str) else None}}).encode()
    return BackendError(f"{d.id}: {type(exc).__name__}: {message}", status, retryable, body)
