"""Envoy attributes (proxy_get_property) through a real uvicorn, read by the hostcall_probe.

The probe's `props` scenario hex-encodes each value, so the tests check Envoy's
encodings byte for byte against what the client put on the wire."""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path
from urllib.parse import urlsplit

import h11
import httpx
import pytest

from routeiq.abi.proxy_wasm import Status, decode_map
from support import eventually, plugin, probe_props as items

NOT_FOUND = str(Status.NOT_FOUND)


@pytest.fixture
def base(make_app, live, guests: dict[str, Path]) -> str:  # type: ignore[no-untyped-def]
    app = make_app([plugin("probe", guests["hostcall_probe"], root_id="probe-root", vm_id="probe-vm")])
    return live(app)


def i64(value: bytes | str) -> int:
    assert isinstance(value, bytes) and len(value) == 8, value
    return struct.unpack("<q", value)[0]


def raw_request(base: str, method: str, target: str, headers: list[tuple[str, str]], body: bytes = b"") -> tuple[tuple[str, int], tuple[str, int], bytes]:
    """One request on a socket of our own: (client address, server address, response body)."""
    url = urlsplit(base)
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        local, peer = sock.getsockname(), sock.getpeername()
        conn = h11.Connection(h11.CLIENT)
        request = conn.send(h11.Request(method=method, target=target, headers=headers))
        sock.sendall(request + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))  # type: ignore[operator]
        chunks = []
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(sock.recv(65536))
            elif isinstance(event, h11.Response):
                assert event.status_code == 200
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return local, peer, b"".join(chunks)


REQUEST_NAMES = [
    "request.path", "request.url_path", "request.query", "request.method", "request.host", "request.scheme",
    "request.protocol", "request.useragent", "request.referer", "request.id", "request.size", "request.total_size",
    "request.time", "request.headers", "request.headers.x-a", "request.headers.x.dotted",
    "source.address", "source.port", "destination.address", "destination.port", "connection.mtls",
    "plugin_name", "plugin_root_id", "plugin_vm_id",
]  # fmt: skip


def test_request_attributes_match_what_the_client_sent(base: str) -> None:
    body = b"hello"
    sent = [
        ("host", "gw.example"), ("x-probe", "props"), ("x-props", ",".join(REQUEST_NAMES)), ("x-a", "1"), ("x-a", "2"),
        ("x.dotted", "d"), ("user-agent", "probe-ua"), ("referer", "http://ref/"), ("x-request-id", "rid-7"),
        ("content-length", str(len(body))), ("connection", "close"),
    ]  # fmt: skip
    before = time.time_ns()
    client, server, text = raw_request(base, "POST", "/probe/x?q=1&r=2", sent, body)
    after = time.time_ns()
    got = items(text.decode(), "\n")
    assert got["request.path"] == b"/probe/x?q=1&r=2"
    assert got["request.url_path"] == b"/probe/x"
    assert got["request.query"] == b"q=1&r=2"
    assert got["request.method"] == b"POST"
    assert got["request.host"] == b"gw.example"
    assert got["request.scheme"] == b"http"
    assert got["request.protocol"] == b"HTTP/1.1"
    assert got["request.useragent"] == b"probe-ua"
    assert got["request.referer"] == b"http://ref/"
    assert got["request.id"] == b"rid-7"
    assert i64(got["request.size"]) == len(body)  # content-length, as Envoy reads it
    assert before <= i64(got["request.time"]) <= after  # int64 ns since the epoch
    assert got["request.headers.x-a"] == b"1,2"
    assert got["request.headers.x.dotted"] == b"d"
    pseudo = [(b":method", b"POST"), (b":path", b"/probe/x?q=1&r=2"), (b":authority", b"gw.example"), (b":scheme", b"http")]
    expected: dict[bytes, bytes] = {}  # first-seen order, repeated values joined as Envoy does
    for k, v in sent:
        if k != "host":
            key = k.encode()
            expected[key] = expected[key] + b"," + v.encode() if key in expected else v.encode()
    headers = decode_map(got["request.headers"])  # type: ignore[arg-type]
    assert headers == pseudo + list(expected.items())
    assert i64(got["request.total_size"]) >= sum(len(k) + len(v) for k, v in headers)
    assert got["source.address"] == f"{client[0]}:{client[1]}".encode()
    assert i64(got["source.port"]) == client[1]
    assert got["destination.address"] == f"{server[0]}:{server[1]}".encode()
    assert i64(got["destination.port"]) == server[1]
    assert got["connection.mtls"] == b"\x00"  # plain HTTP: no peer certificate
    assert got["plugin_name"] == b"probe"
    assert got["plugin_root_id"] == b"probe-root"
    assert got["plugin_vm_id"] == b"probe-vm"


