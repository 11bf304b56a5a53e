"""Operator clusters (Envoy's `clusters:`): a callout names a cluster first, host:port
second; the policy grants a cluster by name; its endpoints are trusted (no SSRF check),
everything else keeps the SSRF defence. Real gateways, real wasmtime (the Rust core-module
probe and the Python component probe), real loopback HTTP(S) services as endpoints."""

from __future__ import annotations

import concurrent.futures
import datetime
import ipaddress
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from callout_service import ClusterEndpoint
from routeiq.abi.proxy_wasm import Status
from routeiq.config import ConfigError, parse_config
from routeiq.policy.grants import CalloutRule, Grant
from routeiq.services.callout import CalloutRefused, plan_callout
from routeiq.services.clusters import Cluster, ClusterTable
from support import grant_everything, plugin
from test_capabilities import Probe, lines, probe, probe_guest  # noqa: F401  (probe_guest is a fixture)


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def cluster_app(make_app, probe_guest: Probe, clusters: list[dict[str, Any]], rules: list[dict[str, Any]], **limits: Any):  # type: ignore[no-untyped-def]
    policy = grant_everything(["probe"], callouts=rules, limits=limits)
    return make_app([plugin("probe", probe_guest.wasm)], policy=policy, clusters=clusters)


def test_a_granted_cluster_reaches_a_loopback_endpoint_that_host_port_may_not(make_app, live, probe_guest: Probe) -> None:  # type: ignore[no-untyped-def]
    endpoint = ClusterEndpoint("backend")
    port = port_of(live(endpoint.app))
    # Any host on the endpoint's port is allowed by host rule: only the SSRF defence stands
    # between the plugin and 127.0.0.1 by address; the cluster is the operator's own.
    rules = [{"cluster": "backend", "methods": ["GET", "POST"]}, {"scheme": "http", "host": "*", "port": port, "methods": ["GET"]}]
    app = cluster_app(make_app, probe_guest, [{"name": "backend", "endpoints": [f"127.0.0.1:{port}"]}], rules)
    with TestClient(app) as client:
        got = probe(client, "callout", **{"x-upstream": "backend", "x-path": "/hello", "x-method": "POST", "x-call-body": "hi"})
        assert (got["call_status"], got["status"], got["body"]) == ("0", "200", "backend POST backend /hello")  # Host is the plugin's :authority
        refused = probe(client, "callout", **{"x-upstream": f"127.0.0.1:{port}", "x-path": "/hello"})
        assert refused == {"call_status": str(Status.BAD_ARGUMENT)}
    assert endpoint.received == [("POST", "backend", "/hello")]  # the refused one never arrived
    (record,) = app.state.gateway.services.audit.recent("probe")
    assert (record.call, record.reason) == (probe_guest.call("proxy_http_call"), "ssrf")
    assert "cluster:backend" in {b.name for b in app.state.gateway.breakers.all()}


def test_a_cluster_the_policy_does_not_grant_is_refused_and_audited(make_app, live, probe_guest: Probe) -> None:  # type: ignore[no-untyped-def]
    endpoint = ClusterEndpoint("other")
    port = port_of(live(endpoint.app))
    clusters = [{"name": "backend", "endpoints": [f"127.0.0.1:{port}"]}, {"name": "other", "endpoints": [f"127.0.0.1:{port}"]}]
    app = cluster_app(make_app, probe_guest, clusters, [{"cluster": "backend", "methods": ["GET"]}])
    with TestClient(app) as client:
        assert probe(client, "callout", **{"x-upstream": "other", "x-path": "/x"}) == {"call_status": str(Status.BAD_ARGUMENT)}
        # The granted cluster, but a method its rule does not name.
        assert probe(client, "callout", **{"x-upstream": "backend", "x-path": "/x", "x-method": "DELETE"}) == {"call_status": str(Status.BAD_ARGUMENT)}
    first, second = app.state.gateway.services.audit.recent("probe")
    assert (first.call, first.reason) == (probe_guest.call("proxy_http_call"), "not_allowed")
    assert "cluster 'other'" in first.detail and "cluster 'backend'" in second.detail
    assert second.reason == "not_allowed"
    assert endpoint.received == []
    assert app.state.gateway.services.callouts.started == 0


