"""Build Rust guests without cargo or crates.io: rustc, the in-repo SDK, a content-hash cache.

Any rustc whose sysroot has the wasm32-unknown-unknown standard library works: a rustup
toolchain with the target added, or Debian's rustc with libstd-rust-dev-wasm32.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

TARGET = "wasm32-unknown-unknown"
SDK_CRATE = "routeiq_guest"
COMMON_FLAGS = ["--edition", "2021", "--target", TARGET, "-C", "opt-level=3", "-C", "panic=abort"]


class ToolchainMissing(Exception):
    """No usable compiler; the message says what to install."""


class BuildFailed(ToolchainMissing):
    """The compiler ran and rejected a guest."""


@dataclass(frozen=True)
class Rustc:
    path: str
    version: str


def _candidates() -> Iterable[str]:
    explicit = os.environ.get("ROUTEIQ_RUSTC")
    if explicit:
        yield explicit
    on_path = shutil.which("rustc")
    if on_path:
        yield on_path
    yield "/usr/bin/rustc"


def find_rustc() -> Rustc | None:
    """The first rustc that can build for wasm32-unknown-unknown."""
    seen = set()
    for candidate in _candidates():
        if candidate in seen or not Path(candidate).exists():
            continue
        seen.add(candidate)
        try:
            sysroot = subprocess.run([candidate, "--print", "sysroot"], capture_output=True, text=True, check=True).stdout.strip()
            version = subprocess.run([candidate, "--version"], capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            continue
        libdir = Path(sysroot) / "lib" / "rustlib" / TARGET / "lib"
        if any(libdir.glob("libcore-*.rlib")):
            return Rustc(candidate, version)
    return None


def _hash_tree(digest: "hashlib._Hash", root: Path) -> None:
    for path in sorted(root.rglob("*.rs")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())


SHARED_DIR = "shared"  # sources guests include with #[path]; not a crate itself


def guest_crates(root: Path) -> list[Path]:
    base = root / "guest-examples" / "rust"
    return sorted(p for p in base.iterdir() if (p / "src" / "lib.rs").exists()) if base.exists() else []


def _require_rustc() -> Rustc:
    rustc = find_rustc()
    if rustc is None:
        raise ToolchainMissing(
            "no rustc with the wasm32-unknown-unknown target found. Install one of: "
            "`rustup target add wasm32-unknown-unknown`, or on Debian/Ubuntu "
            "`apt-get install rustc libstd-rust-dev-wasm32` (set ROUTEIQ_RUSTC to pick a specific rustc)"
        )
    return rustc


def _build_sdk(root: Path, rustc: Rustc, cache: Path, progress: Callable[[str], None]) -> tuple[str, Path]:
    """The SDK rlib, built once per rustc and SDK source (returns its cache key and path)."""
    sdk_dir = root / "abi" / "sdk" / "rust"
    digest = hashlib.sha256((rustc.version + " ".join(COMMON_FLAGS)).encode())
    _hash_tree(digest, sdk_dir / "src")
    key = digest.hexdigest()[:20]
    out = cache / f"sdk-{key}"
    if not (out / f"lib{SDK_CRATE}.rlib").exists():
        progress(f"building Rust guest SDK with {rustc.version}")
        tmp = out.with_suffix(".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        _run([rustc.path, *COMMON_FLAGS, "--crate-name", SDK_CRATE, "--crate-type", "rlib", str(sdk_dir / "src" / "lib.rs"), "--out-dir", str(tmp)])
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    return key, out


def build_rust_crate(root: Path, crate: Path, out_dir: Path, progress: Callable[[str], None] = lambda _: None, extra_key: str = "") -> Path:
    """Build one filter crate (a directory with src/lib.rs) into `out_dir/<name>.wasm`.

    `root` is the RouteIQ source tree that holds the SDK; the output is cached under
    `root/.cache/guests` by rustc version, flags, SDK and crate sources."""
    rustc = _require_rustc()
    cache = root / ".cache" / "guests"
    sdk_key, sdk_out = _build_sdk(root, rustc, cache, progress)
    name = crate.resolve().name.replace("-", "_")
    digest = hashlib.sha256((sdk_key + extra_key).encode())
    _hash_tree(digest, crate / "src")
    cached = cache / f"{name}-{digest.hexdigest()[:20]}.wasm"
    if not cached.exists():
        progress(f"building {name}.wasm")
        tmp = cached.with_suffix(".tmp")
        _run(
            [
                rustc.path, *COMMON_FLAGS, "-C", "strip=debuginfo",
                "--crate-name", name, "--crate-type", "cdylib",
                "-L", str(sdk_out), "--extern", f"{SDK_CRATE}={sdk_out / f'lib{SDK_CRATE}.rlib'}",
                str(crate / "src" / "lib.rs"), "-o", str(tmp),
            ]
        )
        tmp.rename(cached)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{name}.wasm"
    if not target.exists() or target.read_bytes() != cached.read_bytes():
        shutil.copyfile(cached, target)
    return target


def build_rust_guests(root: Path, progress: Callable[[str], None] = lambda _: None) -> list[Path]:
    """Build the SDK and every crate under guest-examples/rust into guest-examples/rust/build."""
    shared = hashlib.sha256()
    if (root / "guest-examples" / "rust" / SHARED_DIR).exists():
        _hash_tree(shared, root / "guest-examples" / "rust" / SHARED_DIR)
    out_dir = root / "guest-examples" / "rust" / "build"
    return [build_rust_crate(root, crate, out_dir, progress, shared.hexdigest()) for crate in guest_crates(root)]


def _run(cmd: list[str]) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise BuildFailed(f"rustc failed ({' '.join(cmd[:1])} ... {cmd[-1]}):\n{result.stderr.strip()}")
