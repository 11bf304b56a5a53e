"""Gateway: the ASGI app, the plugin filter middleware and the upstreams."""
