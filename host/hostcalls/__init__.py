"""Host side of the proxy-wasm ABI: one module per group of host calls.

Find a host call by its proxy-wasm name: `proxy_get_header_map_value` lives in
headers.py, `proxy_get_buffer_bytes` in buffers.py, WASI `fd_write` in wasi.py, and
table.py lists them all.
"""
