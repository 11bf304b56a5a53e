"""OpenTelemetry tracing for one app: a span per request, a child span per plugin callback,
the routing decision and the LLM call. The app owns its TracerProvider (none is set
globally); with tracing off, no tracer exists and instrumentation costs a None check."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Tracer

    from routeiq.config import LoadedConfig


class Tracing:
    def __init__(self, config: "LoadedConfig", exporter: "SpanExporter | None" = None) -> None:
        self.tracer: Tracer | None = None
        self._provider = None
        settings = config.model.tracing
        if exporter is None and settings.exporter == "none":
            return
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}))
        if exporter is not None:
            provider.add_span_processor(SimpleSpanProcessor(exporter))  # tests: synchronous
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.endpoint)))
        self._provider = provider
        self.tracer = provider.get_tracer("routeiq")

    def shutdown(self) -> None:
        if self._provider is not None:
            self._provider.shutdown()
            self._provider = None
