"""Routes (config `routes:`, Envoy's route table) through a real uvicorn: matching, the
upstream each route names, per-route plugins and config, route properties, re-matching
after a plugin changes the request headers, and the unmodified Go SDK examples whose
envoy.yaml relies on routes (properties: route-metadata auth; http_routing: the canary
virtual host)."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from google.protobuf import struct_pb2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from routeiq.abi.proxy_wasm import Status, decode_map
from routeiq.config import ConfigError, parse_config
from support import grant_everything, plugin, probe_props, serve, with_manifest

GO_SDK = Path(__file__).resolve().parents[2] / "shared" / "data" / "proxy-wasm-sdk" / "go-sdk-44c7d58"
WASM_FILTER = "envoy.filters.http.wasm"


def service(name: str) -> Starlette:
    """A loopback upstream that says who it is and what it got."""

    async def answer(request: Request) -> JSONResponse:
        return JSONResponse({"service": name, "path": request.url.path, "method": request.method, "host": request.headers.get("host")})

    return Starlette(routes=[Route("/{rest:path}", answer, methods=["GET", "POST", "PUT", "DELETE"])])


@pytest.fixture
def upstreams() -> Iterator[dict[str, str]]:
    with serve(service("primary")) as primary, serve(service("canary")) as canary:
        yield {"primary": primary, "canary": canary}


def url(base: str) -> dict[str, Any]:
    return {"url": base}


def test_first_matching_route_picks_the_upstream(make_app, live, upstreams: dict[str, str], http: httpx.Client) -> None:  # type: ignore[no-untyped-def]
    routes = [
        {"name": "exact", "match": {"path": "/api/exact"}, "upstream": url(upstreams["canary"])},
        {"name": "regex", "match": {"regex": r"/v[0-9]+/items/[a-z]+"}, "upstream": url(upstreams["canary"])},
        {"name": "posts", "match": {"prefix": "/api", "methods": ["post"]}, "upstream": url(upstreams["canary"])},
        {"name": "flagged", "match": {"prefix": "/api", "headers": [{"name": "x-canary", "exact": "yes"}]}, "upstream": url(upstreams["canary"])},
        {"name": "not-internal", "match": {"prefix": "/api", "headers": [{"name": "x-internal", "present": True, "invert": True}]}, "upstream": url(upstreams["primary"])},
        {"name": "echo", "match": {"prefix": "/echo"}, "upstream": "embedded"},
    ]
    base = live(make_app([], routes=routes))

    def served(path: str, method: str = "GET", **headers: str) -> str | None:
        response = http.request(method, base + path, headers=headers)
        return response.json().get("service") if response.status_code == 200 else f"{response.status_code}"

    assert served("/api/exact") == "canary"
    assert served("/api/exact/more") == "primary"  # exact is exact; the prefix route takes it
    assert served("/v2/items/abc") == "canary" and served("/v2/items/ABC") == "404"  # a full match, case-sensitive
    assert served("/api/x", "POST") == "canary"
    assert served("/api/x", **{"x-canary": "yes"}) == "canary"
    assert served("/api/x") == "primary"
    assert http.get(base + "/echo").json()["path"] == "/echo"  # the embedded upstream
    # x-internal: no route holds (inverted presence), so the router's 404, OpenAI-shaped
    missed = http.get(base + "/api/x", headers={"x-internal": "1"})
    assert missed.status_code == 404
    assert missed.json()["error"]["code"] == "route_not_found"
    assert http.get(base + "/nowhere").status_code == 404


def test_domains_match_the_authority_as_envoy_virtual_hosts(make_app, live, upstreams: dict[str, str], http: httpx.Client) -> None:  # type: ignore[no-untyped-def]
    routes = [
        {"name": "canary", "match": {"domains": ["*-canary"]}, "upstream": url(upstreams["canary"])},
        {"name": "api", "match": {"domains": ["api.example.com", "*.internal"]}, "upstream": url(upstreams["canary"])},
        {"name": "primary", "match": {"domains": ["*"]}, "upstream": url(upstreams["primary"])},
    ]
    base = live(make_app([], routes=routes))
    assert http.get(base + "/", headers={"host": "api.example.com:8443"}).json()["service"] == "canary"  # port ignored
    assert http.get(base + "/", headers={"host": "db.INTERNAL"}).json()["service"] == "canary"
    assert http.get(base + "/", headers={"host": "x-canary"}).json()["service"] == "canary"
    assert http.get(base + "/", headers={"host": "example.com"}).json()["service"] == "primary"


def test_go_http_routing_sends_the_canary_rewrite_to_the_canary_cluster(make_app, live, upstreams: dict[str, str], http: httpx.Client) -> None:  # type: ignore[no-untyped-def]
    # The example's envoy.yaml: virtual host `*-canary` -> cluster canary, `*` -> cluster
    # primary. Its filter appends "-canary" to :authority on an even dice (the config
    # overrides the dice); Envoy clears the route cache on that header change, so the
    # request goes to the canary cluster, with the rewritten authority as Host. The
    # authority picks among the operator's routes only: it never names a destination.
    clusters = [{"name": name, "endpoints": [upstreams[name].removeprefix("http://")]} for name in ("primary", "canary")]
    routes = [
        {"name": "canary_route", "match": {"domains": ["*-canary"]}, "upstream": {"cluster": "canary"}},
        {"name": "primary_route", "match": {"domains": ["*"]}, "upstream": {"cluster": "primary"}},
    ]
    for dice, expected in (("2", "canary"), ("1", "primary")):
        app = make_app([{"name": "http_routing", "wasm": str(GO_SDK / "http_routing.wasm"), "config": dice}], routes=routes, clusters=clusters)
        base = live(app)
        answer = http.get(base + "/").json()
        assert answer["service"] == expected
        authority = base.removeprefix("http://")
        assert answer["host"] == (authority + "-canary" if expected == "canary" else authority)  # Host as the client's :authority


def test_a_url_upstream_gets_its_own_host_unless_a_plugin_rewrote_it(make_app, live, upstreams: dict[str, str], http: httpx.Client) -> None:  # type: ignore[no-untyped-def]
    routes = [{"name": "all", "upstream": url(upstreams["primary"])}]
    for dice, rewritten in (("2", True), ("1", False)):
        base = live(make_app([{"name": "http_routing", "wasm": str(GO_SDK / "http_routing.wasm"), "config": dice}], routes=routes))
        host = http.get(base + "/").json()["host"]
        assert host == (base.removeprefix("http://") + "-canary" if rewritten else upstreams["primary"].removeprefix("http://"))


def test_go_properties_example_authenticates_by_route_metadata(make_app, live, upstreams: dict[str, str], http: httpx.Client) -> None:  # type: ignore[no-untyped-def]
    # As its envoy.yaml: /one wants a `cookie` header, /two an `authorization` header
    # (route metadata filter_metadata."envoy.filters.http.wasm".auth), /three nothing.
    def route(name: str, prefix: str, auth: str | None) -> dict[str, Any]:
        entry: dict[str, Any] = {"name": name, "match": {"prefix": prefix}, "upstream": {"cluster": "web_service"}}
        if auth is not None:
            entry["metadata"] = {"filter_metadata": {WASM_FILTER: {"auth": auth}}}
        return entry

    routes = [route("one", "/one", "cookie"), route("two", "/two", "authorization"), route("three", "/three", None)]
    clusters = [{"name": "web_service", "endpoints": [upstreams["primary"].removeprefix("http://")]}]
    app = make_app([{"name": "properties", "wasm": str(GO_SDK / "properties.wasm")}], routes=routes, clusters=clusters)
    base = live(app)
    assert http.get(base + "/one").status_code == 401
    assert http.get(base + "/one", headers={"cookie": "a=b"}).status_code == 200
    assert http.get(base + "/two", headers={"cookie": "a=b"}).status_code == 401
    assert http.get(base + "/two", headers={"authorization": "Bearer x"}).json()["path"] == "/two"
    assert http.get(base + "/three").status_code == 200
    lines = app.state.gateway.logs.messages("properties")
    assert 'auth header is "cookie"' in lines and 'auth header is "authorization"' in lines
    assert "no auth header for route" in lines


def test_route_properties_with_envoy_encodings(make_app, live, guests: dict[str, Path], http: httpx.Client) -> None:  # type: ignore[no-untyped-def]
    metadata = {"filter_metadata": {WASM_FILTER: {"auth": "cookie", "weight": 2, "on": True, "tags": ["a", "b"]}, "other": {"x": "y"}}}
    routes = [{"name": "probed", "match": {"prefix": "/echo"}, "upstream": "embedded", "metadata": metadata}]
    base = live(make_app([plugin("probe", guests["hostcall_probe"])], routes=routes))
    names = "route_name,xds.route_name,cluster_name,xds.cluster_name,route_metadata,xds.route_metadata,route_metadata.filter_metadata,route_metadata.no_such_field"
    response = http.get(base + "/echo", headers={"x-probe": "props", "x-props-phase": "response", "x-props": names})
    assert response.status_code == 200
    got = probe_props(response.headers["x-props"])
    assert got["route_name"] == got["xds.route_name"] == b"probed"
    assert got["cluster_name"] == got["xds.cluster_name"] == "!" + str(Status.NOT_FOUND)  # a URL/embedded route has no cluster
    assert got["route_metadata.no_such_field"] == "!" + str(Status.NOT_FOUND)
    # The whole message: envoy.config.core.v3.Metadata in protobuf wire format.
    whole = got["route_metadata"]
    assert whole == got["xds.route_metadata"]
    assert isinstance(whole, bytes)
    assert _decode_metadata(whole) == metadata["filter_metadata"]
    # filter_metadata: a CEL map of Structs, serialized as pairs (nested maps as pairs too)
    filters = dict(decode_map(got["route_metadata.filter_metadata"]))  # type: ignore[arg-type]
    wasm = dict(decode_map(filters[WASM_FILTER.encode()]))
    assert wasm[b"auth"] == b"cookie"
    assert struct.unpack("<d", wasm[b"weight"]) == (2.0,)  # a Struct number is a double
    assert wasm[b"on"] == b"\x01"
    assert [k for k, _ in decode_map(wasm[b"tags"])] == [b"a", b"b"]


def test_cluster_name_is_the_route_cluster(make_app, live, guests: dict[str, Path], upstreams: dict[str, str], http: httpx.Client) -> None:  # type: ignore[no-untyped-def]
    clusters = [{"name": "backend", "endpoints": [upstreams["canary"].removeprefix("http://")]}]
    routes = [{"name": "to-backend", "upstream": {"cluster": "backend"}}]
    base = live(make_app([plugin("probe", guests["hostcall_probe"])], routes=routes, clusters=clusters))
    response = http.get(base + "/anything", headers={"x-probe": "props", "x-props-phase": "response", "x-props": "cluster_name,xds.cluster_name,route_name"})
    assert response.json()["service"] == "canary"
    got = probe_props(response.headers["x-props"])
    assert got["cluster_name"] == got["xds.cluster_name"] == b"backend"
    assert got["route_name"] == b"to-backend"


def _decode_metadata(data: bytes) -> dict[str, Any]:
    """Read back filter_metadata (field 1, map<string, Struct>) from Metadata bytes."""
    out: dict[str, Any] = {}
    pos = 0

    def varint() -> int:
        nonlocal pos
        shift = value = 0
        while True:
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    while pos < len(data):
        assert varint() == (1 << 3 | 2)
        end = varint() + pos
        key = value = None
        while pos < end:
            tag = varint()
            size = varint()
            chunk, pos = data[pos : pos + size], pos + size
            if tag == (1 << 3 | 2):
                key = chunk.decode()
            else:
                parsed = struct_pb2.Struct()
                parsed.ParseFromString(chunk)
                value = {k: (list(v) if isinstance(v, struct_pb2.ListValue) else v) for k, v in parsed.items()}
        out[key] = value  # type: ignore[index]
    return out


def test_route_plugins_disabled_and_configured_per_route(make_app, live, guests: dict[str, Path], http: httpx.Client) -> None:  # type: ignore[no-untyped-def]
    # Envoy's per-route FilterConfig.disabled; Kong's route-scoped plugin config: the
    # route runs its own instance configured with the route's config.
    routes = [
        {"name": "plain", "match": {"prefix": "/echo/plain"}, "upstream": "embedded", "plugins": {"tagger": {"disabled": True}}},
        {"name": "special", "match": {"prefix": "/echo/special"}, "upstream": "embedded", "plugins": {"tagger": {"config": {"tag": "special"}}}},
        {"name": "rest", "match": {"prefix": "/"}, "upstream": "embedded"},
    ]
    app = make_app([plugin("tagger", guests["tagger"], config={"tag": "everywhere"})], routes=routes)
    base = live(app)

    def tag(path: str) -> str | None:
        response = http.get(base + path)
        assert response.status_code == 200, response.text
        return dict(response.json()["headers"]).get("x-routeiq-tagged")

    assert tag("/echo/plain") is None
    assert tag("/echo/special") == "special"
    assert tag("/echo/other") == "everywhere"
    described = http.get(base + "/health").json()["plugins"]
    tagger = next(p for p in described if p["name"] == "tagger")
    assert [(r["route"], r["state"]) for r in tagger["route_instances"]] == [("special", "ready")]
    # An operator's quarantine holds for the route's instance too (fail closed: 503).
    app.state.gateway.plugin_set.quarantine("tagger", "test")
    assert http.get(base + "/echo/special").status_code == 503
    assert http.get(base + "/echo/plain").status_code == 200  # the plugin does not run there
    app.state.gateway.plugin_set.release("tagger", "test")
    assert tag("/echo/special") == "special"


def test_routes_match_the_requested_model(make_app, live, http: httpx.Client) -> None:  # type: ignore[no-untyped-def]
    model_list = [
        {"model_name": name, "litellm_params": {"model": f"openai/{name}", "api_base": "embedded"}} for name in ("fast", "smart")
    ]
    routes = [
        {"name": "smart-only", "match": {"path": "/v1/chat/completions", "models": ["smart"]}, "upstream": "llm", "metadata": {"filter_metadata": {"x": {"tier": "gold"}}}},
        {"name": "api", "match": {"prefix": "/v1/"}, "upstream": "llm", "plugins": {}},
        {"name": "echo", "match": {"prefix": "/echo"}},
    ]
    app = make_app([], routes=routes, model_list=model_list)
    base = live(app)
    chat = {"messages": [{"role": "user", "content": "hi"}]}
    for model in ("fast", "smart"):
        assert http.post(base + "/v1/chat/completions", json={**chat, "model": model}).status_code == 200
    assert http.get(base + "/v1/models").status_code == 200
    assert http.get(base + "/echo").status_code == 200  # `default`: the gateway's upstream
    assert http.get(base + "/v1/nothing").json()["error"]["code"] == "route_not_found"


@pytest.mark.parametrize(
    "routes, expected",
    [
        ([{"name": "a"}, {"name": "a"}], "routes[1]: route name 'a' is used twice"),
        ([{"name": "a", "match": {"prefix": "/x", "path": "/y"}}], "routes[0].match: give at most one of prefix, path, regex"),
        ([{"name": "a", "match": {"prefix": "x"}}], "routes[0].match: prefix must start with '/'"),
        ([{"name": "a", "match": {"regex": "("}}], "does not compile"),
        ([{"name": "a", "match": {"headers": [{"name": "x", "exact": "1", "prefix": "2"}]}}], "routes[0].match.headers[0]: give at most one of"),
        ([{"name": "a", "plugins": {"ghost": {"disabled": True}}}], "routes[0].plugins.ghost: no plugin of that name"),
        ([{"name": "a", "metadata": {"typed": {}}}], "routes[0].metadata: unknown key 'typed'"),
        ([{"name": "a", "upstream": "nowhere"}], "routes[0].upstream"),
        ([{"name": "a", "upstream": {"cluster": "ghost"}}], "routes[0].upstream.cluster: no cluster 'ghost' in `clusters`"),
    ],
)
def test_bad_routes_name_file_and_field(routes: list[dict[str, Any]], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"routes": routes}, "gw.yaml")
    assert str(err.value).startswith("gw.yaml: ")
    assert expected in str(err.value)


def test_an_llm_route_without_a_model_list_is_refused(make_app) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=r"routes\[0\].upstream: `llm` needs a model_list"):
        make_app([], routes=[{"name": "a", "upstream": "llm"}])


def test_a_route_config_the_schema_refuses_stops_startup(make_app, guests: dict[str, Path], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    schema_wasm = tmp_path / "tagger-schema.wasm"
    schema_wasm.write_bytes(with_manifest(guests["tagger"].read_bytes(), {"config_schema": {"properties": {"tag": {"type": "string"}}}}))
    routes = [{"name": "r", "plugins": {"tagger": {"config": {"tag": 5}}}}]
    with pytest.raises(ConfigError, match=r"routes 'r': plugin 'tagger'.*not of type 'string'"):
        make_app([plugin("tagger", schema_wasm)], routes=routes, policy=grant_everything(["tagger"]))
