"""OCI distribution against a real registry (Debian's docker-registry) on loopback:
`routeiq plugin push` publishes a Wasm OCI artifact, `wasm: oci://...@sha256:...` pulls it,
verifies the digests and caches it; a wrong digest is refused; a registry down at startup
is survived with the cached module, or refused naming the plugin and the reference."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from routeiq.app import create_app
from routeiq.config import ConfigError, parse_config
from routeiq.distribution.oci import DOCKER_MANIFEST, OciClient, OciError, fetch_module, parse_ref

from support import registry_server


def push(module: Path, ref: str) -> str:
    out = subprocess.run([sys.executable, "-m", "routeiq", "plugin", "push", str(module), ref], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    found = re.search(r"^wasm: (oci://\S+)$", out.stdout, re.M)
    assert found, out.stdout
    return found.group(1)


def gateway(tmp_path: Path, wasm: str, module_cache: Path, **extra: Any) -> Any:
    data = {
        "upstream": "embedded",
        "plugins": [{"name": "tagger", "wasm": wasm, "config": {"tag": "pulled"}, **extra}],
        "runtime": {"cache_dir": str(module_cache), "oci_cache_dir": str(tmp_path / "oci-cache")},
        "policy": {"plugins": {"tagger": {"unpinned": True, "capabilities": []}}},
    }
    return create_app(parse_config(data, "gw.yaml", tmp_path / "gw.yaml"))


def tagged(app: Any) -> list[str]:
    with TestClient(app) as client:
        seen = client.get("/echo/x").json()["headers"]
    return [v for k, v in seen if k == "x-routeiq-tagged"]


def test_push_then_pull_by_digest_and_run(tmp_path: Path, guests: dict[str, Path], module_cache_dir: Path) -> None:
    with registry_server(tmp_path / "registry") as registry:
        ref = push(guests["tagger"], f"oci://{registry}/plugins/tagger:v1")
        assert ref.startswith(f"oci://{registry}/plugins/tagger:v1@sha256:")
        # Istio's packaging: OCI manifest, wasm config, one raw wasm layer.
        manifest = httpx.get(f"http://{registry}/v2/plugins/tagger/manifests/v1", headers={"accept": "application/vnd.oci.image.manifest.v1+json"}).json()
        assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
        assert manifest["config"]["mediaType"] == "application/vnd.wasm.config.v1+json"
        assert [layer["mediaType"] for layer in manifest["layers"]] == ["application/vnd.wasm.content.layer.v1+wasm"]
        assert push(guests["tagger"], f"{registry}/plugins/tagger:v1") == ref  # same module, same digest

        app = gateway(tmp_path, ref, module_cache_dir, sha256=hashlib.sha256(guests["tagger"].read_bytes()).hexdigest())
        try:
            assert tagged(app) == ["pulled"]
        finally:
            app.state.gateway.close()
        cached = list((tmp_path / "oci-cache").glob("sha256-*.wasm"))
        assert [p.read_bytes() for p in cached] == [guests["tagger"].read_bytes()]

    # Registry down at startup: the cached digest is used without asking it.
    app = gateway(tmp_path, ref, module_cache_dir)
    try:
        assert tagged(app) == ["pulled"]
    finally:
        app.state.gateway.close()
    # ... and a digest never pulled is a clear error naming the plugin and the reference.
    other = ref.split("@")[0] + "@sha256:" + "ab" * 32
    with pytest.raises(ConfigError) as refused:
        gateway(tmp_path, other, module_cache_dir)
    message = str(refused.value)
    assert "plugin 'tagger'" in message and other in message and "unreachable" in message and "no cached copy" in message


def test_a_digest_mismatch_is_refused(tmp_path: Path, guests: dict[str, Path], module_cache_dir: Path) -> None:
    storage = tmp_path / "registry"
    with registry_server(storage) as registry:
        ref = push(guests["tagger"], f"oci://{registry}/plugins/tagger:v1")
        # A pin naming a manifest the registry does not have is refused, naming the plugin.
        unknown = ref.split("@")[0] + "@sha256:" + "0" * 64
        with pytest.raises(ConfigError, match=r"plugin 'tagger': cannot load .*MANIFEST_UNKNOWN"):
            gateway(tmp_path, unknown, module_cache_dir)
        # A registry (or a proxy, or a disk) serving other bytes for the layer: the layer's
        # digest in the manifest does not match what arrived, so nothing is loaded or cached.
        layer = hashlib.sha256(guests["tagger"].read_bytes()).hexdigest()
        blob = storage / "data" / "docker" / "registry" / "v2" / "blobs" / "sha256" / layer[:2] / layer / "data"
        assert blob.exists(), "docker-registry's storage layout changed"
        blob.write_bytes(guests["ext_auth"].read_bytes())
        with pytest.raises(ConfigError, match=r"plugin 'tagger': cannot load .*arrived with digest .*refused"):
            gateway(tmp_path, ref, module_cache_dir)
        # The same for the manifest itself, against the reference's pin.
        manifest_digest = ref.rsplit(":", 1)[1]
        stored = storage / "data" / "docker" / "registry" / "v2" / "blobs" / "sha256" / manifest_digest[:2] / manifest_digest / "data"
        stored.write_bytes(stored.read_bytes().replace(b'"schemaVersion":2', b'"schemaVersion":2 '))
        client = OciClient()
        try:
            with pytest.raises(OciError, match="not the pinned"):
                client.pull(parse_ref(ref))
        finally:
            client.close()
        assert not list((tmp_path / "oci-cache").glob("*.wasm"))


def test_tag_only_references_are_refused_before_any_network(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="pinned by its manifest digest"):
        parse_config({"plugins": [{"name": "t", "wasm": "oci://127.0.0.1:9/plugins/t:v1"}]}, "gw.yaml", tmp_path / "gw.yaml")
    with pytest.raises(ConfigError, match="not an OCI reference"):
        parse_config({"plugins": [{"name": "t", "wasm": "oci://no repo here"}]}, "gw.yaml", tmp_path / "gw.yaml")


def test_istio_compat_image_with_plugin_wasm_in_a_tar_gz_layer(tmp_path: Path, guests: dict[str, Path]) -> None:
    wasm = guests["tagger"].read_bytes()
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w") as tar:
        info = tarfile.TarInfo("plugin.wasm")
        info.size = len(wasm)
        tar.addfile(info, io.BytesIO(wasm))
    layer = gzip.compress(tar_bytes.getvalue(), mtime=0)
    config = b'{"architecture":"amd64","os":"linux"}'
    with registry_server(tmp_path / "registry") as registry:
        ref = parse_ref(f"oci://{registry}/plugins/compat:v1")
        client = OciClient()
        try:
            manifest = json.dumps({
                "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": client._upload_blob(ref, config), "size": len(config)},
                "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": client._upload_blob(ref, layer), "size": len(layer)}],
            }).encode()
            put = client._request(ref, "PUT", f"{ref.base_url}/manifests/v1", content=manifest, headers={"content-type": DOCKER_MANIFEST})
            assert put.status_code == 201, put.text
        finally:
            client.close()
        pinned = parse_ref(f"oci://{registry}/plugins/compat:v1@sha256:{hashlib.sha256(manifest).hexdigest()}")
        assert fetch_module(pinned, tmp_path / "cache").read_bytes() == wasm
