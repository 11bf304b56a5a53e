"""Fuzzing every host call of the core-module ABI (issue #11, item 15a).

Each proxy-wasm, RouteIQ and WASI import the host links is called with random pointers,
lengths, map and buffer types and values, against a real VM's linear memory (written
with random bytes first) in a real HTTP stream context, with every capability granted
so the calls get past the policy. The only outcomes the ABI allows: a status, or a
guest-memory error the runtime answers INVALID_MEMORY_ACCESS / FAULT, or proc_exit's
trap. Any other exception is a host bug: the runtime would log it and answer
INTERNAL_FAILURE, hiding it, so here it fails the test.
"""

from __future__ import annotations

import random
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routeiq.dispatch.chain import request_header_map
from routeiq.hostcalls.header_rules import REQUEST, RESPONSE, HeaderLimits, HeaderRules
from routeiq.hostcalls.llm_exchange import LlmExchange
from routeiq.hostcalls.state import HeaderMap, HttpStream
from routeiq.hostcalls.proxy_abi import CALLS as PROXY_CALLS, WASI_SIGNATURES, build_host_functions
from routeiq.runtime.vm import GuestMemoryError, TrapRequest
from support import plugin

CALLS = sorted(PROXY_CALLS) + sorted(f"wasi_snapshot_preview1.{n}" for n in WASI_SIGNATURES if n != "proc_exit")


def interesting_i32(memory_size: int) -> st.SearchStrategy[int]:
    """Small values (types, ids, flags), pointers near the memory's edges, and extremes."""
    return st.one_of(
        st.integers(0, 12),
        st.integers(0, memory_size + 64),
        st.integers(max(0, memory_size - 64), memory_size + 64),
        st.sampled_from([0, 1, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, memory_size, memory_size - 1, memory_size - 4]),
        st.integers(0, 0xFFFF_FFFF),
    )


def test_every_host_call_answers_a_status_for_any_arguments(make_app, guests: dict[str, Path]) -> None:
    app = make_app([plugin("probe", guests["hostcall_probe"])], model_list=[{"model_name": "chat", "litellm_params": {"model": "openai/mock", "api_base": "embedded"}}])
    target = app.state.gateway.plugin("probe").current_vm()
    env, vm = target.env, target.vm
    memory_size = vm._mem_size  # noqa: SLF001 - the fuzz aims at the memory's edges
    table = build_host_functions(env)
    rules = HeaderRules(REQUEST, HeaderLimits())
    bugs: list[str] = []

    @settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(
        call=st.sampled_from(CALLS),
        data=st.data(),
        seed=st.integers(0, 2**32 - 1),
        with_llm=st.booleans(),
    )
    def one(call: str, data: st.DataObject, seed: int, with_llm: bool) -> None:
        module, _, name = call.rpartition(".")
        fn = table[(module or "env", name)]
        # Fresh stream per example: random header maps, bodies in flight or not.
        stream = HttpStream(request_headers=request_header_map("POST", "/v1/chat/completions", "gw", "http", [(b"x-a", b"1")], rules))
        stream.response_headers = HeaderMap([(b":status", b"200")], rules=HeaderRules(RESPONSE, HeaderLimits()))
        stream.request_body = bytearray(b'{"messages": []}') if seed % 2 else None
        if with_llm:
            stream.llm = LlmExchange.parse(b'{"model": "chat", "messages": [{"role": "user", "content": "hi"}]}', frozenset({"chat"}))
        context = target.new_context(stream)
        env.active = context
        # Random bytes in the first pages, so lengths and maps read from memory vary.
        rng = random.Random(seed)
        vm.write(8, bytes(rng.getrandbits(8) for _ in range(256)))
        args = [data.draw(interesting_i32(memory_size)) if p == "i32" else data.draw(st.integers(0, 2**64 - 1)) for p in fn.params]
        try:
            result = fn.impl(*args)
        except (GuestMemoryError, TrapRequest):
            return
        except Exception as exc:  # a host bug: the runtime would only log it
            bugs.append(f"{call}{tuple(args)}: {type(exc).__name__}: {exc}")
            return
        finally:
            env.active = None
            target.drop_context(context)
        if fn.results:
            assert isinstance(result, int) and 0 <= result <= 0xFFFF_FFFF, (call, args, result)

    one()
    assert not bugs, "\n".join(bugs[:20])
    # The gateway's own stream handling still works after all of it.
    assert target.vm.closed is False


