"""Gating from the table (abi/capabilities.py): every import a plugin can link, in both
ABIs, is either gated by a capability or declared part of every filter's contract, and a
gated one without its grant is linked to a refusal that audits and answers UNIMPLEMENTED
without running any of the call (it never touches guest memory)."""

from __future__ import annotations

import pytest

from routeiq.abi.capabilities import GATED_CALLS, UNGATED_CALLS, Capability
from routeiq.abi.proxy_wasm import Status
from routeiq.hostcalls import component_abi, proxy_abi
from routeiq.hostcalls.state import HostEnv, PluginIdentity
from routeiq.hostcalls.unimplemented import UNIMPLEMENTED_CALLS
from routeiq.hostcalls.wasi import WASI_MODULES
from routeiq.policy.grants import Grant

ALL = frozenset(Capability)


def _env(capabilities: frozenset[Capability]) -> HostEnv:
    return HostEnv(PluginIdentity(name="gated"), grant=Grant(plugin="gated", capabilities=capabilities))


def test_every_linkable_import_has_a_decided_gate() -> None:
    for qualified in proxy_abi.import_names():
        module, name = qualified.split(".", 1)
        if module in WASI_MODULES:
            continue  # WASI preview1: stdout/stderr to the plugin log, clocks, random; no I/O
        assert module == "env", qualified
        assert (name in GATED_CALLS) + (name in UNGATED_CALLS) + (name in UNIMPLEMENTED_CALLS) == 1, name
    for wit, call in component_abi.CALLS.items():
        assert call.meaning in GATED_CALLS or call.meaning in UNGATED_CALLS or call.meaning in {"plugin_configuration", "vm_configuration"}, wit
    # Every gate is reachable from both ABIs: a component has each capability a core module has.
    wit_meanings = {call.meaning for call in component_abi.CALLS.values()}
    missing = {name for name in GATED_CALLS if name not in wit_meanings and name != "proxy_dispatch_http_call"}
    assert not missing, f"gated calls without a WIT function: {sorted(missing)}"


@pytest.mark.parametrize("name", sorted(GATED_CALLS))
def test_a_core_import_without_its_grant_is_a_refusal(name: str) -> None:
    capability = GATED_CALLS[name]
    env = _env(ALL - {capability})  # everything but the one capability
    fn = proxy_abi.build_host_functions(env)[("env", name)]
    # env.vm is None: the refusal must not read or write guest memory.
    assert fn.impl(*([0] * len(fn.params))) == Status.UNIMPLEMENTED
    assert env.services.audit.counts[("gated", name, "capability")] == 1

    granted = _env(ALL)
    linked = proxy_abi.build_host_functions(granted)[("env", name)]
    try:
        linked.impl(*([0] * len(linked.params)))
    except AttributeError:
        pass  # the real call moves bytes, and there is no VM here
    assert not granted.services.audit.counts


@pytest.mark.parametrize("wit", sorted(w for w, c in component_abi.CALLS.items() if c.meaning in GATED_CALLS))
def test_a_component_import_without_its_grant_is_a_refusal(wit: str) -> None:
    call = component_abi.CALLS[wit]
    capability = GATED_CALLS[call.meaning]
    env = _env(ALL - {capability})
    imports = {imp.name: imp for imp in component_abi.build_component_imports(env)}
    args = [0 if p in ("u32", "u64", "s64") or isinstance(p, tuple) else b"" if p in ("name", "bytes") else "" if p == "str" else [] for p in imports[wit].params]
    answer = imports[wit].impl(*args)
    status = answer[0] if isinstance(answer, tuple) else answer
    assert status == Status.UNIMPLEMENTED
    assert env.services.audit.counts[("gated", wit, "capability")] == 1  # under the WIT name


def test_the_tables_name_each_import_once_and_link_the_same_meaning() -> None:
    # The core import table and the WIT world call the same meaning methods.
    core = {spec.meaning or name for name, spec in proxy_abi.CALLS.items()}
    wit = {call.meaning for call in component_abi.CALLS.values()} - {"plugin_configuration", "vm_configuration"}
    assert wit <= core, wit - core
