"""Build AssemblyScript guests: Node.js, `npm ci` from the committed lock, a content-hash cache.

Every directory `guest-examples/assemblyscript*/` with a `package.json` is one npm project
with its own pinned compiler (`package-lock.json`), `asconfig.json` (compiler options,
target `release`) and guests: each subdirectory holding an `index.ts` is one guest, built
into `build/NAME.wasm` of its project.

* `guest-examples/assemblyscript/`: assemblyscript 0.28 and a tiny in-repo helper
  (`lib/`); an asc transform writes `NAME/manifest.json` into the module as the
  `routeiq.manifest` custom section.
* `guest-examples/assemblyscript-sdk/`: the public SDK `@solo-io/proxy-runtime` 0.1.8
  with assemblyscript 0.17 (proxy-wasm ABI 0.2.0). No transform there: the manifest is
  written beside the module as the sidecar `build/NAME.manifest.json`.

The rule for every guest: when the built module carries a `routeiq.manifest` section no
sidecar is written (a stale one is removed); otherwise `NAME/manifest.json`, if any, is
copied to `build/NAME.manifest.json`.

`npm ci` runs once per lock file (a stamp in node_modules records the lock's hash), with
`--ignore-scripts`; afterwards builds need no network.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from routeiq.abi.capabilities import MANIFEST_SECTION

from .build_info import stamp_build
from .rust import BuildFailed, ToolchainMissing

MIN_NODE_MAJOR = 20  # assemblyscript 0.28's "engines"
STAMP = ".routeiq-lock-sha256"
SKIP_DIRS = {"node_modules", "build", "lib", ".git"}
SOURCE_SUFFIXES = {".ts", ".mjs", ".js", ".json"}


@dataclass(frozen=True)
class Node:
    node: str
    npm: str
    version: str  # "v20.20.2"


def _install_hint() -> str:
    return (
        f"Install Node.js >= {MIN_NODE_MAJOR} with npm: on Debian/Ubuntu `apt-get install nodejs npm` "
        "(if the distribution's nodejs is older, use a newer Node.js build on PATH); "
        "set ROUTEIQ_NODE / ROUTEIQ_NPM to pick specific executables"
    )


def find_node() -> Node:
    node = os.environ.get("ROUTEIQ_NODE") or shutil.which("node") or shutil.which("nodejs")
    npm = os.environ.get("ROUTEIQ_NPM") or shutil.which("npm")
    if not node or not npm:
        missing = " and ".join(n for n, p in (("node", node), ("npm", npm)) if not p)
        raise ToolchainMissing(f"AssemblyScript guests need Node.js and npm; {missing} not found. {_install_hint()}")
    try:
        version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        raise ToolchainMissing(f"{node} --version failed ({exc}). {_install_hint()}") from None
    match = re.match(r"v(\d+)", version)
    if not match or int(match.group(1)) < MIN_NODE_MAJOR:
        raise ToolchainMissing(f"Node.js {version or '?'} at {node} is too old for AssemblyScript. {_install_hint()}")
    return Node(node, npm, version)


def projects(root: Path) -> list[Path]:
    base = root / "guest-examples"
    if not base.exists():
        return []
    return sorted(p for p in base.glob("assemblyscript*") if p.is_dir() and (p / "package.json").exists())


def guest_dirs(project: Path) -> list[Path]:
    return sorted(
        p for p in project.iterdir() if p.is_dir() and p.name not in SKIP_DIRS and not p.name.startswith(".") and (p / "index.ts").exists()
    )


def _lock_hash(project: Path) -> str:
    lock = project / "package-lock.json"
    if not lock.exists():
        raise BuildFailed(f"{lock} is missing: the npm dependencies of AssemblyScript guests are pinned by it (run `npm install` there once and commit it)")
    return hashlib.sha256(lock.read_bytes()).hexdigest()


def ensure_node_modules(project: Path, node: Node, progress: Callable[[str], None]) -> None:
    """`npm ci` from the committed lock, unless node_modules already matches it."""
    lock_hash = _lock_hash(project)
    stamp = project / "node_modules" / STAMP
    if stamp.exists() and stamp.read_text().strip() == lock_hash:
        return
    progress(f"npm ci in {project.name} (pinned by package-lock.json)")
    env = dict(os.environ)
    env.setdefault("npm_config_update_notifier", "false")
    result = subprocess.run(
        [node.npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--prefer-offline"],
        cwd=project,
        capture_output=True,
        text=True,
        env=env,
    )
    if result.returncode != 0:
        raise ToolchainMissing(
            f"`npm ci` failed in {project} (it needs the npm registry once; afterwards node_modules is reused):\n"
            f"{(result.stderr or result.stdout).strip()}"
        )
    stamp.write_text(lock_hash + "\n")


def _asc(project: Path) -> tuple[Path, str]:
    """The asc script of the project's pinned assemblyscript, and that version."""
    package = project / "node_modules" / "assemblyscript" / "package.json"
    if not package.exists():
        raise BuildFailed(f"{project}: assemblyscript is not in node_modules (is it in package.json?)")
    meta = json.loads(package.read_text())
    bin_entry = meta.get("bin", {})
    script = bin_entry.get("asc") if isinstance(bin_entry, dict) else None
    if not script:
        raise BuildFailed(f"{package}: no `asc` executable declared")
    return project / "node_modules" / "assemblyscript" / script, str(meta.get("version", "?"))


