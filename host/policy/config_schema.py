"""A plugin's configuration checked against the `config_schema` its manifest declares.

The schema is JSON Schema, checked with the maintained `jsonschema` validator (the draft the
schema's `$schema` names; 2020-12 when it names none). Errors name the JSON path from the
config's root, e.g. `config.deny_paths[1]: 5 is not of type 'string'`."""

from __future__ import annotations

from typing import Any, Iterable

import jsonschema
from jsonschema.exceptions import SchemaError, ValidationError
from referencing.exceptions import Unresolvable

from routeiq import strict_json
from routeiq.runtime.errors import PluginLoadError

MAX_REPORTED = 5  # errors named in one message; the rest are counted


class ConfigSchemaError(PluginLoadError):
    """The configuration does not match the plugin's config_schema (nothing was applied)."""

    kind = "config_schema"


def check_schema(schema: dict[str, Any], root: str = "config_schema") -> None:
    """Raise ValueError if `schema` (the manifest's `root`) is not a valid JSON Schema (a manifest error)."""
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        raise ValueError(f"not a valid JSON Schema: {_path(exc.absolute_path, root)}: {exc.message}") from None


def _path(parts: Iterable[Any], root: str = "config") -> str:
    out = root
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def schema_errors(schema: dict[str, Any], document: Any, root: str = "config") -> list[str]:
    """Every violation of `schema` by `document`, each naming its path (empty: valid)."""
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        found: list[ValidationError] = list(cls(schema).iter_errors(document))
    except Unresolvable as exc:
        # Only refs inside the schema resolve (nothing is fetched); a dangling one is the
        # plugin author's error, reported instead of raised.
        return [f"config_schema: cannot resolve {exc}"]
    errors = sorted(found, key=lambda e: (list(map(str, e.absolute_path)), e.message))
    return [f"{_path(e.absolute_path, root)}: {e.message}" for e in errors]


def validate_document(schema: dict[str, Any] | None, document: Any) -> None:
    """Raise ConfigSchemaError naming every violation (at most MAX_REPORTED of them)."""
    if schema is None:
        return
    errors = schema_errors(schema, document)
    if errors:
        more = f" (and {len(errors) - MAX_REPORTED} more)" if len(errors) > MAX_REPORTED else ""
        raise ConfigSchemaError("; ".join(errors[:MAX_REPORTED]) + more)


def validate_config(schema: dict[str, Any] | None, config: bytes) -> None:
    """A plugin's raw configuration bytes against its schema. No configuration at all
    (empty) is not checked: the plugin runs on its defaults."""
    if schema is None or not config.strip():
        return
    try:
        document = strict_json.loads(config)
    except strict_json.JsonInputError as exc:
        raise ConfigSchemaError(f"config: the manifest declares a config_schema but the configuration is not JSON: {exc.message}") from None
    validate_document(schema, document)