def _component_value(kind: object, memory_size: int) -> st.SearchStrategy[object]:
    """A value as the canonical ABI lifts it for `kind` (enums arrive in range)."""
    if isinstance(kind, tuple) and kind[0] == "enum":
        return st.integers(0, len(kind[1]) - 1)
    small_bytes = st.one_of(st.binary(max_size=64), st.sampled_from([b":path", b":status", b":authority", b"@evil/x", b"//x", b"a\r\nb", b"\xff", b"x-fuzz", b"/v1/x"]))
    return {
        "str": st.text(max_size=64),
        # Valid names and values too, so calls get past the header rules as well.
        "bytes": st.one_of(st.sampled_from([b"v", b"1"]), small_bytes, st.binary(max_size=4096)),
        "name": st.one_of(st.sampled_from([b"x-fuzz", b"x-a"]), small_bytes),
        "names": st.one_of(st.lists(small_bytes, max_size=4), st.sampled_from([[b"request", b"path"], [b"request", b"headers", b"x-a"], [b"source", b"address"]])),
        "headers": st.lists(st.tuples(small_bytes, small_bytes), max_size=8),
        "u32": st.one_of(st.integers(0, 16), st.integers(0, 2**32 - 1)),
        "u64": st.integers(0, 2**64 - 1),
        "s64": st.integers(-(2**63), 2**63 - 1),
    }[kind]  # type: ignore[index]


def test_every_component_host_call_answers_a_status_for_any_arguments(make_app, py_guests: dict[str, Path]) -> None:
    from routeiq.hostcalls.component_abi import build_component_imports, signatures
    app = make_app([plugin("pyprobe", py_guests["py_probe"])], model_list=[{"model_name": "chat", "litellm_params": {"model": "openai/mock", "api_base": "embedded"}}])
    target = app.state.gateway.plugin("pyprobe").current_vm()
    env = target.env
    calls = {imp.name: imp.impl for imp in build_component_imports(env)}
    host_signatures = signatures()
    rules = HeaderRules(REQUEST, HeaderLimits())
    bugs: list[str] = []

    @settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(call=st.sampled_from(sorted(n for n in host_signatures if n != "abort")), data=st.data(), in_stream=st.booleans(), with_llm=st.booleans())
    def one(call: str, data: st.DataObject, in_stream: bool, with_llm: bool) -> None:
        params, result_kind = host_signatures[call]
        args = [data.draw(_component_value(p, 0)) for p in params]
        stream = HttpStream(request_headers=request_header_map("POST", "/v1/chat/completions", "gw", "http", [(b"x-a", b"1")], rules))
        stream.response_headers = HeaderMap([(b":status", b"200")], rules=HeaderRules(RESPONSE, HeaderLimits()))
        if with_llm:
            stream.llm = LlmExchange.parse(b'{"model": "chat", "messages": [{"role": "user", "content": "hi"}]}', frozenset({"chat"}))
        context = target.new_context(stream if in_stream else None)
        env.active = context
        try:
            result = calls[call](*args)
        except TrapRequest:
            return
        except Exception as exc:  # a host bug
            bugs.append(f"{call}{tuple(args)!r:.300}: {type(exc).__name__}: {exc}")
            return
        finally:
            env.active = None
            target.drop_context(context)
        if isinstance(result_kind, tuple) and result_kind[0] == "result":
            status = result[0] if isinstance(result, tuple) else result
            assert isinstance(status, int), (call, args, result)
            if status == 0:
                succeeded.add(call)

    succeeded: set[str] = set()
    one()
    assert not bugs, "\n".join(bugs[:20])
    # The fuzz got past the policy and the argument checks, not only refusals.
    assert {"add-header", "get-property", "define-metric", "get-headers"} <= succeeded, succeeded
