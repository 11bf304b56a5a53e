"""Host services beyond the exchange: shared data (KV with compare-and-swap), metrics,
properties, HTTP callouts, timers, the clock and the LLM request extension. The gated
ones answer `Unimplemented` / `BadArgument` when the operator's policy does not grant
them (see docs/policy.md); those refusals are audited by the host."""

from __future__ import annotations

from typing import Any, Iterable

from . import cbor
from ._bindings import Err, MetricType, Status, from_wire, host, to_wire
from .errors import host_error
from .http import Value, _wire


# ------------------------------------------------------------------- shared data
class SharedData:
    """Shared data in the plugin's own namespace (`ns/key` reaches a namespace the policy
    grants). Needs the `shared_kv` capability."""

    def get(self, key: str) -> tuple[bytes | None, int]:
        """(value or None, cas). For a missing key the cas is a create token: set() with
        it succeeds only while the key is still absent."""
        try:
            entry = host.get_shared_data(key)
        except Err as err:
            raise host_error(err, "get-shared-data") from None
        return (None if entry.value is None else from_wire(entry.value)), entry.cas

    def set(self, key: str, value: Value, cas: int = 0) -> None:
        """Set unconditionally (cas 0) or only if the key is still at version `cas`
        (raises CasMismatch otherwise)."""
        try:
            host.set_shared_data(key, _wire(value), cas)
        except Err as err:
            raise host_error(err, "set-shared-data") from None


kv = SharedData()


# ---------------------------------------------------------------- shared queues
class SharedQueues:
    """Shared queues (proxy-wasm's): bytes in, bytes out, in arrival order, across the
    plugins and workers that share the store. Needs the `shared_queue` capability."""

    def register(self, name: str) -> int:
        """Register queue `name` in the plugin's own namespace and answer its id; this
        plugin's Plugin.on_queue_ready is called when items arrive."""
        try:
            return host.register_shared_queue(name)
        except Err as err:
            raise host_error(err, "register-shared-queue") from None

    def resolve(self, name: str, namespace: str = "") -> int | None:
        """The id of queue `name` in `namespace` (default: the plugin's own), or None
        while nobody registered it. Another plugin's namespace must be granted."""
        try:
            return host.resolve_shared_queue(namespace, name)
        except Err as err:
            if err.value == Status.NOT_FOUND:
                return None
            raise host_error(err, "resolve-shared-queue") from None

    def enqueue(self, queue_id: int, value: Value) -> None:
        try:
            host.enqueue_shared_queue(queue_id, _wire(value))
        except Err as err:
            raise host_error(err, "enqueue-shared-queue") from None

    def dequeue(self, queue_id: int) -> bytes | None:
        """The oldest item, or None when the queue is empty."""
        try:
            return from_wire(host.dequeue_shared_queue(queue_id))
        except Err as err:
            if err.value == Status.EMPTY:
                return None
            raise host_error(err, "dequeue-shared-queue") from None


queues = SharedQueues()


# ----------------------------------------------------------------------- metrics
class Metric:
    """A plugin metric on the gateway's /metrics as routeiq_plugin_<plugin>_<name>.
    Defined on first use. Needs the `metrics` capability."""

    __slots__ = ("kind", "name", "_id")

    def __init__(self, kind: MetricType, name: str) -> None:
        self.kind = kind
        self.name = name
        self._id: int | None = None

    def _metric_id(self) -> int:
        if self._id is None:
            try:
                self._id = host.define_metric(self.kind, self.name)
            except Err as err:
                raise host_error(err, "define-metric") from None
        return self._id

    def increment(self, delta: int = 1) -> None:
        try:
            host.increment_metric(self._metric_id(), delta)
        except Err as err:
            raise host_error(err, "increment-metric") from None

    def record(self, value: int) -> None:
        try:
            host.record_metric(self._metric_id(), value)
        except Err as err:
            raise host_error(err, "record-metric") from None

    set = record

    def get(self) -> int:
        try:
            return host.get_metric(self._metric_id())
        except Err as err:
            raise host_error(err, "get-metric") from None


