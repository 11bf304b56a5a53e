"""Dispatch: plugin VM lifecycle and the proxy-wasm callbacks of an HTTP filter chain."""
