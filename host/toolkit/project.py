"""A plugin project directory: `routeiq-plugin.yaml` names the plugin and its language."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

import routeiq
from routeiq.toolchain.paths import abi_dir, guest_cache
from routeiq.toolchain.rust import ToolchainMissing

PROJECT_FILE = "routeiq-plugin.yaml"
LANGUAGES = ("rust", "python", "assemblyscript", "c")


class ProjectError(ValueError):
    pass


@dataclass(frozen=True)
class PluginProject:
    directory: Path
    name: str
    lang: str

    @property
    def output(self) -> Path:
        return self.directory / "build" / f"{self.name}.wasm"

    @property
    def tests(self) -> Path:
        return self.directory / "tests.yaml"


def load_project(directory: Path) -> PluginProject:
    path = directory / PROJECT_FILE
    if not path.exists():
        raise ProjectError(f"{directory} is not a plugin project: no {PROJECT_FILE} (create one with `routeiq plugin new`)")
    data = yaml.safe_load(path.read_text()) or {}
    name, lang = data.get("name"), data.get("lang")
    if not isinstance(name, str) or not name.isidentifier():
        raise ProjectError(f"{path}: name: must be an identifier (letters, digits, _), got {name!r}")
    if lang not in LANGUAGES:
        raise ProjectError(f"{path}: lang: must be one of {', '.join(LANGUAGES)}, got {lang!r}")
    return PluginProject(directory.resolve(), name, lang)


def templates_root() -> Path:
    """The example files the scaffold copies: package data of an installed wheel, or the
    guest-examples/ of a source checkout (editable install)."""
    packaged = Path(routeiq.__file__).resolve().parent / "toolkit" / "templates"
    if packaged.is_dir():
        return packaged
    checkout = Path(routeiq.__file__).resolve().parents[1] / "guest-examples"
    if checkout.is_dir():
        return checkout
    raise ToolchainMissing(f"the plugin templates are missing from the installed routeiq ({packaged}): reinstall routeiq")


def build_project(project: PluginProject, progress: Callable[[str], None] = lambda _: None, cache: Path | None = None) -> Path:
    """Build a project into its build/; outputs are cached in the user cache dir (or `cache`)."""
    out_dir = project.directory / "build"
    abi = abi_dir()
    cache = cache or guest_cache()
    if project.lang == "rust":
        from routeiq.toolchain.rust import build_rust_crate

        return build_rust_crate(project.directory, out_dir, progress, abi=abi, cache=cache)
    if project.lang == "python":
        from routeiq.toolchain.python import build_python_plugin

        return build_python_plugin(project.directory, out_dir, progress, abi=abi, cache=cache)
    if project.lang == "assemblyscript":
        from routeiq.toolchain.assemblyscript import build_assemblyscript_project

        built = build_assemblyscript_project(project.directory, progress, cache=cache)
        return next(p for p in built if p.stem == project.name)
    from routeiq.toolchain.c import build_c_plugin

    return build_c_plugin(project.directory, out_dir, progress, abi=abi, cache=cache)
