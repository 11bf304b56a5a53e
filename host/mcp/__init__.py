"""MCP: Wasm modules as MCP tools, served at /mcp with keys and policy (docs/mcp.md)."""
