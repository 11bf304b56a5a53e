"""Build Python guests as WebAssembly components: componentize-py, the in-repo SDK
(abi/sdk/python/routeiq_guest), the WIT world (abi/wit), a content-hash cache.

Each `guest-examples/python/<name>/app.py` (with the modules beside it) becomes
`guest-examples/python/build/<name>.wasm`. Its `manifest.json` is embedded as a
`routeiq.manifest` custom section (what admission reads, covered by the sha256 pin) and
also written beside the component as `<name>.manifest.json`. componentize-py works
offline: it bundles its own CPython build and needs no network.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Callable

from routeiq.abi.capabilities import MANIFEST_SECTION

from .build_info import stamp_build
from .rust import BuildFailed, ToolchainMissing

COMPONENTIZE_PY = "componentize-py"
COMPONENTIZE_PY_PIN = "componentize-py==0.25.1"
WORLD = "routeiq-filter"
ENTRY_MODULE = "routeiq_guest.entry"  # imports the guest's `app` and exports it
# A guest with `tool.py` (instead of `app.py`) is an MCP tool: the routeiq:tool world.
TOOL_WORLD = "routeiq-tool"
TOOL_WIT = ("wit", "tool")  # under abi/
TOOL_ENTRY_MODULE = "routeiq_tool.entry"  # imports the guest's `tool` and exports it
SOURCE_SUFFIXES = (".py", ".json", ".wit")

_RUN = "import sys; from componentize_py import script; sys.argv[0] = 'componentize-py'; sys.exit(script())"


def componentize_version() -> str | None:
    try:
        return metadata.version(COMPONENTIZE_PY)
    except metadata.PackageNotFoundError:
        return None


def guest_dirs(root: Path) -> list[Path]:
    base = root / "guest-examples" / "python"
    return sorted(p for p in base.iterdir() if (p / "app.py").exists() or is_tool_dir(p)) if base.exists() else []


def is_tool_dir(guest: Path) -> bool:
    """A tool guest: `tool.py` (its `call(arguments)`), built against the routeiq:tool world."""
    return (guest / "tool.py").exists() and not (guest / "app.py").exists()


SKIP_PARTS = {"__pycache__", "build", ".cache", "node_modules"}  # outputs, not sources


def _source_files(base: Path) -> list[Path]:
    """The files of `base` a build sees and its cache key covers (the same list for both)."""
    return [
        path for path in sorted(base.rglob("*"))
        if path.is_file() and path.suffix in SOURCE_SUFFIXES and not SKIP_PARTS & set(path.relative_to(base).parts)
    ]


def _hash_tree(digest: "hashlib._Hash", base: Path) -> None:
    for path in _source_files(base):
        digest.update(str(path.relative_to(base)).encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())


def _stage(base: Path, into: Path) -> Path:
    """A copy of `base`'s source files: componentize-py writes CPython 3.14 .pyc files into
    the directories it mounts (and walks every file in them), so it gets this copy, never
    the author's project or the installed SDK."""
    for path in _source_files(base):
        target = into / path.relative_to(base)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    into.mkdir(parents=True, exist_ok=True)
    return into


