"""What a plugin may do to the header maps (issue #11, items 1 and 2).

A filter with no capabilities (hostile_headers) attacks the request routing through
pseudo-headers, floods the maps, and traps after partial edits with fail_open. The
gateway runs on a real uvicorn in front of a real upstream; a second server stands in
for the host an attacker wants to reach.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from routeiq.abi.proxy_wasm import Status
from routeiq.gateway.embedded_upstream import create_embedded_upstream
from routeiq.gateway.reverse_proxy import ReverseProxy
from support import plugin

NO_CAPABILITIES = {"plugins": {"attacker": {"unpinned": True, "capabilities": []}}}
BAD = str(int(Status.BAD_ARGUMENT))


class Victim:
    """A server nobody should reach through the gateway; it records every hit."""

    def __init__(self) -> None:
        self.hits: list[dict[str, Any]] = []

        async def anything(request: Request) -> JSONResponse:
            self.hits.append({"path": request.url.path, "authorization": request.headers.get("authorization")})
            return JSONResponse({"stolen": True})

        self.app = Starlette(routes=[Route("/{rest:path}", anything, methods=["GET", "POST"])])


@pytest.fixture
def setup(make_app, live, guests: dict[str, Path]):  # type: ignore[no-untyped-def]
    victim = Victim()
    victim_url = live(victim.app)
    upstream_url = live(create_embedded_upstream())

    def gateway(**plugin_options: Any) -> tuple[str, Any]:
        app = make_app([plugin("attacker", guests["hostile_headers"], **plugin_options)], upstream={"url": upstream_url}, policy=NO_CAPABILITIES)
        return live(app), app

    return gateway, victim, victim_url


def attack(http, base: str, path: str = "/echo", **directives: str):  # type: ignore[no-untyped-def]
    headers = {"x-attack": "1", "authorization": "Bearer client-secret"}
    headers.update({f"x-attack-{k.replace('_', '-')}": v for k, v in directives.items()})
    return http.get(base + path, headers=headers)


def result(response) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return dict(part.split("=", 1) for part in response.headers["x-attack-result"].split(";"))


# --------------------------------------------------------------- item 1: :path
@pytest.mark.parametrize(
    "value",
    [
        "@{victim}/stolen",  # userinfo: base URL + path would name the victim
        "//{victim}/stolen",  # network-path reference
        "http://{victim}/stolen",  # absolute-form
        "{victim}/stolen",  # no leading slash
        "/ok#frag",
        "/ok%0D%0Ax-injected: 1",
        "/ok\\..\\x",
        "/bad path",
        "*",
        "",
    ],
)
def test_path_cannot_leave_origin_form(setup, http, value: str) -> None:
    gateway, victim, victim_url = setup
    base, app = gateway()
    response = attack(http, base, name=":path", value=value.format(victim=victim_url.removeprefix("http://")))
    assert result(response)["set"] == BAD
    assert response.status_code == 200 and response.json()["path"] == "/echo"  # went where the client asked
    assert victim.hits == []
    audit = app.state.gateway.services.audit.recent("attacker")
    assert [(r.call, r.reason) for r in audit] == [("proxy_replace_header_map_value", "pseudo_header")]


def test_a_valid_path_rewrite_stays_on_the_upstream(setup, http) -> None:
    gateway, victim, _ = setup
    base, _ = gateway()
    response = attack(http, base, name=":path", value="/echo/rewritten?x=1")
    assert result(response)["set"] == "0"
    assert response.json()["path"] == "/echo/rewritten" and response.json()["query"] == "x=1"
    assert response.json()["headers"] and ["authorization", "Bearer client-secret"] in response.json()["headers"]
    assert victim.hits == []


@pytest.mark.parametrize(
    "name,value",
    [
        (":authority", "evil.example@127.0.0.1"),
        (":authority", "host/path"),
        (":authority", "host?query"),
        (":method", "GET /x HTTP/1.1"),
        (":method", ""),
        (":scheme", "ftp"),
        (":status", "200"),  # not a request pseudo-header
        (":evil", "1"),
        ("x-split", "a%0D%0Ax-injected: 1"),  # percent-decoded by the guest
        ("x-nul", "a%00b"),
        ("bad name", "1"),
    ],
)
def test_request_pseudo_headers_and_values_are_checked(setup, http, name: str, value: str) -> None:
    gateway, victim, _ = setup
    base, _ = gateway()
    response = attack(http, base, name=name, value=value)
    assert result(response)["set"] == BAD, (name, value)
    assert response.status_code == 200 and victim.hits == []
    assert not any(k in ("x-injected", "x-split", "x-nul") for k, _ in response.json()["headers"])


def test_authority_changes_only_the_host_header(setup, http) -> None:
    gateway, victim, victim_url = setup
    base, _ = gateway()
    response = attack(http, base, name=":authority", value=victim_url.removeprefix("http://"))
    assert result(response)["set"] == "0"
    # The request still went to the configured upstream, with the plugin's Host.
    assert response.json()["path"] == "/echo"
    assert ["host", victim_url.removeprefix("http://")] in response.json()["headers"]
    assert victim.hits == []


def test_method_rewrite_applies(setup, http) -> None:
    gateway, _, _ = setup
    base, _ = gateway()
    response = attack(http, base, name=":method", value="POST")
    assert result(response)["set"] == "0" and response.json()["method"] == "POST"


@pytest.mark.parametrize("name", [":path", ":method", ":scheme"])
def test_required_pseudo_headers_cannot_be_removed(setup, http, name: str) -> None:
    gateway, _, _ = setup
    base, _ = gateway()
    response = attack(http, base, remove=name)
    assert result(response)["remove"] == BAD and response.status_code == 200


@pytest.mark.parametrize("value,ok", [("201", True), ("99", False), ("600", False), ("2000", False), ("abc", False)])
def test_response_status_is_checked(setup, http, value: str, ok: bool) -> None:
    gateway, _, _ = setup
    base, _ = gateway()
    response = attack(http, base, status=value)
    assert result(response)["status"] == ("0" if ok else BAD)
    assert response.status_code == (int(value) if ok else 200)


def test_upstream_url_is_built_from_parts() -> None:
    proxy = ReverseProxy("http://127.0.0.1:9000/base")
    url = proxy.url_for(b"/v1/x", b"q=1")
    assert (url.host, url.port, url.raw_path_qs) == ("127.0.0.1", 9000, "/base/v1/x?q=1")
    # Even a target that slipped past the checks cannot move the request elsewhere.
    url = proxy.url_for(b"@evil.example:1/stolen", b"")
    assert (url.host, url.port, url.user) == ("127.0.0.1", 9000, None)


# --------------------------------------------------------- item 2: bounded maps
def test_a_plugin_cannot_flood_the_request_headers(setup, http) -> None:
    gateway, _, _ = setup
    base, app = gateway()
    response = attack(http, base, add="5000")
    got = result(response)
    assert got["add"] == BAD
    forwarded = response.json()["headers"]
    assert len(forwarded) <= 100 < 5000
    assert int(got["added"]) == sum(k.startswith("x-flood-") for k, _ in forwarded)
    assert ("proxy_add_header_map_value", "header_limit") in [(r.call, r.reason) for r in app.state.gateway.services.audit.recent("attacker")]


def test_set_header_map_pairs_is_bounded_too(setup, http) -> None:
    gateway, _, _ = setup
    base, _ = gateway()
    response = attack(http, base, set_map="5000")
    assert result(response)["map"] == BAD
    assert not any(k.startswith("x-bulk-") for k, _ in response.json()["headers"])
    assert result(attack(http, base, set_map="10"))["map"] == "0"


def test_the_byte_cap_applies_to_plugin_maps(make_app, live, http, guests) -> None:
    upstream_url = live(create_embedded_upstream())
    app = make_app([plugin("attacker", guests["hostile_headers"])], upstream={"url": upstream_url}, policy=NO_CAPABILITIES, server={"max_request_headers_kb": 2})
    response = attack(http, live(app), add="500")
    got = result(response)
    # 26-28 bytes per added header: the 2 KiB cap stops it well before the count cap.
    assert got["add"] == BAD and 30 < int(got["added"]) < 80


def test_fail_open_plugin_that_traps_leaves_no_partial_changes(setup, http) -> None:
    gateway, _, _ = setup
    base, app = gateway(fail_open=True)
    response = attack(http, base, add="50", name="x-attacker", value="was-here", trap="1")
    assert response.status_code == 200
    forwarded = dict((k, v) for k, v in response.json()["headers"])
    assert not any(k.startswith("x-flood-") for k in forwarded)
    assert "x-attacker" not in forwarded
    assert app.state.gateway.plugin("attacker").stats.traps == 1


def test_fail_open_plugin_that_traps_after_a_local_response_is_skipped(setup, http) -> None:
    gateway, _, _ = setup
    base, _ = gateway(fail_open=True)
    response = attack(http, base, local="1", trap="1")
    assert response.status_code == 200 and response.json()["path"] == "/echo"


def test_fail_closed_plugin_that_traps_answers_503(setup, http) -> None:
    gateway, _, _ = setup
    base, _ = gateway()
    response = attack(http, base, add="50", trap="1")
    assert response.status_code == 503 and response.json()["error"]["plugin"] == "attacker"
