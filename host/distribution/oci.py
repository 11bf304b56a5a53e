"""Wasm modules in OCI registries, as Istio's WasmPlugin and Envoy users ship them.

A reference is `oci://REGISTRY/REPOSITORY[:TAG]@sha256:DIGEST`, the digest being that of
the manifest (what `routeiq plugin push` prints). Two packagings are read:

* the Wasm OCI artifact: an OCI image manifest whose config has media type
  `application/vnd.wasm.config.v1+json` and whose one layer,
  `application/vnd.wasm.content.layer.v1+wasm`, is the module itself (what `push` writes);
* Istio's "compat" variant: a Docker/OCI image with one tar.gz layer holding `plugin.wasm`.

Plain HTTP against the Distribution API (`/v2/<name>/manifests/<ref>`,
`/v2/<name>/blobs/<digest>`, monolithic blob upload), through httpx; anonymous bearer
tokens are fetched when a registry asks for one. Loopback registries are spoken to over
http, every other over https. Every byte is checked against its digest: the manifest
against the reference, the layer against the manifest.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

import httpx

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
WASM_CONFIG = "application/vnd.wasm.config.v1+json"
WASM_LAYER = "application/vnd.wasm.content.layer.v1+wasm"
TAR_GZIP_LAYERS = {"application/vnd.docker.image.rootfs.diff.tar.gzip", "application/vnd.oci.image.layer.v1.tar+gzip"}
COMPAT_FILE = "plugin.wasm"
MAX_MODULE_BYTES = 256 * 1024 * 1024  # a manifest can name any size: refuse absurd ones before downloading
TIMEOUT_S = 10.0

_REF = re.compile(
    r"^(?:oci://)?(?P<registry>[A-Za-z0-9.\-]+(?::[0-9]+)?|\[[0-9a-fA-F:]+\](?::[0-9]+)?)/"
    r"(?P<repository>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)
_LOOPBACK = re.compile(r"^(localhost|127\.[0-9.]+|\[::1\])(:[0-9]+)?$")


class OciError(Exception):
    """A reference that cannot be parsed, pulled or pushed; the message says why."""


@dataclass(frozen=True)
class OciRef:
    registry: str
    repository: str
    tag: str | None
    digest: str | None

    @property
    def base_url(self) -> str:
        scheme = "http" if _LOOPBACK.match(self.registry) else "https"
        return f"{scheme}://{self.registry}/v2/{self.repository}"

    def __str__(self) -> str:
        return f"oci://{self.registry}/{self.repository}" + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")


def is_oci(value: str) -> bool:
    return value.startswith("oci://")


def parse_ref(text: str) -> OciRef:
    match = _REF.match(text.strip())
    if not match:
        raise OciError(f"{text!r} is not an OCI reference (oci://REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST])")
    return OciRef(match["registry"], match["repository"], match["tag"], match["digest"])


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class OciClient:
    """One registry conversation at a time; `http` is injectable for tests and proxies."""

    def __init__(self, http: httpx.Client | None = None) -> None:
        self._http = http or httpx.Client(timeout=TIMEOUT_S, follow_redirects=True)
        self._tokens: dict[str, str] = {}

    def close(self) -> None:
        self._http.close()

    # -- transport -----------------------------------------------------------------

    def _request(self, ref: OciRef, method: str, url: str, **kwargs: object) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}) or {})  # type: ignore[call-overload]
        token = self._tokens.get(ref.registry)
        if token:
            headers["authorization"] = f"Bearer {token}"
        try:
            response = self._http.request(method, url, headers=headers, **kwargs)  # type: ignore[arg-type]
            if response.status_code == 401 and not token and self._anonymous_token(ref, response):
                headers["authorization"] = f"Bearer {self._tokens[ref.registry]}"
                response = self._http.request(method, url, headers=headers, **kwargs)  # type: ignore[arg-type]
        except httpx.HTTPError as exc:
            raise OciError(f"registry {ref.registry} unreachable: {exc.__class__.__name__}: {exc}") from None
        return response

    def _anonymous_token(self, ref: OciRef, response: httpx.Response) -> bool:
        """Docker's token flow for public repositories (GHCR, Docker Hub, ...)."""
        challenge = response.headers.get("www-authenticate", "")
        if not challenge.lower().startswith("bearer "):
            return False
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        if "realm" not in params:
            return False
        query = {k: v for k, v in params.items() if k in ("service", "scope")}
        query.setdefault("scope", f"repository:{ref.repository}:pull")
        try:
            answer = self._http.get(params["realm"], params=query)
            token = answer.json().get("token") or answer.json().get("access_token")
        except (httpx.HTTPError, ValueError):
            return False
        if not token:
            return False
        self._tokens[ref.registry] = token
        return True

    @staticmethod
    def _check(response: httpx.Response, what: str, *ok: int) -> None:
        if response.status_code not in ok:
            detail = response.text[:300].strip()
            raise OciError(f"{what}: HTTP {response.status_code}" + (f" ({detail})" if detail else ""))

    # -- pull ------------------------------------------------------------------------

    def pull(self, ref: OciRef) -> bytes:
        """The module `ref` names, every digest verified."""
        reference = ref.digest or ref.tag or "latest"
        response = self._request(ref, "GET", f"{ref.base_url}/manifests/{reference}", headers={"accept": f"{OCI_MANIFEST}, {DOCKER_MANIFEST}"})
        self._check(response, f"manifest {ref}", 200)
        raw = response.content
        if ref.digest and _sha256(raw) != ref.digest:
            raise OciError(f"{ref}: the registry's manifest has digest {_sha256(raw)}, not the pinned {ref.digest}: refused")
        try:
            manifest = json.loads(raw)
            layers = manifest["layers"]
            config_type = manifest.get("config", {}).get("mediaType", "")
        except (ValueError, KeyError, TypeError, AttributeError):
            raise OciError(f"{ref}: the manifest is not an image manifest with layers") from None
        if not isinstance(layers, list) or len(layers) != 1 or not isinstance(layers[0], dict):
            raise OciError(f"{ref}: a Wasm image has exactly one layer, this one has {len(layers) if isinstance(layers, list) else '?'}")
        layer = layers[0]
        media, digest, size = layer.get("mediaType"), layer.get("digest"), layer.get("size")
        if not isinstance(digest, str) or not digest.startswith("sha256:") or not isinstance(size, int) or size > MAX_MODULE_BYTES:
            raise OciError(f"{ref}: layer descriptor without a sha256 digest and a size under {MAX_MODULE_BYTES} bytes")
        blob = self._request(ref, "GET", f"{ref.base_url}/blobs/{digest}")
        self._check(blob, f"layer {digest} of {ref}", 200)
        data = blob.content
        if _sha256(data) != digest:
            raise OciError(f"{ref}: layer {digest} arrived with digest {_sha256(data)}: refused")
        if media == WASM_LAYER:
            wasm = data
        elif media in TAR_GZIP_LAYERS:
            wasm = _compat_module(ref, data)
        else:
            raise OciError(f"{ref}: layer media type {media!r} is neither {WASM_LAYER} nor a tar.gz layer (config {config_type!r})")
        if wasm[:4] != b"\0asm":
            raise OciError(f"{ref}: the layer is not a WebAssembly binary")
        return wasm

    # -- push ------------------------------------------------------------------------

    def _upload_blob(self, ref: OciRef, data: bytes) -> str:
        digest = _sha256(data)
        head = self._request(ref, "HEAD", f"{ref.base_url}/blobs/{digest}")
        if head.status_code == 200:
            return digest
        start = self._request(ref, "POST", f"{ref.base_url}/blobs/uploads/")
        self._check(start, f"starting a blob upload to {ref.registry}/{ref.repository}", 202)
        location = start.headers.get("location")
        if not location:
            raise OciError(f"{ref.registry}: blob upload answered without a Location")
        url = httpx.URL(ref.base_url).join(location)
        put = self._request(ref, "PUT", str(url.copy_merge_params({"digest": digest})), content=data, headers={"content-type": "application/octet-stream"})
        self._check(put, f"uploading blob {digest}", 201)
        return digest

    def push(self, ref: OciRef, wasm: bytes) -> str:
        """Publish `wasm` as a Wasm OCI artifact under `ref`'s tag; returns the manifest digest.
        The manifest holds no time or path, so pushing the same module gives the same digest."""
        if wasm[:4] != b"\0asm":
            raise OciError("not a WebAssembly binary")
        config = b"{}"
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": WASM_CONFIG, "digest": self._upload_blob(ref, config), "size": len(config)},
            "layers": [{"mediaType": WASM_LAYER, "digest": self._upload_blob(ref, wasm), "size": len(wasm)}],
        }
        raw = json.dumps(manifest, separators=(",", ":"), sort_keys=True).encode()
        put = self._request(ref, "PUT", f"{ref.base_url}/manifests/{ref.tag or 'latest'}", content=raw, headers={"content-type": OCI_MANIFEST})
        self._check(put, f"pushing the manifest of {ref}", 201)
        return _sha256(raw)