def test_on_log_sees_the_finished_exchange(make_app, live, guests: dict[str, Path], http: httpx.Client) -> None:  # type: ignore[no-untyped-def]
    app = make_app([plugin("probe", guests["hostcall_probe"])])
    base = live(app)
    names = "request.duration,response.code,response.size,response.code_details"
    response = http.get(f"{base}/echo", headers={"x-probe": "props", "x-props-phase": "response", "x-props": names})
    assert response.status_code == 200
    prefix = "probe props on_log "
    line = eventually(lambda: next((m for m in app.state.gateway.logs.messages("probe") if m.startswith(prefix)), None))
    got = items(line[len(prefix) :], ";")
    assert i64(got["request.duration"]) > 0  # only once the request is complete
    assert i64(got["response.code"]) == 200
    assert i64(got["response.size"]) == len(response.content)  # the whole body by now
    assert got["response.code_details"] == b"via_upstream"


def test_dotted_paths_read_the_same_as_segments(base: str, http: httpx.Client) -> None:
    names = "request.path,request.headers.x.dotted,request.method,plugin_name,response.code,no.such"
    headers = {"x-probe": "props", "x-props": names, "x.dotted": "d", "x-request-id": "rid-1"}
    segments = http.get(f"{base}/probe", headers=headers).text
    dotted = http.get(f"{base}/probe", headers={**headers, "x-props-dotted": "1"}).text
    assert dotted == segments
    got = items(dotted, "\n")
    assert got["request.path"] == b"/probe" and got["request.headers.x.dotted"] == b"d"


UNSUPPORTED = [
    "response.code", "response.headers", "request.duration", "request.headers.missing", "connection.id",
    "connection.tls_version", "connection.requested_server_name", "upstream.address", "upstream.port",
    "node", "cluster_name", "route_name", "xds.node", "xds.cluster_name", "listener_direction", "no.such",
]  # fmt: skip


def test_unknown_and_unsupported_attributes_are_not_found(base: str, http: httpx.Client) -> None:
    got = items(http.get(f"{base}/probe", headers={"x-probe": "props", "x-props": ",".join(UNSUPPORTED)}).text, "\n")
    # response.* before any response exists, and what the gateway cannot know truthfully
    assert got == {name: "!" + NOT_FOUND for name in UNSUPPORTED}


def test_response_attributes_in_the_response_phase(base: str, http: httpx.Client) -> None:
    names = "response.code,response.code_details,response.headers,response.headers.content-type,response.total_size,response.flags,request.method,request.url_path"
    response = http.get(f"{base}/echo", headers={"x-probe": "props", "x-props-phase": "response", "x-props": names})
    assert response.status_code == 200
    got = items(response.headers["x-props"], ";")
    assert i64(got["response.code"]) == response.status_code
    assert got["response.code_details"] == b"via_upstream"
    assert got["response.headers.content-type"] == response.headers["content-type"].encode()
    upstream = decode_map(got["response.headers"])  # type: ignore[arg-type]
    assert upstream[0] == (b":status", b"200")
    client_saw = {k.encode(): v.encode() for k, v in response.headers.items()}
    assert all(client_saw.get(k) == v for k, v in upstream[1:] if k not in (b"content-length", b"transfer-encoding"))
    assert i64(got["response.total_size"]) >= sum(len(k) + len(v) for k, v in upstream)
    assert got["response.flags"] == "!" + NOT_FOUND
    assert got["request.method"] == b"GET" and got["request.url_path"] == b"/echo"
