"""Build C guests: a clang that targets wasm32, the header-only SDK, a content-hash cache.

The compiler is, in order: `ROUTEIQ_CC` (the command line of any clang-compatible driver
that targets wasm32 and links with wasm-ld, e.g. `clang-18` or `zig cc`), zig's bundled
clang from the `ziglang` PyPI package in this Python (`python -m ziglang cc`), or a clang
on PATH (`clang`, then `clang-NN`, newest first) that links wasm32 with wasm-ld (Debian:
`clang` and `lld`). Each candidate must compile and link a probe module. With none of
them, `ziglang==ZIGLANG_PIN` is pip-installed into this Python.

Every directory under guest-examples/c/ holding `*.c` files is one guest; all its `.c`
files are compiled together with `-I abi/sdk/c`, into guest-examples/c/build/NAME.wasm.
The manifest is the module's own `routeiq.manifest` custom section (`PW_MANIFEST`).
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .build_info import stamp_build
from .rust import BuildFailed, ToolchainMissing

ZIGLANG_PIN = "0.17.1"
"""The ziglang wheel installed when no C compiler for wasm32 is found (zig 0.17.1, clang 22)."""

# Freestanding wasm32: no libc, no entry point (a reactor the host drives through exports),
# a 64 KiB shadow stack, no debug info. Exports come from the SDK's export_name attributes.
COMMON_FLAGS = [
    "-nostdlib",
    "-O2",
    "-Wall",
    "-Wextra",
    "-Wl,--no-entry",
    "-Wl,--strip-debug",
    "-Wl,-z,stack-size=65536",
]
ZIG_TARGET = ["--target=wasm32-freestanding"]
CLANG_TARGET = ["--target=wasm32-unknown-unknown"]

PROBE_SOURCE = '__attribute__((export_name("probe"))) int probe(int x) { return x + 1; }\n'


@dataclass(frozen=True)
class CCompiler:
    command: tuple[str, ...]  # the driver, e.g. (python, -m, ziglang, cc) or (clang,)
    target: tuple[str, ...]
    version: str  # first line of `--version`, part of the cache key
    kind: str  # "zig", "clang" or "env"

    def env(self, cache: Path) -> dict[str, str]:
        """`cache` is the guest cache; zig's own caches go beside it (never into the install)."""
        env = dict(os.environ)
        if self.kind == "zig":
            env.setdefault("ZIG_GLOBAL_CACHE_DIR", str(cache.parent / "zig"))
            env.setdefault("ZIG_LOCAL_CACHE_DIR", str(cache.parent / "zig"))
        return env


def _version(command: list[str], env: dict[str, str] | None = None) -> str | None:
    try:
        out = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=120, env=env)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    lines = (out.stdout or out.stderr).strip().splitlines()
    return lines[0] if lines else None


def _works(compiler: CCompiler, cache: Path) -> bool:
    """Can it compile and link a tiny freestanding wasm32 module?"""
    with tempfile.TemporaryDirectory(prefix="routeiq-cc-") as tmp:
        src = Path(tmp) / "probe.c"
        src.write_text(PROBE_SOURCE)
        out = Path(tmp) / "probe.wasm"
        try:
            result = subprocess.run(
                [*compiler.command, *compiler.target, *COMMON_FLAGS, str(src), "-o", str(out)],
                capture_output=True,
                text=True,
                timeout=300,
                env=compiler.env(cache),
            )
        except (OSError, subprocess.SubprocessError):
            return False
        return result.returncode == 0 and out.exists() and out.read_bytes()[:4] == b"\0asm"


