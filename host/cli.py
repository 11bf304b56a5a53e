"""The `routeiq` command."""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from routeiq import __version__

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from routeiq.config import LoadedConfig
    from routeiq.progress import Progress
    from routeiq.toolkit.cases import CaseResult
    from routeiq.toolkit.project import PluginProject

_LOG_LEVELS = {"trace": 5, "debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR, "critical": logging.CRITICAL}


def _build_app(args: argparse.Namespace) -> "tuple[LoadedConfig, Starlette] | int":
    """Load the config and build the gateway app exactly as serving does: every check
    (module read and validation, pins, manifests vs policy, strategies, deployments) runs
    here. An int is the exit code after the refusal was printed."""
    from routeiq.config import ConfigError, load_config
    from routeiq.app import create_app
    from routeiq.log_format import configure_logging

    try:
        config = load_config(args.config, args.policy)
    except ConfigError as exc:
        print(f"routeiq: {exc}", file=sys.stderr)
        return 2
    server = config.model.server
    configure_logging(_LOG_LEVELS[server.log_level], server.log_format)
    try:
        return config, create_app(config)
    except ConfigError as exc:
        print(f"routeiq: {exc}", file=sys.stderr)
        return 2


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from routeiq.app import CONFIG_ENV, POLICY_ENV, tune_gc_for_serving
    from routeiq.gateway.http_server import uvicorn_options

    # Build once here even with several workers: bad config or a refused plugin
    # fails now, with a message, instead of in every worker.
    built = _build_app(args)
    if isinstance(built, int):
        return built
    config, app = built
    server = config.model.server
    host = args.host or server.host
    port = args.port if args.port is not None else server.port
    workers = args.workers or server.workers
    gateway = app.state.gateway
    names = ", ".join(p.spec.name for p in gateway.plugin_set.all()) or "none"
    print(
        f"routeiq {__version__}: serving on http://{host}:{port} with {workers} worker(s) "
        f"(upstream: {gateway.upstream_name}; kv: {config.model.kv.backend}; plugins: {names})",
        flush=True,
    )
    if workers > 1 and config.model.kv.backend == "memory":
        logging.getLogger("routeiq").warning("kv backend 'memory' with %d workers: each worker has its own shared data; use kv: {backend: redis}", workers)
    uv_log = "warning" if server.log_level != "debug" else "debug"
    if workers == 1:
        tune_gc_for_serving()
        uvicorn.run(app, host=host, port=port, log_level=uv_log, **uvicorn_options(server))
        return 0
    gateway.close()
    os.environ[CONFIG_ENV] = str(Path(args.config).resolve())
    if config.policy_override is not None:
        os.environ[POLICY_ENV] = str(config.policy_override)
    uvicorn.run(
        "routeiq.app:create_app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=uv_log,
        **uvicorn_options(server),
    )
    return 0


# What makes a language's guests slow to build, shown before they build (on a terminal).
_SLOW_HINTS = {"python": " (a component each: componentize-py compiles CPython for it, ~12 s of CPU per changed guest)"}


def _build_guests(args: argparse.Namespace) -> int:
    from routeiq.progress import Progress
    from routeiq.toolchain.assemblyscript import build_assemblyscript_guests
    from routeiq.toolchain.c import build_c_guests
    from routeiq.toolchain.rust import ToolchainMissing, build_rust_guests

    root = Path(args.root).resolve()
    builders = {"rust": build_rust_guests, "c": build_c_guests, "assemblyscript": build_assemblyscript_guests}
    try:
        from routeiq.toolchain.python import build_python_guests

        builders["python"] = build_python_guests
    except ImportError:  # the Python component toolchain is optional
        pass
    wanted = args.lang or list(builders)
    progress = Progress()
    counts: list[str] = []
    for n, lang in enumerate(wanted, 1):
        progress.step(f"{lang} guests{_SLOW_HINTS.get(lang, '')}", count=(n, len(wanted)))
        try:
            built = builders[lang](root, progress=progress)
        except ToolchainMissing as exc:
            print(f"routeiq: {lang} guests: {exc}", file=sys.stderr)
            return 2
        counts.append(f"{lang} {len(built)}")
        if progress.interactive:
            for artifact in built:
                progress.line(f"  {artifact.relative_to(root) if artifact.is_relative_to(root) else artifact}")
    ran = progress.steps - len(wanted)  # the toolchains report a step only when they build
    progress.summary(f"build-guests: {', '.join(counts)} guests; {ran} build step(s) ran" + ("" if ran else " (all up to date)"))
    return 0


def _check_config(args: argparse.Namespace) -> int:
    # The same build as `serve`, closed instead of served: whatever serve refuses, this
    # refuses with the same message and exit code.
    built = _build_app(args)
    if isinstance(built, int):
        return built
    config, app = built
    app.state.gateway.close()
    tools = len(config.model.mcp.tools)
    print(f"{args.config}: ok ({len(config.model.plugins)} plugins" + (f", {tools} MCP tools)" if tools else ")"))
    return 0


def _docs_config(args: argparse.Namespace) -> int:
    from routeiq.config_reference import REGENERATE, default_document, updated_document

    path = Path(args.path) if args.path else default_document()
    try:
        text = path.read_text()
    except OSError as exc:
        print(f"routeiq: {path}: cannot read: {exc.strerror or exc}", file=sys.stderr)
        return 2
    wanted = updated_document(text)
    if args.check:
        if wanted != text:
            print(f"routeiq: {path}: the generated reference is out of date; {REGENERATE}", file=sys.stderr)
            return 1
        print(f"{path}: up to date")
        return 0
    if wanted != text:
        path.write_text(wanted)
        print(f"{path}: reference regenerated")
    else:
        print(f"{path}: up to date")
    return 0


def _policy_check(args: argparse.Namespace) -> int:
    from routeiq.config import ConfigError, load_config
    from routeiq.toolkit.policy_check import explain

    try:
        config = load_config(args.config, args.policy)
        report, ok = explain(config)
    except ConfigError as exc:
        print(f"routeiq: {exc}", file=sys.stderr)
        return 2
    print(report)
    return 0 if ok else 1


def _policy_keygen(_: argparse.Namespace) -> int:
    from routeiq.policy.signing import generate_keypair

    private, public = generate_keypair()
    print(f"private key (keep secret, e.g. in a file for `policy sign --key`): {private}")
    print(f"public key (for the policy's trusted_keys):                        {public}")
    return 0


def _policy_sign(args: argparse.Namespace) -> int:
    import hashlib

    from routeiq.policy.signing import KeyFormatError, sign

    digest = hashlib.sha256(Path(args.module).read_bytes()).hexdigest()
    try:
        signature = sign(Path(args.key).read_text().strip(), digest)
    except KeyFormatError as exc:
        print(f"routeiq: {args.key}: {exc}", file=sys.stderr)
        return 2
    print(f"sha256: {digest}")
    print(f"signature: {signature}")
    return 0


def _demo_auth(args: argparse.Namespace) -> int:
    import uvicorn

    from routeiq.demo_services import create_demo_auth_service

    print(f"routeiq demo auth service on http://{args.host}:{args.port}/check (token: 'Bearer demo-token')", flush=True)
    uvicorn.run(create_demo_auth_service(), host=args.host, port=args.port, log_level="warning")
    return 0


def _plugin_new(args: argparse.Namespace) -> int:
    from routeiq.toolkit.project import ProjectError
    from routeiq.toolkit.scaffold import scaffold

    try:
        directory = scaffold(args.lang, args.name, Path(args.dir), args.kind)
    except ProjectError as exc:
        print(f"routeiq: {exc}", file=sys.stderr)
        return 2
    print(f"created {directory}: build it with `routeiq plugin build {directory}`, test it with `routeiq plugin test {directory}`")
    return 0


def _build_with_progress(project: "PluginProject", progress: "Progress") -> tuple[Path, bool]:
    """The project's module, built or taken from the cache, and whether it was rebuilt
    (the toolchains report a step only when they build something)."""
    from routeiq.toolkit.project import build_project

    before = progress.steps
    out = build_project(project, progress=progress)
    return out, progress.steps > before


def _module_state(out: Path, rebuilt: bool) -> str:
    return f"{'built' if rebuilt else 'up to date'}, {out.stat().st_size / 1e6:.1f} MB"


def _plugin_build(args: argparse.Namespace) -> int:
    from routeiq.progress import Progress
    from routeiq.toolchain.rust import ToolchainMissing
    from routeiq.toolkit.project import ProjectError, load_project

    progress = Progress()
    try:
        out, rebuilt = _build_with_progress(load_project(Path(args.dir)), progress)
    except (ProjectError, ToolchainMissing) as exc:
        print(f"routeiq: {exc}", file=sys.stderr)
        return 2
    progress.summary(f"{out} ({_module_state(out, rebuilt)})")
    return 0


def _plugin_inspect(args: argparse.Namespace) -> int:
    from routeiq.toolkit.inspect import format_inspection, inspect_module, to_json

    path = Path(args.module)
    if not path.exists():
        print(f"routeiq: {path}: no such file", file=sys.stderr)
        return 2
    info = inspect_module(path)
    print(to_json(info) if args.json else format_inspection(info))
    return 1 if "error" in info else 0


def _print_case(result: "CaseResult") -> None:
    # Results, not progress: printed as each case finishes, on a terminal or not (a CI
    # log needs the failures), numbered so a long run shows where it is.
    print(f"{'PASS' if result.ok else 'FAIL'} {result.name} ({result.number}/{result.total})", flush=True)
    for failure in result.failures:
        print(f"     {failure}", flush=True)


def _plugin_test(args: argparse.Namespace) -> int:
    from routeiq.progress import Progress
    from routeiq.runtime.errors import PluginError
    from routeiq.toolchain.paths import module_cache
    from routeiq.toolchain.rust import ToolchainMissing
    from routeiq.toolkit.cases import CaseFileError, run_cases
    from routeiq.toolkit.project import ProjectError, load_project
    from routeiq.toolkit.tool_cases import is_tool_case_file, run_tool_cases

    progress = Progress()
    try:
        project = load_project(Path(args.dir))
        module, rebuilt = _build_with_progress(project, progress)
        run = run_tool_cases if is_tool_case_file(project.tests) else run_cases
        results = run(module, project.tests, project.name, on_result=_print_case, progress=progress, cache_dir=module_cache())
    except (ProjectError, ToolchainMissing, CaseFileError, PluginError) as exc:
        print(f"routeiq: {exc}", file=sys.stderr)
        return 2
    failed = sum(not r.ok for r in results)
    progress.summary(f"{len(results) - failed} passed, {failed} failed ({module.name} {_module_state(module, rebuilt)})")
    return 1 if failed else 0


def _plugin_push(args: argparse.Namespace) -> int:
    from routeiq.distribution.oci import OciClient, OciError, OciRef, parse_ref

    path = Path(args.module)
    try:
        wasm = path.read_bytes()
        ref = parse_ref(args.ref if args.ref.startswith("oci://") else f"oci://{args.ref}")
        if ref.digest:
            raise OciError(f"{args.ref}: push names a tag, not a digest (the digest is what push prints)")
        client = OciClient()
        try:
            digest = client.push(ref, wasm)
        finally:
            client.close()
    except (OSError, OciError) as exc:
        print(f"routeiq: {exc}", file=sys.stderr)
        return 2
    pinned = OciRef(ref.registry, ref.repository, ref.tag or "latest", digest)
    print(f"pushed {path} ({len(wasm)} bytes, sha256 {hashlib.sha256(wasm).hexdigest()})")
    print(f"wasm: {pinned}")
    return 0


def _admin_new_key(args: argparse.Namespace) -> int:
    from routeiq.admin.auth import new_key

    key, digest = new_key()
    print(f"key (give it to its owner; it is not stored):  {key}")
    print("config entry (admin.keys):")
    print(f"  - {{name: {args.name}, role: {args.role}, sha256: \"{digest}\"}}")
    return 0


def _route_eval(argv: list[str]) -> int:
    from routeiq.strategies.evaluation import main as evaluation_main

    return evaluation_main(argv)


def _route_train(args: argparse.Namespace) -> int:
    from routeiq.strategies.artifacts import save_artifact
    from routeiq.strategies.evaluation import DataError, load_examples
    from routeiq.strategies.registry import StrategyRegistry

    registry = StrategyRegistry.with_builtins()
    if args.strategy not in registry.names():
        print(f"routeiq: unknown strategy {args.strategy!r}; known: {', '.join(sorted(registry.names()))}", file=sys.stderr)
        return 2
    try:
        examples = load_examples(args.data)
    except (DataError, OSError) as exc:
        print(f"routeiq: {args.data}: {exc}", file=sys.stderr)
        return 2
    options: dict[str, Any] = {}
    for item in args.option or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            print(f"routeiq: --option {item!r}: want KEY=VALUE (VALUE as JSON, e.g. C=0.5)", file=sys.stderr)
            return 2
        try:
            options[key] = json.loads(value)
        except ValueError:
            options[key] = value  # a bare word: a string
    try:
        strategy = registry.create(args.strategy, **options)
    except (TypeError, ValueError) as exc:
        print(f"routeiq: --option: {exc}", file=sys.stderr)
        return 2
    began = time.monotonic()
    if sys.stderr.isatty():
        print(f"training {args.strategy} on {len(examples)} examples ...", file=sys.stderr, flush=True)
    strategy.fit(examples)
    digest = save_artifact(strategy, args.out)
    print(f"trained {args.strategy} on {len(examples)} examples in {time.monotonic() - began:.0f}s -> {args.out} (sha256 {digest})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="routeiq", description="LLM gateway with sandboxed proxy-wasm plugins")
    parser.add_argument("--version", action="version", version=f"routeiq {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", required=True, help="YAML config file")
    serve.add_argument("--host", help="listen address (default: server.host from the config)")
    serve.add_argument("--port", type=int, help="listen port (default: server.port from the config)")
    serve.add_argument("--policy", help="operator policy file (default: the config's `policy` key; none = deny all)")
    serve.add_argument("--workers", type=int, help="worker processes (default: server.workers, 1)")
    serve.set_defaults(func=_serve)

    policy = sub.add_parser("policy", help="operator policy tools")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True)
    check_policy = policy_sub.add_parser("check", help="explain what each plugin of a config may do")
    check_policy.add_argument("config")
    check_policy.add_argument("--policy", help="policy file (default: the config's `policy` key)")
    check_policy.set_defaults(func=_policy_check)
    keygen = policy_sub.add_parser("keygen", help="make an ed25519 key pair for signing modules")
    keygen.set_defaults(func=_policy_keygen)
    sign = policy_sub.add_parser("sign", help="sign a module's sha256 with a private key file")
    sign.add_argument("--key", required=True, help="file holding the base64 private key")
    sign.add_argument("module")
    sign.set_defaults(func=_policy_sign)

    check = sub.add_parser("check-config", help="run every check `serve` runs (config, modules, pins, policy, routing), then exit")
    check.add_argument("config")
    check.add_argument("--policy", help="operator policy file, as for serve")
    check.set_defaults(func=_check_config)

    route_eval = sub.add_parser("route-eval", help="train every strategy and compare them offline", add_help=False)
    route_eval.add_argument("rest", nargs=argparse.REMAINDER)
    route_eval.set_defaults(func=lambda a: _route_eval(a.rest))
    route_train = sub.add_parser("route-train", help="train one strategy and save it as a sha256-checked artifact")
    route_train.add_argument("--strategy", required=True)
    route_train.add_argument("--data", required=True, help="routing data (jsonl, see docs)")
    route_train.add_argument("--out", required=True, help="artifact file to write (router.artifact)")
    route_train.add_argument("--option", action="append", metavar="KEY=VALUE", help="a strategy option (VALUE as JSON), repeatable")
    route_train.set_defaults(func=_route_train)

    plugin = sub.add_parser("plugin", help="plugin author tools: new, build, inspect, test")
    plugin_sub = plugin.add_subparsers(dest="plugin_command", required=True)
    new = plugin_sub.add_parser("new", help="scaffold a plugin project (source, manifest, README, tests)")
    new.add_argument("--lang", required=True, choices=["rust", "python", "assemblyscript", "c"])
    new.add_argument("--kind", default="filter", choices=["filter", "tool"], help="an HTTP filter (default) or an MCP tool (rust, python, c)")
    new.add_argument("--dir", default=".", help="parent directory (default: .)")
    new.add_argument("name")
    new.set_defaults(func=_plugin_new)
    pbuild = plugin_sub.add_parser("build", help="build a plugin project into DIR/build/NAME.wasm")
    pbuild.add_argument("dir")
    pbuild.set_defaults(func=_plugin_build)
    pinspect = plugin_sub.add_parser("inspect", help="ABI version, exports, imports and the capabilities they need, sha256, size")
    pinspect.add_argument("module")
    pinspect.add_argument("--json", action="store_true")
    pinspect.set_defaults(func=_plugin_inspect)
    ptest = plugin_sub.add_parser("test", help="build and run DIR/tests.yaml against the plugin, without a gateway")
    ptest.add_argument("dir")
    ptest.set_defaults(func=_plugin_test)
    ppush = plugin_sub.add_parser("push", help="publish a module to an OCI registry (Wasm OCI artifact, as Istio pulls them); prints the pinned oci:// reference")
    ppush.add_argument("module")
    ppush.add_argument("ref", help="oci://REGISTRY/REPOSITORY:TAG (loopback registries over http, others https)")
    ppush.set_defaults(func=_plugin_push)

    admin = sub.add_parser("admin", help="admin API tools")
    admin_sub = admin.add_subparsers(dest="admin_command", required=True)
    new_key = admin_sub.add_parser("new-key", help="make an admin API key and the hash to put in admin.keys")
    new_key.add_argument("--name", required=True)
    new_key.add_argument("--role", required=True, choices=["viewer", "operator", "admin"])
    new_key.set_defaults(func=_admin_new_key)

    from routeiq.keys_cli import add_commands as add_key_commands

    add_key_commands(sub)

    demo_auth = sub.add_parser("demo-auth", help="run the demo's auth and rates service (for the ext_auth example and the currency_convert tool)")
    demo_auth.add_argument("--host", default="127.0.0.1")
    demo_auth.add_argument("--port", type=int, default=9101)
    demo_auth.set_defaults(func=_demo_auth)

    docs = sub.add_parser("docs-config", help="regenerate docs/configuration.md's reference from the config, policy and manifest models")
    docs.add_argument("--path", help="the document (default: docs/configuration.md of this checkout)")
    docs.add_argument("--check", action="store_true", help="only check: exit 1 when the document is out of date")
    docs.set_defaults(func=_docs_config)

    build = sub.add_parser("build-guests", help="build the guest SDKs and every guest example (cached by content hash)")
    build.add_argument("--root", default=".", help="repository root (default: .)")
    build.add_argument("--lang", action="append", choices=["rust", "c", "assemblyscript", "python"], help="only these languages (repeatable; default: all)")
    build.set_defaults(func=_build_guests)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["route-eval"]:  # its own argument parser owns everything after the word
        return _route_eval(argv[1:])
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
