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

from .build_info import stamp_build

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


def _remap(directory: Path, as_name: str) -> list[str]:
    """Absolute source paths end up in panic locations and debug strings: map them to a
    fixed name so the bytes do not depend on where the source sits."""
    return ["--remap-path-prefix", f"{directory.resolve()}={as_name}"]


def _build_sdk(abi: Path, rustc: Rustc, cache: Path, progress: Callable[[str], None]) -> tuple[str, Path]:
    """The SDK rlib, built once per rustc and SDK source (returns its cache key and path)."""
    sdk_dir = abi / "sdk" / "rust"
    sources = hashlib.sha256()
    _hash_tree(sources, sdk_dir / "src")
    key = hashlib.sha256((rustc.version + " ".join(COMMON_FLAGS) + " remap-v1 " + sources.hexdigest()).encode()).hexdigest()[:20]
    out = cache / f"sdk-{key}"
    if not (out / f"lib{SDK_CRATE}.rlib").exists():
        progress(f"building Rust guest SDK with {rustc.version}")
        tmp = out.with_suffix(f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        _run([rustc.path, *COMMON_FLAGS, *_remap(sdk_dir, SDK_CRATE), "--crate-name", SDK_CRATE, "--crate-type", "rlib", str(sdk_dir / "src" / "lib.rs"), "--out-dir", str(tmp)])
        shutil.rmtree(out, ignore_errors=True)
        try:
            tmp.rename(out)
        except OSError:  # a concurrent build got there first: same bytes
            shutil.rmtree(tmp, ignore_errors=True)
    return key, out


def sdk_digest(abi: Path) -> str:
    """sha256 of the Rust SDK sources (recorded in each guest's manifest)."""
    sources = hashlib.sha256()
    _hash_tree(sources, abi / "sdk" / "rust" / "src")
    return sources.hexdigest()


def build_rust_crate(
    crate: Path,
    out_dir: Path,
    progress: Callable[[str], None] = lambda _: None,
    extra_key: str = "",
    *,
    abi: Path,
    cache: Path,
    remap_base: Path | None = None,
) -> Path:
    """Build one filter crate (a directory with src/lib.rs) into `out_dir/<name>.wasm`.

    `abi` holds the SDK (sdk/rust); the output is cached under `cache` by rustc version,
    flags, SDK and crate sources. Source paths are remapped (the crate's directory, or
    `remap_base` when sources outside the crate are included, to its name), so the same
    source gives the same bytes wherever it is built."""
    rustc = _require_rustc()
    sdk_key, sdk_out = _build_sdk(abi, rustc, cache, progress)
    crate = crate.resolve()
    name = crate.name.replace("-", "_")
    base = (remap_base or crate).resolve()
    digest = hashlib.sha256((sdk_key + extra_key + " remap-v1 stamp-v1 " + str(crate.relative_to(base))).encode())
    _hash_tree(digest, crate / "src")
    cached = cache / f"{name}-{digest.hexdigest()[:20]}.wasm"
    if not cached.exists():
        progress(f"building {name}.wasm")
        tmp = cached.with_suffix(f".tmp{os.getpid()}")
        _run(
            [
                rustc.path, *COMMON_FLAGS, "-C", "strip=debuginfo",
                *_remap(base, base.name), *_remap(sdk_out, SDK_CRATE),
                "--crate-name", name, "--crate-type", "cdylib",
                "-L", str(sdk_out), "--extern", f"{SDK_CRATE}={sdk_out / f'lib{SDK_CRATE}.rlib'}",
                str(crate / "src" / "lib.rs"), "-o", str(tmp),
            ]
        )
        build = {"lang": "rust", "toolchain": rustc.version, "sdk_sha256": sdk_digest(abi)}
        tmp.write_bytes(stamp_build(tmp.read_bytes(), build))
        tmp.replace(cached)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{name}.wasm"
    if not target.exists() or target.read_bytes() != cached.read_bytes():
        shutil.copyfile(cached, target)
    return target


def build_rust_guests(root: Path, progress: Callable[[str], None] = lambda _: None) -> list[Path]:
    """Build the SDK and every crate under guest-examples/rust into guest-examples/rust/build."""
    root = Path(root).resolve()  # the path remapping that makes builds reproducible needs absolute paths
    shared = hashlib.sha256()
    if (root / "guest-examples" / "rust" / SHARED_DIR).exists():
        _hash_tree(shared, root / "guest-examples" / "rust" / SHARED_DIR)
    out_dir = root / "guest-examples" / "rust" / "build"
    base, cache = root / "guest-examples" / "rust", root / ".cache" / "guests"
    return [build_rust_crate(crate, out_dir, progress, shared.hexdigest(), abi=root / "abi", cache=cache, remap_base=base) for crate in guest_crates(root)]


def _run(cmd: list[str]) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise BuildFailed(f"rustc failed ({' '.join(cmd[:1])} ... {cmd[-1]}):\n{result.stderr.strip()}")
