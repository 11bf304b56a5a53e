"""The unit_convert tool (guest-examples/rust/unit_convert) as a plain Python MCP server:
the official SDK's Server (the one RouteIQ's /mcp runs on too) over Streamable HTTP,
the same name, schemas and answers, its arguments checked with jsonschema as the gateway
checks a Wasm tool's. The baseline of bench/mcp_roundtrip.py.
`python bench/mcp_python_tool.py PORT` serves http://127.0.0.1:PORT/mcp."""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any, AsyncIterator

import jsonschema
import mcp.types as types
import uvicorn
from mcp.server.lowlevel.server import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPError
from starlette.applications import Starlette
from starlette.routing import Mount

UNITS: dict[str, tuple[str, float]] = {
    "mm": ("length", 0.001), "cm": ("length", 0.01), "m": ("length", 1.0), "km": ("length", 1000.0),
    "in": ("length", 0.0254), "ft": ("length", 0.3048), "yd": ("length", 0.9144), "mi": ("length", 1609.344),
    "g": ("mass", 0.001), "kg": ("mass", 1.0), "oz": ("mass", 0.028349523125), "lb": ("mass", 0.45359237),
}
INPUT = {"type": "object", "required": ["value", "from", "to"], "properties": {"value": {"type": "number"}, "from": {"enum": list(UNITS)}, "to": {"enum": list(UNITS)}}}
OUTPUT = {"type": "object", "properties": {"value": {"type": "number"}, "unit": {"type": "string"}}}
TOOL = types.Tool(name="unit_convert", description="Convert a length or a mass.", input_schema=INPUT, output_schema=OUTPUT)
CHECK = jsonschema.Draft202012Validator(INPUT)


async def list_tools(ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
    return types.ListToolsResult(tools=[TOOL])


async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
    if params.name != "unit_convert":
        raise MCPError(types.INVALID_PARAMS, f"unknown tool {params.name!r}")
    args = params.arguments or {}
    errors = [e.message for e in CHECK.iter_errors(args)]
    if errors:
        raise MCPError(types.INVALID_PARAMS, "; ".join(errors))
    (kind_from, f), (kind_to, t) = UNITS[args["from"]], UNITS[args["to"]]
    if kind_from != kind_to:
        return types.CallToolResult(content=[types.TextContent(text=f"cannot convert a {kind_from} ({args['from']}) to a {kind_to} ({args['to']})")], is_error=True)
    result = {"value": args["value"] * f / t, "unit": args["to"]}
    return types.CallToolResult(content=[types.TextContent(text=json.dumps(result))], structured_content=result)


def app() -> Starlette:
    sessions = StreamableHTTPSessionManager(app=Server("unit-convert-python", on_list_tools=list_tools, on_call_tool=call_tool))

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with sessions.run():
            yield

    return Starlette(routes=[Mount("/mcp", app=sessions.handle_request)], lifespan=lifespan)


if __name__ == "__main__":
    uvicorn.run(app(), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