def test_an_unknown_cluster_name_is_a_bad_argument(make_app, live, probe_guest: Probe) -> None:  # type: ignore[no-untyped-def]
    endpoint = ClusterEndpoint()
    port = port_of(live(endpoint.app))
    app = cluster_app(make_app, probe_guest, [{"name": "backend", "endpoints": [f"127.0.0.1:{port}"]}], [{"cluster": "backend"}])
    with TestClient(app) as client:
        # Not a cluster: read as host `backendx` port 80, which no rule allows.
        assert probe(client, "callout", **{"x-upstream": "backendx"}) == {"call_status": str(Status.BAD_ARGUMENT)}
        assert probe(client, "callout", **{"x-upstream": "Backend"}) == {"call_status": str(Status.BAD_ARGUMENT)}  # names are exact
    assert [r.reason for r in app.state.gateway.services.audit.recent("probe")] == ["not_allowed", "not_allowed"]
    assert endpoint.received == []


def test_round_robin_across_two_endpoints(make_app, live, probe_guest: Probe) -> None:  # type: ignore[no-untyped-def]
    first, second = ClusterEndpoint("first"), ClusterEndpoint("second")
    endpoints = [f"127.0.0.1:{port_of(live(first.app))}", f"127.0.0.1:{port_of(live(second.app))}"]
    app = cluster_app(make_app, probe_guest, [{"name": "pair", "endpoints": endpoints}], [{"cluster": "pair"}], callouts_per_request=1)
    with TestClient(app) as client:
        bodies = [probe(client, "callout", **{"x-upstream": "pair", "x-path": "/who"})["body"] for _ in range(4)]
    assert [b.split()[0] for b in bodies] == ["first", "second", "first", "second"]
    assert len(first.received) == len(second.received) == 2


def test_a_clusters_pool_holds_at_most_max_connections(make_app, live, probe_guest: Probe) -> None:  # type: ignore[no-untyped-def]
    # Three requests call out at once; with max_connections 1 the cluster's pool sends them
    # one after another over its one connection (the endpoint never sees two at a time).
    endpoint = ClusterEndpoint("single", hold_s=0.2)
    port = port_of(live(endpoint.app))
    app = cluster_app(make_app, probe_guest, [{"name": "single", "endpoints": [f"127.0.0.1:{port}"], "max_connections": 1}], [{"cluster": "single"}])
    base = live(app)

    def call(_: int) -> dict[str, str]:
        with httpx.Client(base_url=base, timeout=60, trust_env=False) as client:
            response = client.get("/probe", headers={"x-probe": "callout", "x-upstream": "single", "x-path": "/held", "x-timeout-ms": "5000"})
        return lines(response.text)

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        results = list(pool.map(call, range(3)))
    assert [r["status"] for r in results] == ["200"] * 3, results
    assert len(endpoint.received) == 3
    assert endpoint.most_in_flight == 1


