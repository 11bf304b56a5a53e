"""One request-headers hook of a Python guest (a componentize-py component): 10 request
headers, read one, add one (the logic of guest-examples/rust/bench_headers, here
guest-examples/python/py_bench_headers).

Columns: the component through RouteIQ's host path (ComponentPlugin / ComponentVM: our
own value marshalling over the component C API), and the same component through
wasmtime-py's generic component API (`Func.__call__`, `LinkerInstance.add_func`).
Run with `./dev bench`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import wasmtime
from wasmtime import component as wc

from routeiq.abi.proxy_wasm import Action
from routeiq.dispatch.loader import load_plugin
from routeiq.dispatch.plugin_spec import PluginSpec
from routeiq.hostcalls.state import HeaderMap, HttpStream
from routeiq.runtime.component import FILTER_INTERFACE, HOST_INTERFACE
from routeiq.runtime.engine import EngineSettings, create_engine
from routeiq.runtime.wasm_runtime import WasmRuntime
from routeiq.toolchain.python import build_python_guests

from inputs import HEADERS

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def py_bench_guest() -> Path:
    return next(p for p in build_python_guests(ROOT, print) if p.stem == "py_bench_headers")


def test_python_guest_routeiq_host(benchmark, runtime: WasmRuntime, py_bench_guest: Path) -> None:  # type: ignore[no-untyped-def]
    plugin = load_plugin(PluginSpec("bench", py_bench_guest), runtime)
    vm = plugin.start()
    stream = HttpStream(request_headers=HeaderMap(list(HEADERS)))
    context = vm.new_context(stream)
    vm.call("proxy_on_context_create", context, context.context_id, vm.root.context_id)
    call = vm.call
    headers = stream.request_headers

    def hook() -> int | None:
        headers.pairs = list(HEADERS)
        return call("proxy_on_request_headers", context, context.context_id, 10, 1)

    assert benchmark(hook) == Action.CONTINUE
    assert headers.get(b"x-routeiq-seen") == b"1"
    plugin.close()


def test_python_guest_wasmtime_py_component_api(benchmark, py_bench_guest: Path) -> None:  # type: ignore[no-untyped-def]
    """The same component and host-call semantics through wasmtime-py's generic API."""
    settings = EngineSettings()
    engine = create_engine(settings)
    component = wc.Component(engine, py_bench_guest.read_bytes())
    headers = HeaderMap(list(HEADERS))
    wit = (ROOT / "abi" / "wit" / "routeiq-filter.wit").read_text()
    names = re.findall(r"^\s*([a-z0-9-]+): func", wit.split("interface host")[1].split("interface filter")[0], re.M)

    def get_header(_store, _which, name):  # type: ignore[no-untyped-def]
        value = headers.get(name.encode())
        # result<byte-string, status>: both cases are str, so wasmtime-py wants them tagged
        return wc.Variant("err", "not-found") if value is None else wc.Variant("ok", value.decode("latin-1"))

    def add_header(_store, _which, name, value):  # type: ignore[no-untyped-def]
        headers.add(name.encode(), value.encode("latin-1"))

    def other(_store, *_args):  # type: ignore[no-untyped-def]
        return None

    linker = wc.Linker(engine)
    linker.add_wasip2()
    with linker.root() as root:
        with root.add_instance(HOST_INTERFACE) as host:
            for name in names:
                host.add_func(name, {"get-header": get_header, "add-header": add_header}.get(name, other))
    store = wasmtime.Store(engine)
    store.set_wasi(wasmtime.WasiConfig())
    store.set_fuel(10**12)
    store.set_epoch_deadline(10**9)
    instance = linker.instantiate(store, component)
    iface = instance.get_export_index(store, FILTER_INTERFACE)
    func = lambda name: instance.get_func(store, instance.get_export_index(store, name, iface))  # noqa: E731
    func("configure")(store, "")
    func("create-context")(store, 1)
    on_headers = func("on-request-headers")

    def hook() -> str:
        headers.pairs = list(HEADERS)
        store.set_fuel(20_000_000)
        return on_headers(store, 1, True)

    assert benchmark(hook) == "continue"
    assert headers.get(b"x-routeiq-seen") == b"1"
