"""docs/configuration.md's reference section, generated from the models that validate
the config file, the policy and plugin manifests, plus the environment variables table.

The models are the one source: a field's type, constraints and default come from pydantic,
its meaning from `Field(description=...)`. `routeiq docs-config` rewrites the block between
the markers; tests/test_config_reference.py fails when the committed doc differs."""

from __future__ import annotations

import enum
import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from routeiq.config import GatewayConfig
from routeiq.env_vars import ENVIRONMENT
from routeiq.policy.manifest import PluginManifest
from routeiq.policy.model import PolicyModel

BEGIN = "<!-- BEGIN GENERATED REFERENCE: do not edit by hand; edit the models' descriptions, then run `routeiq docs-config` -->"
END = "<!-- END GENERATED REFERENCE -->"
REGENERATE = "run `.venv/bin/routeiq docs-config` (or `python -m routeiq docs-config`) and commit docs/configuration.md"


@dataclass(frozen=True)
class Row:
    path: str
    type: str
    default: str
    description: str


class MissingDescription(Exception):
    """A setting without `Field(description=...)`: it would be documented as nothing."""


def default_document() -> Path:
    """docs/configuration.md of the checkout this package runs from."""
    return Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    return [a for a in _union_parts(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]


def _bare(annotation: Any) -> Any:
    """The type under `Annotated[...]` (a tagged union's members, a discriminator)."""
    while typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _union_parts(annotation: Any) -> list[Any]:
    annotation = _bare(annotation)
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return [_bare(a) for a in typing.get_args(annotation)]
    return [annotation]


def _type_text(annotation: Any) -> str:
    annotation = _bare(annotation)
    parts = _union_parts(annotation)
    if len(parts) > 1:
        optional = type(None) in parts
        named = [_type_text(p) for p in parts if p is not type(None)]
        return " or ".join(named) + (" or null" if optional else "")
    origin = typing.get_origin(annotation)
    if origin is Literal:
        values = typing.get_args(annotation)
        return f"`{values[0]}`" if len(values) == 1 else "one of " + ", ".join(f"`{v}`" for v in values)
    if origin is list:
        (item,) = typing.get_args(annotation) or (Any,)
        text = _type_text(item)
        return f"list of {text.removeprefix('one of ')}" if text.startswith("one of ") else f"list of {_plural(text)}"
    if origin is dict:
        _, value = typing.get_args(annotation) or (str, Any)
        return f"mapping of name to {_type_text(value)}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "one of " + ", ".join(f"`{m.value}`" for m in annotation)
    if annotation is Any:
        return "any"
    return getattr(annotation, "__name__", str(annotation))


def _plural(text: str) -> str:
    return {"mapping": "mappings", "str": "strings", "any": "values"}.get(text, text)


def _constraints(info: FieldInfo) -> str:
    out = []
    for meta in info.metadata:
        for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if isinstance(meta, (annotated_types.Ge, annotated_types.Gt, annotated_types.Le, annotated_types.Lt)) and hasattr(meta, attr):
                out.append(f"{sign} {getattr(meta, attr)}")
        if isinstance(meta, annotated_types.MinLen):
            out.append("not empty" if meta.min_length == 1 else f"at least {meta.min_length} characters")
        pattern = getattr(meta, "pattern", None)
        if pattern:
            out.append(f"matching `{pattern}`")
    return ", ".join(out)


def _value_text(value: Any) -> str:
    if isinstance(value, BaseModel):
        return "(below)"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, list):
        value = [v.value if isinstance(v, enum.Enum) else v for v in value]
    return f"`{json.dumps(value)}`"


def _default_text(info: FieldInfo) -> str:
    if info.default_factory is not None:
        return _value_text(info.default_factory())  # type: ignore[call-arg]
    if info.default is PydanticUndefined:
        return "**required**"
    return _value_text(info.default)


def model_rows(model: type[BaseModel], prefix: str = "") -> list[Row]:
    """One row per setting of `model` and of every model nested in it, depth first."""
    rows: list[Row] = []
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        if not info.description:
            raise MissingDescription(f"{model.__module__}.{model.__qualname__}.{name} ({path}) has no Field(description=...)")
        kind = _type_text(info.annotation)
        limits = _constraints(info)
        rows.append(Row(path, f"{kind} ({limits})" if limits else kind, _default_text(info), info.description))
        rows.extend(_nested_rows(info.annotation, path))
    if model.model_config.get("extra") == "allow":
        rows.append(Row(f"{prefix}*", "any", "", (model.__doc__ or "").strip()))
    return rows


def _nested_rows(annotation: Any, path: str) -> list[Row]:
    rows: list[Row] = []
    for part in _union_parts(annotation):
        origin = typing.get_origin(part)
        if origin is list:
            for sub in _models_in(typing.get_args(part)[0]):
                rows.extend(model_rows(sub, f"{path}[]."))
        elif origin is dict:
            for sub in _models_in(typing.get_args(part)[1]):
                rows.extend(model_rows(sub, f"{path}.<name>."))
        else:
            for sub in _models_in(part):
                rows.extend(model_rows(sub, f"{path}."))
    return rows


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _table(rows: list[Row]) -> list[str]:
    lines = ["| Setting | Type | Default | Meaning |", "| --- | --- | --- | --- |"]
    for row in rows:
        lines.append(f"| `{row.path}` | {_cell(row.type)} | {_cell(row.default)} | {_cell(row.description)} |")
    return lines


def render_reference() -> str:
    """The generated block, markers included."""
    out = [BEGIN, "", "## Reference: the config file", ""]
    out.append("Every setting of the config file, in the order `host/config.py` declares them. A path")
    out.append("`a[].b` is key `b` of each item of list `a`; `a.<name>.b` is key `b` of each entry of mapping `a`.")
    for name, info in GatewayConfig.model_fields.items():
        out += ["", f"### `{name}`", ""]
        rows = [r for r in model_rows(GatewayConfig) if r.path == name or r.path.startswith((f"{name}.", f"{name}["))]
        out += _table(rows)
    out += ["", "## Reference: the policy file", ""]
    out.append("The operator policy (`policy:` in the config, or `serve --policy FILE`; docs/policy.md).")
    out += [""] + _table(model_rows(PolicyModel))
    out += ["", "## Reference: the plugin manifest", ""]
    out.append("What a plugin declares about itself, in its `routeiq.manifest` custom section or in")
    out.append("`<module>.manifest.json` / `.yaml` beside the module (docs/policy.md).")
    out += [""] + _table(model_rows(PluginManifest))
    out += ["", "## Environment variables", ""]
    out += ["| Variable | Read by | Default | Meaning |", "| --- | --- | --- | --- |"]
    for var in ENVIRONMENT:
        out.append(f"| `{var.name}` | {_cell(var.read_by)} | {_cell(var.default)} | {_cell(var.meaning)} |")
    out += ["", END]
    return "\n".join(out) + "\n"


def updated_document(text: str) -> str:
    """`text` with its generated block replaced (appended when it has none yet)."""
    start, end = text.find(BEGIN), text.find(END)
    if start == -1 or end == -1 or end < start:
        return text.rstrip("\n") + "\n\n" + render_reference()
    rest = text[end + len(END) :].lstrip("\n")
    return text[:start] + render_reference() + ("\n" + rest if rest else "")
