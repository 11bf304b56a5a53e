"""docs/configuration.md's reference is generated from the models and host/env_vars.py,
and cannot drift from them (issue #12 item 9)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, Field

from routeiq.cli import main
from routeiq.config import parse_config
from routeiq.config_reference import BEGIN, END, REGENERATE, MissingDescription, model_rows, updated_document
from routeiq.env_vars import ENVIRONMENT

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "configuration.md"


def test_committed_reference_is_what_the_generator_writes() -> None:
    text = DOC.read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1, "docs/configuration.md lost its generated-block markers"
    assert updated_document(text) == text, f"docs/configuration.md differs from the models: {REGENERATE}"


def test_the_settings_that_were_missing_are_documented() -> None:
    text = DOC.read_text()
    generated = text[text.index(BEGIN) :]
    for needle in (
        "| `plugins[].python` |",
        "| `plugins.<name>.native` |",
        "| `plugins.<name>.module` |",
        '| `plugins.<name>.callouts[].scheme` | str (matching `^https?$`) | `"https"` |',
        '| `plugins.<name>.callouts[].methods` | list of strings | `["GET"]` |',
        "| `plugins.<name>.callouts[].port` | int or null (>= 1, <= 65535) | `null` |",
        "| `ROUTEIQ_CC` |",
        "| `ROUTEIQ_NODE` |",
        "| `ROUTEIQ_NPM` |",
    ):
        assert needle in generated, needle


def test_a_setting_without_a_description_is_refused() -> None:
    class Limits(BaseModel):
        max_buffer_bytes: int = Field(1024, ge=1)

    class Plugin(BaseModel):
        limits: Limits = Field(default_factory=Limits, description="limits")

    with pytest.raises(MissingDescription, match=r"max_buffer_bytes \(plugins\[\]\.limits\.max_buffer_bytes\)"):
        model_rows(Plugin, "plugins[].")


def test_a_new_nested_field_appears_with_type_default_and_constraints() -> None:
    class Limits(BaseModel):
        max_buffer_bytes: int = Field(1024, ge=1, description="Largest body a plugin may buffer.")

    class Plugin(BaseModel):
        limits: Limits = Field(default_factory=Limits, description="limits")

    rows = {r.path: r for r in model_rows(Plugin, "plugins[].")}
    row = rows["plugins[].limits.max_buffer_bytes"]
    assert (row.type, row.default, row.description) == ("int (>= 1)", "`1024`", "Largest body a plugin may buffer.")


def test_docs_config_check_fails_on_a_stale_copy_and_regenerating_fixes_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stale = tmp_path / "configuration.md"
    text = DOC.read_text()
    stale.write_text(text.replace("| `plugins[].python` |", "| `plugins[].pyhton` |"))
    assert main(["docs-config", "--path", str(stale), "--check"]) == 1
    assert "routeiq docs-config" in capsys.readouterr().err
    assert main(["docs-config", "--path", str(stale)]) == 0
    assert stale.read_text() == text


def test_hand_written_prose_outside_the_block_is_kept(tmp_path: Path) -> None:
    text = "# Title\n\nprose before\n\n" + BEGIN + "\nold\n" + END + "\n\n## After\n\nprose after\n"
    out = updated_document(text)
    assert out.startswith("# Title\n\nprose before\n\n" + BEGIN)
    assert out.endswith(END + "\n\n## After\n\nprose after\n")
    assert "\nold\n" not in out


def test_the_example_config_in_the_doc_is_valid() -> None:
    text = DOC.read_text()
    example = re.search(r"```yaml\n(.*?)```", text[: text.index(BEGIN)], re.S)
    assert example, "docs/configuration.md has no example config before the reference"
    parse_config(yaml.safe_load(example.group(1)), "docs/configuration.md example")


# Reads of the environment: os.environ[...], os.environ.get/setdefault/pop(...), os.getenv(...)
# in Python; ${NAME:-...} / ${NAME-...} and unassigned $NAME in the shell scripts.
_PY_READ = re.compile(r"os\.(?:environ(?:\.get|\.setdefault|\.pop)?\(|environ\[|getenv\()\s*([^,\)\]]+)")
_PY_CONST = re.compile(r"^([A-Z][A-Z0-9_]*)\s*=\s*[\"']([A-Za-z_][A-Za-z0-9_]*)[\"']", re.M)
_SH_REF = re.compile(r"\$\{?([A-Z_][A-Z0-9_]*)")
_SH_DEFAULTED = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*):?[-=]")
_SH_ASSIGNED = re.compile(r"^\s*(?:local\s+|export\s+|readonly\s+)?([A-Za-z_][A-Za-z0-9_]*)=", re.M)
# Reads of a variable the operator names: documented where that name is given.
_OPERATOR_NAMED = {
    "host/llm/deployments.py": "the `os.environ/NAME` values of model_list[].litellm_params",
    "host/litellm_settings.py": "the `os.environ/NAME` values of router_settings, litellm_settings and general_settings",
}


def _python_reads() -> dict[str, str]:
    files = sorted([*(ROOT / "host").rglob("*.py"), *(ROOT / "bench").rglob("*.py")])
    constants = {name: value for f in files for name, value in _PY_CONST.findall(f.read_text())}
    found: dict[str, str] = {}
    for f in files:
        for match in _PY_READ.finditer(f.read_text()):
            arg = match.group(1).strip()
            literal = re.fullmatch(r"[\"']([^\"']+)[\"']", arg)
            name = literal.group(1) if literal else constants.get(arg)
            if name is None and str(f.relative_to(ROOT)) in _OPERATOR_NAMED:
                continue
            assert name, f"{f.relative_to(ROOT)}: cannot tell which environment variable `{match.group(0)}` reads (use a literal or a module constant)"
            found.setdefault(name, str(f.relative_to(ROOT)))
    return found


def _shell_reads() -> dict[str, str]:
    found: dict[str, str] = {}
    for f in [ROOT / "dev", *sorted((ROOT / ".ci").iterdir())]:
        text = "\n".join(line for line in f.read_text().splitlines() if not line.lstrip().startswith("#"))
        assigned = set(_SH_ASSIGNED.findall(text))
        names = set(_SH_DEFAULTED.findall(text)) | (set(_SH_REF.findall(text)) - assigned)
        for name in names:
            found.setdefault(name, str(f.relative_to(ROOT)))
    return found


def test_every_environment_variable_read_is_documented() -> None:
    reads = {**_shell_reads(), **_python_reads()}
    assert {"ROUTEIQ_CC", "ROUTEIQ_NODE", "ROUTEIQ_NPM", "PYTHON"} <= set(reads)  # the scan itself works
    declared = {v.name for v in ENVIRONMENT}
    undocumented = {name: where for name, where in reads.items() if name not in declared}
    assert not undocumented, f"environment variables read but not in host/env_vars.py: {undocumented}; add them, then {REGENERATE}"
    stale = declared - set(reads)
    assert not stale, f"host/env_vars.py lists variables nothing reads: {sorted(stale)}"