def test_timeout_zero_is_the_clusters_timeout(make_app, live, probe_guest: Probe, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    # An endpoint that accepts and never answers in time (its replies held for 60 s).
    from support import slow_tcp_proxy

    endpoint = ClusterEndpoint()
    with slow_tcp_proxy(port_of(live(endpoint.app)), delay_s=60) as port:
        clusters = [{"name": "slow", "endpoints": [f"127.0.0.1:{port}"], "timeout_s": 0.3}]
        app = cluster_app(make_app, probe_guest, clusters, [{"cluster": "slow"}], callout_timeout_ms=500)
        with caplog.at_level(logging.WARNING, logger="routeiq.dispatch"), TestClient(app) as client:
            for timeout in ("0", "400", "900"):
                got = probe(client, "callout", **{"x-upstream": "slow", "x-path": "/x", "x-timeout-ms": timeout})
                assert (got["call_status"], got["num_headers"]) == ("0", "0")
    # 0: the cluster's timeout_s; a given timeout is the plugin's, capped by the policy's callout_timeout_ms.
    failures = [r.getMessage().rsplit(": ", 1)[1] for r in caplog.records if "callout" in r.getMessage() and "failed" in r.getMessage()]
    assert failures == ["timed out after 300 ms", "timed out after 400 ms", "timed out after 500 ms"], failures


# -------------------------------------------------------------- https clusters
def _certificates(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate it signs for 127.0.0.1 and backend.test."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "routeiq test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key()).serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "backend.test")])).issuer_name(ca_name)
        .public_key(key.public_key()).serial_number(2)
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("backend.test"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return ca_file, cert_file, key_file


def test_an_https_cluster_with_its_own_ca(make_app, live, probe_guest: Probe, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from support import serve

    ca_file, cert_file, key_file = _certificates(tmp_path)
    endpoint = ClusterEndpoint("tls")
    with serve(endpoint.app, ssl_certfile=str(cert_file), ssl_keyfile=str(key_file)) as base:
        assert base.startswith("https://")
        where = f"127.0.0.1:{port_of(base)}"
        clusters = [
            {"name": "by_ip", "endpoints": [where], "tls": {"ca_file": "ca.pem"}},  # relative to the config file (tmp_path)
            {"name": "by_sni", "endpoints": [where], "tls": {"ca_file": str(ca_file), "sni": "backend.test"}},
            {"name": "untrusted", "endpoints": [where], "scheme": "https"},  # the system's trust store: not our CA
            {"name": "wrong_name", "endpoints": [where], "tls": {"ca_file": str(ca_file), "sni": "other.test"}},
        ]
        rules = [{"cluster": c["name"]} for c in clusters]
        app = cluster_app(make_app, probe_guest, clusters, rules, callouts_per_request=1)
        with TestClient(app) as client:
            for name in ("by_ip", "by_sni"):
                got = probe(client, "callout", **{"x-upstream": name, "x-path": "/secure", "x-scheme": "http"})  # :scheme does not matter
                assert (got["status"], got["body"]) == ("200", f"tls GET {name} /secure"), got
            for name in ("untrusted", "wrong_name"):
                got = probe(client, "callout", **{"x-upstream": name, "x-path": "/secure"})
                assert (got["call_status"], got["num_headers"]) == ("0", "0"), got  # the handshake fails: a failed callout
    assert [path for _, _, path in endpoint.received] == ["/secure", "/secure"]


# ------------------------------------------------------------- planning, config
HEADERS = [(b":method", b"GET"), (b":path", b"/x"), (b":authority", b"some_authority")]


def test_a_cluster_call_needs_method_path_and_authority() -> None:
    table = ClusterTable([Cluster.build("web_service", ["127.0.0.1:8099"])])
    grant = Grant("p", callouts=(CalloutRule("", "", 0, frozenset({"GET"}), cluster="web_service"),))
    target = plan_callout(grant, "web_service", HEADERS, clusters=table)
    assert (target.url, target.breaker_name, dict(target.headers)[b"host"]) == ("http://127.0.0.1:8099/x", "cluster:web_service", b"some_authority")
    for missing in (b":method", b":path", b":authority"):
        with pytest.raises(CalloutRefused) as refused:
            plan_callout(grant, "web_service", [h for h in HEADERS if h[0] != missing], clusters=table)
        assert refused.value.reason == "bad_target"
    # A host rule never grants a cluster, and a cluster rule never grants a host.
    host_rule = Grant("p", callouts=(CalloutRule("http", "*", 8099, frozenset({"GET"})),))
    with pytest.raises(CalloutRefused, match="cluster 'web_service'"):
        plan_callout(host_rule, "web_service", HEADERS, clusters=table)
    with pytest.raises(CalloutRefused) as refused:
        plan_callout(grant, "127.0.0.1:8099", HEADERS, clusters=table)
    assert refused.value.reason == "not_allowed"


def test_random_lb_uses_every_endpoint() -> None:
    import random

    table = ClusterTable([Cluster.build("c", ["[::1]:1", "127.0.0.1:2"], lb_policy="random")], rng=random.Random(0))
    cluster = table.get("c")
    assert cluster is not None and cluster.url("::1", 1, "/") == "http://[::1]:1/"
    assert {table.pick(cluster) for _ in range(50)} == {("::1", 1), ("127.0.0.1", 2)}


@pytest.mark.parametrize(
    ("cluster", "message"),
    [
        ({"name": "a", "endpoints": []}, "clusters[0].endpoints: List should have at least 1 item"),
        ({"name": "a", "endpoints": ["127.0.0.1"]}, "clusters[0].endpoints: '127.0.0.1' is not host:port"),
        ({"name": "a", "endpoints": ["::1:80"]}, "clusters[0].endpoints: '::1:80' is not host:port (an IPv6 address goes in brackets"),
        ({"name": "a", "endpoints": ["h:0"]}, "clusters[0].endpoints: 'h:0': the port must be 1-65535"),
        ({"name": "a b", "endpoints": ["h:1"]}, "clusters[0].name: String should match pattern"),
        ({"name": "a", "endpoints": ["h:1"], "scheme": "ftp"}, "clusters[0].scheme: Input should be 'http' or 'https'"),
        ({"name": "a", "endpoints": ["h:1"], "lb_policy": "least_request"}, "clusters[0].lb_policy: Input should be 'round_robin' or 'random'"),
        ({"name": "a", "endpoints": ["h:1"], "max_connections": 0}, "clusters[0].max_connections: Input should be greater than or equal to 1"),
        ({"name": "a", "endpoints": ["h:1"], "tls": {"verify": True}, "scheme": "http"}, "clusters[0]: `tls` is given, so the cluster is https"),
        ({"name": "a", "endpoints": ["h:1"], "tls": {"sni": "x", "cert": "y"}}, "clusters[0].tls.cert: unknown setting"),
    ],
)
def test_bad_cluster_config_names_the_field(cluster: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config({"clusters": [cluster]}, "gw.yaml")
    assert f"gw.yaml: {message}" in str(error.value), str(error.value)


def test_duplicate_cluster_names_and_unreadable_ca_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"gw.yaml: clusters: cluster name 'a' is used twice"):
        parse_config({"clusters": [{"name": "a", "endpoints": ["h:1"]}, {"name": "a", "endpoints": ["h:2"]}]}, "gw.yaml")
    config = parse_config({"clusters": [{"name": "a", "endpoints": ["h:1"], "tls": {"ca_file": "missing.pem"}}]}, "gw.yaml", tmp_path / "gw.yaml")
    with pytest.raises(ConfigError, match=r"clusters\[0\]\.tls\.ca_file: cannot load CA file .*missing\.pem"):
        config.clusters()


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"cluster": "a", "host": "h"}, "give exactly one of `host` (with scheme and port) and `cluster`"),
        ({"methods": ["GET"]}, "give exactly one of `host` (with scheme and port) and `cluster`"),
        ({"cluster": "a", "port": 80}, "a `cluster` rule takes no scheme or port"),
        ({"cluster": "a", "scheme": "https"}, "a `cluster` rule takes no scheme or port"),
    ],
)
def test_a_callout_rule_is_a_host_rule_or_a_cluster_rule(rule: dict[str, Any], message: str) -> None:
    policy = {"plugins": {"p": {"unpinned": True, "callouts": [rule]}}}
    with pytest.raises(ConfigError) as error:
        parse_config({"policy": policy}, "gw.yaml").load_policy()
    assert "plugins.p.callouts[0]" in str(error.value) and message in str(error.value), str(error.value)


