"""Per-language hook overhead: the same tagger filter (check a deny header and the path,
add one header) in Rust, C, AssemblyScript and Python, one proxy_on_request_headers
round trip with 10 request headers through the RouteIQ host."""

from __future__ import annotations

from pathlib import Path

import pytest

from routeiq.abi.proxy_wasm import Action
from routeiq.dispatch.loader import load_plugin
from routeiq.dispatch.plugin_spec import PluginSpec
from routeiq.hostcalls.state import HeaderMap, HttpStream
from routeiq.runtime.wasm_runtime import WasmRuntime

from inputs import HEADERS
TAGGERS = {"rust": "tagger", "c": "c_tagger", "assemblyscript": "as_tagger", "python": "py_tagger"}


@pytest.fixture(scope="module")
def modules(all_guests: dict[str, Path]) -> dict[str, Path]:
    return {lang: all_guests[name] for lang, name in TAGGERS.items()}


@pytest.mark.benchmark(group="language-overhead")
@pytest.mark.parametrize("lang", list(TAGGERS))
def test_tagger_request_headers(benchmark, modules: dict[str, Path], runtime: WasmRuntime, lang: str) -> None:  # type: ignore[no-untyped-def]
    plugin = load_plugin(PluginSpec(TAGGERS[lang], modules[lang], plugin_config=b'{"tag":"bench"}'), runtime)
    vm = plugin.start()
    stream = HttpStream(request_headers=HeaderMap(list(HEADERS)))
    context = vm.new_context(stream)
    vm.call("proxy_on_context_create", context, context.context_id, vm.root.context_id)
    headers = stream.request_headers

    def hook() -> int | None:
        headers.pairs = list(HEADERS)
        return vm.call("proxy_on_request_headers", context, context.context_id, 10, 1)

    result = benchmark(hook)
    assert result in (Action.CONTINUE, None, 0)
    assert headers.get(b"x-routeiq-tagged") == b"bench"
    plugin.close()