class Metrics:
    def counter(self, name: str) -> Metric:
        return Metric(MetricType.COUNTER, name)

    def gauge(self, name: str) -> Metric:
        return Metric(MetricType.GAUGE, name)

    def histogram(self, name: str) -> Metric:
        return Metric(MetricType.HISTOGRAM, name)


metrics = Metrics()


# -------------------------------------------------------------------- properties
def _path(path: str | Iterable[str]) -> list[str]:
    if isinstance(path, str):
        return [p for p in path.replace("\0", ".").split(".") if p]
    return [str(p) for p in path]


def get_property(path: str | Iterable[str]) -> bytes | None:
    """An Envoy-style attribute (`request.path`, `source.address`, ...), or None.
    Integers are 8-byte little-endian."""
    try:
        return from_wire(host.get_property(_path(path)))
    except Err as err:
        if err.value == Status.NOT_FOUND:
            return None
        raise host_error(err, "get-property") from None


def set_property(path: str | Iterable[str], value: Value) -> None:
    """Store a value for the rest of the exchange, visible to every plugin."""
    try:
        host.set_property(_path(path), _wire(value))
    except Err as err:
        raise host_error(err, "set-property") from None


# ---------------------------------------------------------------------- callouts
def http_call(
    upstream: str,
    method: str = "GET",
    path: str = "/",
    headers: Iterable[tuple[str, Value]] = (),
    body: Value = b"",
    timeout_ms: int = 1000,
    scheme: str = "http",
    authority: str | None = None,
) -> int:
    """Start an HTTP callout to `upstream` (host[:port]); returns its call id. The answer
    arrives at HttpFilter.on_http_call_response. Needs `http_callout` and a matching
    callout rule in the policy. Return Action.PAUSE to hold the request meanwhile."""
    pairs = [(":method", _wire(method)), (":path", _wire(path)), (":authority", _wire(authority or upstream)), (":scheme", _wire(scheme))]
    pairs += [(k.lower(), _wire(v)) for k, v in headers]
    try:
        return host.http_call(upstream, pairs, _wire(body), [], timeout_ms)
    except Err as err:
        raise host_error(err, "http-call") from None


def call_status() -> tuple[int, bytes] | None:
    """In HttpFilter.on_http_call_response: (HTTP status code, message) of the callout
    response being delivered (proxy_get_status), else None."""
    try:
        answer = host.get_call_status()
    except Err as err:
        if err.value == Status.NOT_FOUND:
            return None
        raise host_error(err, "get-call-status") from None
    return answer.code, from_wire(answer.message)


# --------------------------------------------------------------- time and timers
def now_ns() -> int:
    """Wall-clock time in nanoseconds since the epoch."""
    return host.get_current_time_nanoseconds()


def set_tick_period(period_ms: int) -> None:
    """Call Plugin.on_tick every `period_ms` (0 stops). Needs `timers`."""
    try:
        host.set_tick_period(period_ms)
    except Err as err:
        raise host_error(err, "set-tick-period") from None


# -------------------------------------------------------------------------- LLM
class Llm:
    """The parsed chat-completion request on the gateway's LLM path. Needs
    `llm_request`."""

    def request(self) -> dict[str, Any] | None:
        """{model, messages: [{role, content}], stream, params}, or None when this is
        not an LLM request."""
        try:
            return cbor.loads(from_wire(host.get_llm_request()))
        except Err as err:
            if err.value == Status.NOT_FOUND:
                return None
            raise host_error(err, "get-llm-request") from None

    def set_messages(self, messages: list[dict[str, Any]]) -> None:
        try:
            host.set_llm_messages(to_wire(cbor.dumps([{"role": m["role"], "content": m.get("content")} for m in messages])))
        except Err as err:
            raise host_error(err, "set-llm-messages") from None

    def set_model(self, model: str) -> None:
        try:
            host.set_llm_model(model)
        except Err as err:
            raise host_error(err, "set-llm-model") from None

    def response(self) -> dict[str, Any] | None:
        """{model, deployment, strategy, status, latency_ms, usage, ...} once the upstream
        answered (complete at on_log), else None."""
        try:
            return cbor.loads(from_wire(host.get_llm_response()))
        except Err as err:
            if err.value == Status.NOT_FOUND:
                return None
            raise host_error(err, "get-llm-response") from None


llm = Llm()
