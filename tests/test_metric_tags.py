"""Metrics with tags (issue #13 item 10): Envoy's stats tag extraction turns tag-carrying
plugin metric names into Prometheus labels, configured as Envoy's `stats_config`."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from routeiq.config import ConfigError, parse_config
from routeiq.services.plugin_metrics import TagRule, extract_tags

GO_SDK = Path(__file__).resolve().parents[2] / "shared" / "data" / "proxy-wasm-sdk" / "go-sdk-44c7d58"

# The rules of the Go SDK metrics example's envoy.yaml (bootstrap stats_config).
ENVOY_RULES = {"stats_tags": [{"tag_name": "value", "regex": "(_value=([a-zA-Z]+))"}, {"tag_name": "reporter", "regex": "(_reporter=([a-zA-Z]+))"}]}


def samples(text: str, family: str) -> dict[frozenset[tuple[str, str]], float]:
    """{labels: value} of one family's samples in Prometheus text."""
    out = {}
    for line in text.splitlines():
        match = re.match(rf"^{re.escape(family)}(?:\{{([^}}]*)\}})? (\S+)$", line)
        if match:
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
            out[labels] = float(match.group(2))
    return out


def test_the_go_metrics_example_is_a_labelled_counter(make_app, live) -> None:  # type: ignore[no-untyped-def]
    base = live(make_app([{"name": "metrics", "wasm": str(GO_SDK / "metrics.wasm")}], stats_config=ENVOY_RULES))
    with httpx.Client(base_url=base, timeout=30) as client:
        for value, times in (("foo", 3), ("bar", 2)):
            for _ in range(times):
                assert client.get("/echo", headers={"my-custom-header": value}).status_code == 200
        assert client.get("/echo").status_code == 200  # no header: no counter
        text = client.get("/metrics").text
    family = "routeiq_plugin_metrics_custom_header_value_counts"
    assert f"# TYPE {family}_total counter" in text
    # Envoy shows custom_header_value_counts{value="foo",reporter="wasmgosdk"} 3
    foo, bar = (frozenset({("value", v), ("reporter", "wasmgosdk")}) for v in ("foo", "bar"))
    assert samples(text, family + "_total") == {foo: 3.0, bar: 2.0}
    assert "value=foo" not in text  # no untagged copy


def test_without_tag_rules_a_name_is_kept_whole(make_app, live) -> None:  # type: ignore[no-untyped-def]
    base = live(make_app([{"name": "metrics", "wasm": str(GO_SDK / "metrics.wasm")}]))
    with httpx.Client(base_url=base, timeout=30) as client:
        client.get("/echo", headers={"my-custom-header": "foo"})
        text = client.get("/metrics").text
    assert samples(text, "routeiq_plugin_metrics_custom_header_value_counts_value_foo_reporter_wasmgosdk_total") == {frozenset(): 1.0}


def test_tag_extraction_follows_envoys_rules() -> None:
    envoy = [TagRule("value", re.compile(r"(_value=([a-zA-Z]+))")), TagRule("reporter", re.compile(r"(_reporter=([a-zA-Z]+))"))]
    assert extract_tags("counts_value=foo_reporter=go", envoy) == ("counts", (("value", "foo"), ("reporter", "go")))
    assert extract_tags("counts_reporter=go_value=foo", envoy) == ("counts", (("value", "foo"), ("reporter", "go")))  # rules see the whole name
    assert extract_tags("counts", envoy) == ("counts", ())
    # One capture group: it is both what is cut out and the value.
    assert extract_tags("requests.red", [TagRule("color", re.compile(r"\.(red|blue)$"))]) == ("requests.", (("color", "red"),))
    # Two: the first is cut out, the second is the value (Envoy's default extractors' shape).
    assert extract_tags("cluster.upstream_a.requests", [TagRule("cluster_name", re.compile(r"^cluster\.((.+?)\.)"))]) == ("cluster.requests", (("cluster_name", "upstream_a"),))
    assert extract_tags("x.y", [TagRule("env", fixed_value="prod")]) == ("x.y", (("env", "prod"),))


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"tag_name": "t", "regex": "no_group"}, "one or two capture groups"),
        ({"tag_name": "t", "regex": "(a)(b)(c)"}, "one or two capture groups"),
        ({"tag_name": "t", "regex": "(unclosed"}, "does not compile"),
        ({"tag_name": "t", "regex": "(a)", "fixed_value": "v"}, "exactly one of"),
        ({"tag_name": "not a label", "regex": "(a)"}, "tag_name"),
    ],
)
def test_a_bad_tag_rule_is_refused_at_load(rule: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({"stats_config": {"stats_tags": [rule]}}, "bad.yaml")
