"""The RouteIQ plugin ABI: proxy-wasm v0.2.1 types and wire formats (host side)."""
