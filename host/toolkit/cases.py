"""Plugin test cases in YAML (`routeiq plugin test DIR` runs DIR/tests.yaml):

config: {tag: demo}            # plugin configuration (optional)
capabilities: [shared_kv]      # granted (optional; default: what the manifest declares)
cases:
  - name: tags the request
    request: {method: GET, path: /hello, headers: {x-api-key: k}, body: ""}
    upstream: {status: 200, headers: {content-type: text/plain}, body: "hi"}   # or chunks: [...]
    expect:
      status: 200
      local: false                       # true: a plugin answered, the upstream was not called
      upstream_headers: {x-routeiq-tagged: demo}
      upstream_body_contains: "..."
      headers: {x-routeiq-plugin: my_filter}
      body_contains: "..."
      logs_contain: ["..."]
      kv: {"some-key": "value"}          # in the plugin's own namespace
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .harness import Exchange, PluginTestHarness, UpstreamReply
from .inspect import is_component


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RequestSpec(_Strict):
    method: str = "GET"
    path: str = "/"
    headers: dict[str, str] = Field(default_factory=dict)
    body: str = ""


class UpstreamSpec(_Strict):
    status: int = 200
    headers: dict[str, str] = Field(default_factory=lambda: {"content-type": "application/json"})
    body: str = '{"ok": true}'
    chunks: list[str] | None = None


class Expectation(_Strict):
    status: int | None = None
    local: bool | None = None
    upstream_headers: dict[str, str | None] = Field(default_factory=dict)  # None: must be absent
    upstream_body: str | None = None
    upstream_body_contains: str | None = None
    headers: dict[str, str | None] = Field(default_factory=dict)
    body: str | None = None
    body_contains: str | None = None
    logs_contain: list[str] = Field(default_factory=list)
    kv: dict[str, str | None] = Field(default_factory=dict)


class Case(_Strict):
    name: str
    request: RequestSpec = Field(default_factory=RequestSpec)
    upstream: UpstreamSpec = Field(default_factory=UpstreamSpec)
    expect: Expectation = Field(default_factory=Expectation)


class CaseFile(_Strict):
    config: Any = None
    vm_config: Any = None
    capabilities: list[str] | None = None
    fail_open: bool = False
    cases: list[Case]


@dataclass
class CaseResult:
    name: str
    failures: list[str]
    number: int = 1  # this case's place in the file (1-based), of `total`
    total: int = 1

    @property
    def ok(self) -> bool:
        return not self.failures


class CaseFileError(ValueError):
    pass


def load_cases(path: Path) -> CaseFile:
    return load_case_file(path, CaseFile)


ModelT = TypeVar("ModelT", bound=BaseModel)


def load_case_file(path: Path, model: type[ModelT]) -> ModelT:
    """A case file read into `model`; errors name the file and each field."""
    try:
        return model.model_validate(yaml.safe_load(path.read_text()))
    except yaml.YAMLError as exc:
        raise CaseFileError(f"{path}: invalid YAML: {exc}") from None
    except ValidationError as exc:
        lines = [f"{path}: {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise CaseFileError("\n".join(lines)) from None


def _check(case: Case, got: Exchange, h: PluginTestHarness) -> list[str]:
    e = case.expect
    fail = []
    if e.status is not None and got.status != e.status:
        fail.append(f"status {got.status}, expected {e.status} (body: {got.body[:200]!r})")
    if e.local is not None and got.answered_locally != e.local:
        fail.append("a plugin answered locally" if got.answered_locally else "the request reached the upstream")
    for name, want in e.upstream_headers.items():
        have = got.upstream.headers.get(name.lower()) if got.upstream else None
        if have != want:
            fail.append(f"upstream header {name}: {have!r}, expected {want!r}")
    if e.upstream_body is not None and (got.upstream is None or got.upstream.body.decode(errors="replace") != e.upstream_body):
        fail.append(f"upstream body {got.upstream.body if got.upstream else None!r}, expected {e.upstream_body!r}")
    if e.upstream_body_contains is not None and (got.upstream is None or e.upstream_body_contains not in got.upstream.body.decode(errors="replace")):
        fail.append(f"upstream body does not contain {e.upstream_body_contains!r}")
    for name, want in e.headers.items():
        have = got.headers.get(name.lower())
        if have != want:
            fail.append(f"response header {name}: {have!r}, expected {want!r}")
    text = got.body.decode(errors="replace")
    if e.body is not None and text != e.body:
        fail.append(f"body {text[:200]!r}, expected {e.body!r}")
    if e.body_contains is not None and e.body_contains not in text:
        fail.append(f"body does not contain {e.body_contains!r}: {text[:200]!r}")
    for needle in e.logs_contain:
        if not any(needle in line for line in got.logs):
            fail.append(f"no log line contains {needle!r} (logs: {got.logs})")
    for key, want in e.kv.items():
        value = h.kv(key)
        have = value.decode(errors="replace") if value is not None else None
        if have != want:
            fail.append(f"kv {key}: {have!r}, expected {want!r}")
    return fail


def _is_component_file(path: Path) -> bool:
    with path.open("rb") as f:
        return is_component(f.read(8))


def run_cases(
    module: Path,
    cases_path: Path,
    name: str | None = None,
    on_result: Callable[[CaseResult], None] = lambda _: None,
    progress: Callable[[str], None] = lambda _: None,
    cache_dir: Path | None = None,
) -> list[CaseResult]:
    """Run every case; `on_result` sees each result as soon as it is known (a long run
    shows where it is), `progress` the slow steps before the first case. With `cache_dir`
    the compiled module is cached there (a component compiles for several seconds; the
    next run of the same bytes deserializes it instead)."""
    spec = load_cases(cases_path)
    results = []
    slow = "; a component compiles for several seconds unless cached" if _is_component_file(module) else ""
    progress(f"loading {module.name} ({module.stat().st_size / 1e6:.1f} MB{slow}) and {len(spec.cases)} cases")
    with PluginTestHarness(module, name=name, config=spec.config, vm_config=spec.vm_config, capabilities=spec.capabilities, fail_open=spec.fail_open, cache_dir=cache_dir) as h:
        for number, case in enumerate(spec.cases, 1):
            if number == 1:
                progress(f"running {len(spec.cases)} cases")
            reply = UpstreamReply(case.upstream.status, case.upstream.headers, case.upstream.body, case.upstream.chunks)
            got = h.request(case.request.method, case.request.path, case.request.headers, case.request.body, reply)
            results.append(CaseResult(case.name, _check(case, got, h), number, len(spec.cases)))
            on_result(results[-1])
    return results