def _compat_module(ref: OciRef, data: bytes) -> bytes:
    try:
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data)), mode="r:") as tar:
            for member in tar.getmembers():
                if member.isfile() and Path(member.name).name == COMPAT_FILE and member.size <= MAX_MODULE_BYTES:
                    extracted = tar.extractfile(member)
                    if extracted is not None:
                        return extracted.read()
    except (OSError, EOFError, tarfile.TarError) as exc:
        raise OciError(f"{ref}: the tar.gz layer cannot be read: {exc}") from None
    raise OciError(f"{ref}: the tar.gz layer holds no {COMPAT_FILE}")


def fetch_module(ref: OciRef, cache_dir: Path, client_factory: type[OciClient] = OciClient) -> Path:
    """The cached module for a digest-pinned `ref`, pulled (and verified) on first use.

    The cache is keyed by the manifest digest, which names immutable content: once a
    module is cached the registry is never asked again, so a registry that is down at
    startup does not stop a gateway that has run before."""
    if ref.digest is None:
        raise OciError(f"{ref}: pin it by digest (oci://{ref.registry}/{ref.repository}:TAG@sha256:...; `routeiq plugin push` prints it)")
    cached = cache_dir / f"{ref.digest.replace(':', '-')}.wasm"
    if cached.exists():
        return cached
    client = client_factory()
    try:
        wasm = client.pull(ref)
    finally:
        client.close()
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(wasm)
    tmp.replace(cached)
    return cached
