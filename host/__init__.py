"""RouteIQ: an OpenAI-compatible LLM gateway extended by sandboxed WebAssembly plugins."""

__version__ = "0.1.0"