def _zig(cache: Path) -> CCompiler | None:
    command = [sys.executable, "-m", "ziglang", "cc"]
    probe = CCompiler(tuple(command), tuple(ZIG_TARGET), "", "zig")
    clang_version = _version(command, probe.env(cache))
    if clang_version is None:
        return None
    try:
        zig_version = subprocess.run(
            [sys.executable, "-m", "ziglang", "version"], capture_output=True, text=True, timeout=120, env=probe.env(cache)
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return CCompiler(tuple(command), tuple(ZIG_TARGET), f"zig {zig_version} ({clang_version})", "zig")


def find_c_compiler(cache: Path) -> CCompiler | None:
    """The first C compiler that builds a freestanding wasm32 module, or None (`cache`: the
    guest cache, beside which zig keeps its own)."""
    explicit = shlex.split(os.environ.get("ROUTEIQ_CC", ""))  # e.g. "clang-18" or "zig cc"
    if explicit:
        version = _version(explicit)
        if version:
            for target in (CLANG_TARGET, ZIG_TARGET):
                candidate = CCompiler(tuple(explicit), tuple(target), version, "env")
                if _works(candidate, cache):
                    return candidate
    zig = _zig(cache)
    if zig is not None and _works(zig, cache):
        return zig
    for clang in _clangs():
        version = _version([clang])
        if version:
            candidate = CCompiler((clang,), tuple(CLANG_TARGET), version, "clang")
            if _works(candidate, cache):
                return candidate
    return None


def _clangs() -> list[str]:
    """`clang`, then versioned `clang-NN` on PATH, newest first (Debian installs clang-14
    with its wasm-ld in /usr/lib/llvm-14/bin, which that driver finds by itself)."""
    found = [c for c in [shutil.which("clang")] if c]
    versioned: dict[int, str] = {}
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        try:
            names = os.listdir(directory or ".")
        except OSError:
            continue
        for name in names:
            match = re.fullmatch(r"clang-(\d+)", name)
            path = os.path.join(directory, name)
            if match and int(match.group(1)) not in versioned and os.access(path, os.X_OK):
                versioned[int(match.group(1))] = path
    return found + [versioned[v] for v in sorted(versioned, reverse=True)]


def install_ziglang(progress: Callable[[str], None]) -> None:
    progress(f"installing ziglang=={ZIGLANG_PIN} (zig's clang for wasm32) into {sys.executable}")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", f"ziglang=={ZIGLANG_PIN}"],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise ToolchainMissing(_missing_message(f"`pip install ziglang=={ZIGLANG_PIN}` failed:\n{result.stderr.strip()}"))


def _missing_message(detail: str = "") -> str:
    text = (
        "no C compiler for wasm32 found. Install one of: "
        f"`{sys.executable} -m pip install ziglang=={ZIGLANG_PIN}` (zig's bundled clang, from PyPI), "
        "or on Debian/Ubuntu `apt-get install clang lld` (clang + wasm-ld); "
        "set ROUTEIQ_CC to pick a specific clang-compatible driver"
    )
    return f"{text}. {detail}" if detail else text


def ensure_c_compiler(cache: Path, progress: Callable[[str], None] = lambda _: None, install: bool = True) -> CCompiler:
    compiler = find_c_compiler(cache)
    if compiler is None and install:
        install_ziglang(progress)
        compiler = find_c_compiler(cache)
    if compiler is None:
        raise ToolchainMissing(_missing_message())
    return compiler


def guest_dirs(root: Path) -> list[Path]:
    base = root / "guest-examples" / "c"
    if not base.exists():
        return []
    return sorted(p for p in base.iterdir() if p.is_dir() and p.name != "build" and any(p.glob("*.c")))


def _hash_files(digest: "hashlib._Hash", base: Path, patterns: tuple[str, ...]) -> None:
    files = sorted({p for pattern in patterns for p in base.rglob(pattern) if p.is_file()})
    for path in files:
        digest.update(str(path.relative_to(base)).encode() + b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")


def build_c_guests(root: Path, progress: Callable[[str], None] = lambda _: None) -> list[Path]:
    """Build every guest under guest-examples/c into guest-examples/c/build/NAME.wasm.

    Outputs are cached under .cache/guests keyed by compiler version, flags, the SDK
    header and the guest's sources. Raises ToolchainMissing (what to install) when no
    compiler is found and ziglang cannot be installed, BuildFailed when one is rejected.
    """
    root = Path(root).resolve()
    guests = guest_dirs(root)
    if not guests:
        return []
    cache = root / ".cache" / "guests"
    compiler = ensure_c_compiler(cache, progress)
    out_dir = root / "guest-examples" / "c" / "build"
    return [build_c_plugin(guest, out_dir, progress, compiler, abi=root / "abi", cache=cache) for guest in guests]


def _remap(directory: Path, as_name: str) -> list[str]:
    """`__FILE__`, assert messages and any debug info name the source by a fixed path, not
    by where it was built: the same source gives the same bytes in any directory."""
    return [f"-ffile-prefix-map={directory.resolve()}={as_name}"]


def build_c_plugin(
    guest: Path,
    out_dir: Path,
    progress: Callable[[str], None] = lambda _: None,
    compiler: CCompiler | None = None,
    *,
    abi: Path,
    cache: Path,
) -> Path:
    """Compile the `*.c` files of one guest directory into `out_dir/<dir name>.wasm`
    (`abi` holds sdk/c; outputs are cached under `cache`)."""
    compiler = compiler or ensure_c_compiler(cache, progress)
    sdk_dir = abi / "sdk" / "c"
    base = hashlib.sha256()
    _hash_files(base, sdk_dir, ("*.h",))
    guest = guest.resolve()
    name = guest.name
    # Relative source names: the command line (and so any path the compiler records) is
    # the same in every directory; the prefix maps cover what clang makes absolute.
    sources = sorted(p.name for p in guest.glob("*.c"))
    if not sources:
        raise BuildFailed(f"{guest} has no .c files")
    remap = [*_remap(guest, name), *_remap(sdk_dir, "routeiq_sdk")]
    src_digest = hashlib.sha256(base.hexdigest().encode())
    _hash_files(src_digest, guest, ("*.c", "*.h"))
    key = hashlib.sha256("\0".join([compiler.version, *compiler.target, *COMMON_FLAGS, "remap-v1 stamp-v1", src_digest.hexdigest()]).encode()).hexdigest()[:20]
    cached = cache / f"c-{name}-{key}.wasm"
    if not cached.exists():
        progress(f"building {name}.wasm ({compiler.version})")
        cache.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".tmp{os.getpid()}.wasm")
        cmd = [*compiler.command, *compiler.target, *COMMON_FLAGS, *remap, "-I", str(sdk_dir), *sources, "-o", str(tmp)]
        result = subprocess.run(cmd, capture_output=True, text=True, env=compiler.env(cache), cwd=guest)
        if result.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise BuildFailed(f"C build of {name} failed ({compiler.version}):\n{result.stderr.strip()}")
        build = {"lang": "c", "toolchain": compiler.version, "sdk_sha256": base.hexdigest()}
        tmp.write_bytes(stamp_build(tmp.read_bytes(), build))
        tmp.replace(cached)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{name}.wasm"
    if not target.exists() or target.read_bytes() != cached.read_bytes():
        shutil.copyfile(cached, target)
    return target