def _project_digest(project: Path) -> str:
    """Hash of every source the project's guests may use (shared lib/, transform, configs)."""
    digest = hashlib.sha256()
    files = []
    for path in sorted(project.rglob("*")):
        rel = path.relative_to(project)
        if not path.is_file() or rel.parts[0] in {"node_modules", "build"} or path.suffix not in SOURCE_SUFFIXES:
            continue
        files.append(path)
    for path in files:
        digest.update(str(path.relative_to(project)).encode() + b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def _has_manifest_section(wasm: bytes) -> bool:
    from routeiq.policy.manifest import ManifestError, custom_sections

    try:
        return MANIFEST_SECTION in custom_sections(wasm)
    except ManifestError:
        return False


def build_assemblyscript_guests(root: Path, progress: Callable[[str], None] = lambda _: None) -> list[Path]:
    """Build every AssemblyScript guest into guest-examples/<project>/build/NAME.wasm.

    Outputs are cached under .cache/guests keyed by Node.js version, the project's lock
    file and sources. Raises ToolchainMissing (what to install) when Node.js/npm are
    missing or `npm ci` fails, BuildFailed when asc rejects a guest.
    """
    root = Path(root).resolve()
    found = [(project, guest_dirs(project)) for project in projects(root)]
    if not any(guests for _, guests in found):
        return []
    node = find_node()
    built = []
    for project, guests in found:
        if guests:
            built += build_assemblyscript_project(project, progress, node, cache=root / ".cache" / "guests")
    return built


def build_assemblyscript_project(project: Path, progress: Callable[[str], None] = lambda _: None, node: Node | None = None, *, cache: Path) -> list[Path]:
    """Build every guest (`<dir>/index.ts`) of one npm project into `<project>/build/`
    (outputs cached under `cache`). asc gets paths relative to the project, so the bytes do
    not depend on where the project is."""
    node = node or find_node()
    project = project.resolve()
    built = []
    guests = guest_dirs(project)
    ensure_node_modules(project, node, progress)
    asc, asc_version = _asc(project)
    project_key = hashlib.sha256(
        "\0".join([node.version, asc_version, _lock_hash(project), _project_digest(project), "stamp-v1"]).encode()
    ).hexdigest()
    out_dir = project / "build"
    for guest in guests:
        name = guest.name
        key = hashlib.sha256(f"{project_key}\0{name}".encode()).hexdigest()[:20]
        cached = cache / f"as-{project.name}-{name}-{key}.wasm"
        if not cached.exists():
            progress(f"building {name}.wasm (assemblyscript {asc_version}, node {node.version})")
            cache.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(f".tmp{os.getpid()}.wasm")
            cmd = [node.node, str(asc), f"{name}/index.ts", "--config", "asconfig.json", "--target", "release", "-o", str(tmp)]
            result = subprocess.run(cmd, cwd=project, capture_output=True, text=True)
            if result.returncode != 0 or not tmp.exists():
                tmp.unlink(missing_ok=True)
                detail = (result.stderr or result.stdout).strip()
                raise BuildFailed(f"AssemblyScript build of {project.name}/{name} failed (asc {asc_version}):\n{detail}")
            build = {"lang": "assemblyscript", "toolchain": f"assemblyscript {asc_version}, node {node.version}", "lock_sha256": _lock_hash(project)}
            tmp.write_bytes(stamp_build(tmp.read_bytes(), build))
            tmp.replace(cached)
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / f"{name}.wasm"
        data = cached.read_bytes()
        if not target.exists() or target.read_bytes() != data:
            shutil.copyfile(cached, target)
        sidecar = out_dir / f"{name}.manifest.json"
        source_manifest = guest / "manifest.json"
        if _has_manifest_section(data) or not source_manifest.exists():
            sidecar.unlink(missing_ok=True)
        elif not sidecar.exists() or sidecar.read_bytes() != source_manifest.read_bytes():
            shutil.copyfile(source_manifest, sidecar)
        built.append(target)
    return built