def test_a_policy_rule_naming_an_undefined_cluster(caplog: pytest.LogCaptureFixture) -> None:
    policy = {"plugins": {"p": {"unpinned": True, "callouts": [{"cluster": "web_servce"}]}, "elsewhere": {"unpinned": True, "callouts": [{"cluster": "gone"}]}}}
    services = [{"name": "p", "wasm": "p.wasm"}]
    clusters = [{"name": "web_service", "endpoints": ["127.0.0.1:8099"]}]
    # For a plugin this config runs: an error at startup (its every call would be refused).
    with pytest.raises(ConfigError, match=r"plugins\.p\.callouts\[0\]\.cluster: 'web_servce' is not a cluster of .* \(clusters: web_service\)"):
        parse_config({"policy": policy, "services": services, "clusters": clusters}, "gw.yaml").load_policy()
    # For a policy entry of a plugin it does not run (a policy shared by gateways): a warning.
    policy["plugins"]["p"]["callouts"] = [{"cluster": "web_service"}]
    with caplog.at_level(logging.WARNING, logger="routeiq.config"):
        assert parse_config({"policy": policy, "services": services, "clusters": clusters}, "gw.yaml").load_policy() is not None
    assert any("plugins.elsewhere.callouts[0].cluster: 'gone' is not a cluster" in r.getMessage() for r in caplog.records)


def test_policy_check_shows_a_cluster_grant(guests: dict[str, Path], tmp_path: Path) -> None:
    from routeiq.toolkit.policy_check import explain

    policy = {"plugins": {"tagger": {"unpinned": True, "capabilities": ["http_callout"], "callouts": [{"cluster": "web_service", "methods": ["get", "POST"]}]}}}
    data = {"plugins": [{"name": "tagger", "wasm": str(guests["tagger"])}], "clusters": [{"name": "web_service", "endpoints": ["127.0.0.1:8099"]}], "policy": policy}
    report, ok = explain(parse_config(data, "gw.yaml", tmp_path / "gw.yaml"))
    assert ok, report
    assert "callouts:      GET,POST cluster web_service" in report
