"""Every environment variable RouteIQ (the package, `./dev`, `.ci/`) reads, with its meaning.

docs/configuration.md's table is generated from this; tests/test_config_reference.py finds
every read in the sources and fails when one is missing here (or listed here but never read)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EnvVar:
    name: str
    read_by: str
    default: str
    meaning: str


ENVIRONMENT: tuple[EnvVar, ...] = (
    EnvVar("ROUTEIQ_RUSTC", "`routeiq build-guests`, `routeiq plugin build`, `./dev`", "`rustc` on PATH, then /usr/bin/rustc",
           "rustc to build Rust guests with; it must have the wasm32-unknown-unknown standard library"),
    EnvVar("ROUTEIQ_CC", "`routeiq build-guests`, `routeiq plugin build` (C guests)", "zig cc from the `ziglang` package, then `clang`, then the newest `clang-NN` on PATH",
           "C compiler command for C guests, split like a shell word list (e.g. `clang-18` or `zig cc`); tried first, with the clang then the zig wasm32 target flags, and skipped when it cannot build a freestanding wasm32 module"),
    EnvVar("ROUTEIQ_NODE", "`routeiq build-guests`, `routeiq plugin build` (AssemblyScript guests)", "`node`, then `nodejs` on PATH",
           "Node.js executable that runs the AssemblyScript compiler (Node.js 20 or newer)"),
    EnvVar("ROUTEIQ_NPM", "`routeiq build-guests`, `routeiq plugin build` (AssemblyScript guests)", "`npm` on PATH",
           "npm executable that installs the AssemblyScript compiler from the committed lock (`npm ci`)"),
    EnvVar("PATH", "`routeiq build-guests` (C guests)", "the process's PATH",
           "searched for versioned `clang-NN` drivers when neither ROUTEIQ_CC nor zig nor `clang` builds a wasm32 module"),
    EnvVar("ROUTEIQ_CONFIG", "`serve --workers N` worker processes", "set by `routeiq serve`",
           "absolute path of the config file; `serve` sets it for its workers, which build their app with `routeiq.app:create_app_from_environment`. Not meant to be set by hand"),
    EnvVar("ROUTEIQ_POLICY", "`serve --workers N` worker processes", "set by `routeiq serve --policy`",
           "the `--policy FILE` override, passed to the workers the same way as ROUTEIQ_CONFIG"),
    EnvVar("XDG_CACHE_HOME", "runtime (module cache), `routeiq plugin build`", "`~/.cache`",
           "base of the default compiled-module cache directory, `$XDG_CACHE_HOME/routeiq/modules` (`runtime.cache_dir` overrides), and of the plugin build cache `$XDG_CACHE_HOME/routeiq/guests`"),
    EnvVar("ROUTEIQ_CACHE_DIR", "`routeiq plugin build`, `routeiq plugin test`", "`$XDG_CACHE_HOME/routeiq`",
           "where plugin builds cache compiled guests (`guests/`, content-addressed), `plugin test` the modules compiled for the runtime (`modules/`), and zig its own cache (`zig/`); never the install location or a source checkout"),
    EnvVar("LITELLM_LOCAL_MODEL_COST_MAP", "litellm deployments", "`True` (set by RouteIQ when unset)",
           "RouteIQ sets it before importing litellm so that importing does not fetch a cost map from the network; an operator's own value is kept"),
    EnvVar("PYTHON", "`./dev`", "`python3`",
           "interpreter `./dev setup` creates `.venv` with (Python 3.11 or newer)"),
    EnvVar("ROUTEIQ_BENCH_PEERS_BIN", "`bench/load` (the LiteLLM proxy peer)", "set by `./dev bench` to `.venv-peers/bin`; else the running interpreter's bin directory",
           "where the benchmarks find the `litellm` proxy command: its own venv, whose pins (mcp 1.x) clash with the gateway's"),
)
