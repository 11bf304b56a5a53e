"""The `routeiq` command."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from routeiq import __version__

_LOG_LEVELS = {"trace": 5, "debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR, "critical": logging.CRITICAL}


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from routeiq.config import ConfigError, load_config
    from routeiq.gateway.app import create_app

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"routeiq: {exc}", file=sys.stderr)
        return 2
    server = config.model.server
    logging.basicConfig(level=_LOG_LEVELS[server.log_level], format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        app = create_app(config)
    except ConfigError as exc:
        print(f"routeiq: {exc}", file=sys.stderr)
        return 2
    host = args.host or server.host
    port = args.port if args.port is not None else server.port
    names = ", ".join(p.spec.name for p in app.state.gateway.plugins) or "none"
    print(f"routeiq {__version__}: serving on http://{host}:{port} (upstream: {app.state.gateway.upstream_name}; plugins: {names})", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning" if server.log_level != "debug" else "debug", lifespan="on")
    return 0


def _build_guests(args: argparse.Namespace) -> int:
    from routeiq.toolchain.rust import ToolchainMissing, build_rust_guests

    root = Path(args.root).resolve()
    try:
        built = build_rust_guests(root, progress=lambda msg: print(msg, flush=True))
    except ToolchainMissing as exc:
        print(f"routeiq: {exc}", file=sys.stderr)
        return 2
    for artifact in built:
        print(f"  {artifact.relative_to(root) if artifact.is_relative_to(root) else artifact}")
    return 0


def _check_config(args: argparse.Namespace) -> int:
    from routeiq.config import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"routeiq: {exc}", file=sys.stderr)
        return 2
    print(f"{args.config}: ok ({len(config.model.plugins)} plugins)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="routeiq", description="LLM gateway with sandboxed proxy-wasm plugins")
    parser.add_argument("--version", action="version", version=f"routeiq {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", required=True, help="YAML config file")
    serve.add_argument("--host", help="listen address (default: server.host from the config)")
    serve.add_argument("--port", type=int, help="listen port (default: server.port from the config)")
    serve.set_defaults(func=_serve)

    check = sub.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("config")
    check.set_defaults(func=_check_config)

    build = sub.add_parser("build-guests", help="build the Rust guest SDK and guest examples (cached by content hash)")
    build.add_argument("--root", default=".", help="repository root (default: .)")
    build.set_defaults(func=_build_guests)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
