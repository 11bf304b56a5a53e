"""The OpenAI API operations besides chat that the gateway routes by `model`: what each
is called upstream, whether it streams, how its body is read, and which text of it the
routing strategies see.

Every operation goes to the deployments of the requested model group, with the same
strategy, breakers, retries and deadlines as chat; an OpenAI-compatible deployment gets
the request at `<api_base><upstream_path>` as the client sent it (the model name
replaced), anything else goes through litellm's function for that operation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from starlette.datastructures import UploadFile
from starlette.requests import Request

from routeiq.strict_json import JsonInputError, loads


class OperationRequestError(Exception):
    """A request the gateway refuses before routing (a 400 in OpenAI's shape)."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


def _text(value: Any) -> str:
    """The routing text of an `input` / `prompt`: a string, or the strings of a list."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = []
        for item in value:
            if isinstance(item, str):
                parts.append(item)
            elif isinstance(item, dict):
                content = item.get("content", item.get("text"))
                if isinstance(content, str):
                    parts.append(content)
                elif isinstance(content, list):
                    parts.extend(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
        return " ".join(parts)
    return ""


@dataclass(frozen=True)
class Operation:
    name: str  # gen_ai.operation.name (OpenTelemetry GenAI conventions) where one exists
    path: str  # the gateway's path (also served without the /v1 prefix, as LiteLLM does)
    upstream_path: str  # appended to an OpenAI-compatible deployment's api_base
    query: Callable[[Mapping[str, Any]], str]  # what the routing strategies read
    streams: bool = False  # `stream: true` answers server-sent events
    multipart: bool = False  # the body is multipart/form-data (a file upload)


OPERATIONS: tuple[Operation, ...] = (
    Operation("text_completion", "/v1/completions", "/completions", lambda b: _text(b.get("prompt")), streams=True),
    Operation("embeddings", "/v1/embeddings", "/embeddings", lambda b: _text(b.get("input"))),
    Operation("responses", "/v1/responses", "/responses", lambda b: _text(b.get("input")), streams=True),
    Operation("moderations", "/v1/moderations", "/moderations", lambda b: _text(b.get("input"))),
    Operation("image_generation", "/v1/images/generations", "/images/generations", lambda b: _text(b.get("prompt"))),
    Operation("speech", "/v1/audio/speech", "/audio/speech", lambda b: _text(b.get("input"))),
    Operation("transcription", "/v1/audio/transcriptions", "/audio/transcriptions", lambda b: _text(b.get("prompt")), multipart=True),
)


@dataclass
class OperationRequest:
    """A parsed request: its JSON body, or the fields of its multipart form (files as
    (name, filename, content type, bytes))."""

    operation: Operation
    body: dict[str, Any]
    files: list[tuple[str, str, str, bytes]] = field(default_factory=list)

    @property
    def model(self) -> str:
        return str(self.body.get("model") or "")

    @property
    def stream(self) -> bool:
        return self.operation.streams and self.body.get("stream") is True

    def with_model(self, model: str) -> dict[str, Any]:
        out = dict(self.body)
        out["model"] = model
        return out

    def routing_body(self) -> dict[str, Any]:
        """What the router plans on: the model, and the text as one user message."""
        return {"model": self.model, "messages": [{"role": "user", "content": self.operation.query(self.body)}]}


async def read_operation_request(operation: Operation, request: Request) -> OperationRequest:
    """The request's body, checked as far as the gateway relies on it (an object with a
    string `model`); raises OperationRequestError."""
    if operation.multipart:
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise OperationRequestError("the body must be multipart/form-data with a `file` and a `model`", None, "invalid_content_type")
        form = await request.form()
        body: dict[str, Any] = {}
        files = []
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                files.append((key, value.filename or "file", value.content_type or "application/octet-stream", await value.read()))
            else:
                body[key] = value
        await form.close()
        parsed = OperationRequest(operation, body, files)
    else:
        try:
            document = loads(await request.body() or b"null")
        except JsonInputError as exc:
            raise OperationRequestError(f"the body is not valid JSON: {exc}", None, "invalid_json") from None
        if not isinstance(document, dict):
            raise OperationRequestError("the body must be a JSON object")
        parsed = OperationRequest(operation, document)
    model = parsed.body.get("model")
    if model is None or model == "":
        raise OperationRequestError("you must provide a model parameter", "model", "missing_model")
    if not isinstance(model, str):
        raise OperationRequestError("'model' must be a string", "model")
    if "stream" in parsed.body and not isinstance(parsed.body["stream"], bool) and not operation.multipart:
        raise OperationRequestError("'stream' must be a boolean", "stream")
    return parsed