def _leb128(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def with_custom_section(wasm: bytes, name: str, payload: bytes) -> bytes:
    """`wasm` (module or component) with a custom section appended."""
    raw_name = name.encode()
    body = _leb128(len(raw_name)) + raw_name + payload
    return wasm + b"\x00" + _leb128(len(body)) + body


def _manifest(guest: Path) -> bytes | None:
    path = guest / "manifest.json"
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise BuildFailed(f"{path}: not valid JSON: {exc}") from None
    data.setdefault("name", guest.name)
    return json.dumps(data, separators=(",", ": ")).encode()


def _require_componentize() -> str:
    version = componentize_version()
    if version is None:
        raise ToolchainMissing(
            f"componentize-py is not installed: `{sys.executable} -m pip install '{COMPONENTIZE_PY_PIN}'` "
            "(it builds offline once installed)"
        )
    return version


def _base_digest(abi: Path, version: str) -> "hashlib._Hash":
    base = hashlib.sha256(f"componentize-py {version}; world {WORLD}; entry {ENTRY_MODULE}".encode())
    _hash_tree(base, abi / "wit")
    _hash_tree(base, abi / "sdk" / "python")
    return base


def build_python_guests(root: Path, progress: Callable[[str], None] = lambda _: None) -> list[Path]:
    """Build every guest under guest-examples/python into guest-examples/python/build.

    Outputs are cached under .cache/guests keyed by the componentize-py version, the WIT
    world, the SDK and the guest's sources.
    """
    root = root.resolve()
    version = _require_componentize()
    abi, cache = root / "abi", root / ".cache" / "guests"
    base = _base_digest(abi, version)
    out_dir = root / "guest-examples" / "python" / "build"
    guests = guest_dirs(root)
    return [_build_one(abi, cache, guest, out_dir, progress, version, base, f" ({n} of {len(guests)})") for n, guest in enumerate(guests, 1)]


def build_python_plugin(guest: Path, out_dir: Path, progress: Callable[[str], None] = lambda _: None, *, abi: Path, cache: Path) -> Path:
    """Build one guest directory (app.py, optional manifest.json) into `out_dir/<name>.wasm`
    (`abi` holds wit/ and sdk/python; outputs are cached under `cache`)."""
    version = _require_componentize()
    return _build_one(abi, cache, guest.resolve(), out_dir, progress, version, _base_digest(abi, version))


def _build_one(
    abi: Path, cache: Path, guest: Path, out_dir: Path, progress: Callable[[str], None], version: str, base: "hashlib._Hash", place: str = ""
) -> Path:
    wit_dir = abi / "wit"
    sdk_dir = abi / "sdk" / "python"
    cache.mkdir(parents=True, exist_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = guest.name
    digest = base.copy()
    _hash_tree(digest, guest)
    cached = cache / f"py-{name}-{digest.hexdigest()[:20]}.wasm"
    manifest = _manifest(guest)
    if not cached.exists():
        # Most of the time is componentize-py compiling CPython (with Cranelift) to run the
        # snapshot, the same for every guest (bench/results/python_build.md).
        progress(f"building {name}.wasm{place} with componentize-py {version} (~12 s of CPU, mostly compiling CPython for its snapshot)")
        tmp = cached.with_suffix(f".tmp{os.getpid()}")
        if is_tool_dir(guest):
            _componentize(abi.joinpath(*TOOL_WIT), sdk_dir, guest, tmp, TOOL_WORLD, TOOL_ENTRY_MODULE)
        else:
            _componentize(wit_dir, sdk_dir, guest, tmp)
        wasm = tmp.read_bytes()
        if manifest is not None:
            wasm = with_custom_section(wasm, MANIFEST_SECTION, manifest)
        tmp.write_bytes(wasm)
        tmp.replace(cached)
    target = out_dir / f"{name}.wasm"
    # The build record is added on the way out of the cache (it is a function of the key).
    sdk = hashlib.sha256()
    _hash_tree(sdk, abi / "sdk" / "python")
    _hash_tree(sdk, wit_dir)
    wasm = stamp_build(cached.read_bytes(), {"lang": "python", "toolchain": f"componentize-py {version}", "sdk_sha256": sdk.hexdigest()})
    if not target.exists() or target.stat().st_size != len(wasm) or target.read_bytes() != wasm:
        target.write_bytes(wasm)
    sidecar = out_dir / f"{name}.manifest.json"
    if manifest is not None:
        if not sidecar.exists() or sidecar.read_bytes() != manifest + b"\n":
            sidecar.write_bytes(manifest + b"\n")
    else:
        sidecar.unlink(missing_ok=True)
    return target


def _componentize(wit_dir: Path, sdk_dir: Path, guest: Path, output: Path, world: str = WORLD, entry: str = ENTRY_MODULE) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    with tempfile.TemporaryDirectory(prefix="routeiq-componentize-") as tmp:
        # Without VIRTUAL_ENV componentize-py mounts whatever `python3` on PATH calls its
        # site-packages: an empty one keeps the component to the guest and the SDK.
        empty = Path(tmp) / "venv"
        (empty / "lib" / "site-packages").mkdir(parents=True)
        env["VIRTUAL_ENV"] = str(empty)
        staged = _stage(guest, Path(tmp) / "guest" / guest.name)  # same name: the messages name it
        _run_componentize(wit_dir, _stage(sdk_dir, Path(tmp) / "sdk"), staged, output, env, world, entry)


def _run_componentize(wit_dir: Path, sdk_dir: Path, guest: Path, output: Path, env: dict[str, str], world: str = WORLD, entry: str = ENTRY_MODULE) -> None:
    cmd = [
        sys.executable, "-c", _RUN,
        "--quiet", "-d", str(wit_dir), "-w", world,
        "componentize", entry,
        "-p", str(guest), "-p", str(sdk_dir),
        "-o", str(output),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=guest)
    if result.returncode != 0 or not output.exists():
        output.unlink(missing_ok=True)
        detail = (result.stderr or result.stdout).strip()
        # componentize-py appends a Rust backtrace; the Python error is above it.
        detail = detail.split("\nStack backtrace:")[0]
        raise BuildFailed(f"componentize-py failed for {guest.name}:\n{detail}")
