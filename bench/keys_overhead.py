"""Virtual keys' cost end to end, interleaved: one gateway with keys on, the same chat
pass-through with a virtual key (/v1/chat/completions, which needs one) and without
(/chat/completions, outside keys.require_on), alternated request by request so that load
from anything else on the machine hits both alike. Writes bench/results/keys.md with the
medians, the median of the paired differences, and the in-process figure of
bench/test_key_auth.py when given its pytest-benchmark JSON.

Usage: .venv/bin/python bench/keys_overhead.py [--pairs N] [--auth-json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from goals import KEY_AUTH_US  # noqa: E402  (bench/goals.py)
from run import machine  # noqa: E402
from test_llm_path import CHAT  # noqa: E402


def measure(pairs: int) -> tuple[list[float], list[float]]:
    import test_llm_path as t  # its fixtures' bodies, called as plain generators

    factory = pytest.TempPathFactory(given_basetemp=Path(tempfile.mkdtemp()), retention_count=1, retention_policy="none", trace=lambda *a: None, _ispytest=True)
    upstream_gen = t.upstream.__wrapped__()  # type: ignore[attr-defined]
    upstream = next(upstream_gen)
    gateway_gen = t.keyed_gateway.__wrapped__(upstream, factory)  # type: ignore[attr-defined]
    url, key = next(gateway_gen)
    body = {**CHAT, "model": "direct"}
    keyed, anonymous = [], []
    try:
        with httpx.Client(timeout=30, trust_env=False) as client:
            auth = {"authorization": f"Bearer {key}"}
            for _ in range(50):  # warm both paths
                client.post(f"{url}/v1/chat/completions", json=body, headers=auth)
                client.post(f"{url}/chat/completions", json=body)
            for i in range(pairs):
                order = [("k", f"{url}/v1/chat/completions", auth), ("a", f"{url}/chat/completions", None)]
                for kind, target, headers in order if i % 2 else order[::-1]:  # alternate which goes first
                    began = time.perf_counter()
                    status = client.post(target, json=body, headers=headers).status_code
                    elapsed = (time.perf_counter() - began) * 1e6
                    assert status == 200, status
                    (keyed if kind == "k" else anonymous).append(elapsed)
    finally:
        for gen in (gateway_gen, upstream_gen):
            next(gen, None)
    return keyed, anonymous


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--auth-json", type=Path, help="pytest-benchmark JSON of bench/test_key_auth.py")
    args = parser.parse_args()
    keyed, anonymous = measure(args.pairs)
    diffs = [k - a for k, a in zip(keyed, anonymous)]
    k50, a50, d50 = statistics.median(keyed), statistics.median(anonymous), statistics.median(diffs)
    extra = k50 - a50
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Virtual keys: what authentication adds to a request",
        "",
        "One gateway (`keys.enabled`, SQLite key store, default `cache_ttl_s: 1`), no plugins, the chat pass-through to the mock upstream in "
        "its own process. Authenticated: `/v1/chat/completions` with a virtual key that has a budget (30d period), rpm/tpm limits and a models "
        "list, so every check runs and every answer is charged. Unauthenticated: the same handler at `/chat/completions`, left out of "
        "`keys.require_on`. The two are alternated request by request (`bench/keys_overhead.py`).",
        "",
        f"- Machine: {machine()}; load average {os.getloadavg()[0]:.1f} at the end of the run (2 cores: other work shares them)",
        f"- Date: {stamp}",
        f"- Command: `.venv/bin/python bench/keys_overhead.py --pairs {args.pairs}`",
        "",
        "| Case | p50 (µs) | p90 (µs) | requests |",
        "| --- | ---: | ---: | ---: |",
        f"| Chat pass-through, no key needed | {a50:.1f} | {statistics.quantiles(anonymous, n=10)[-1]:.1f} | {len(anonymous)} |",
        f"| Chat pass-through with a virtual key | {k50:.1f} | {statistics.quantiles(keyed, n=10)[-1]:.1f} | {len(keyed)} |",
        "",
        f"Difference of the p50s: {extra:+.1f} µs; median of the paired differences: {d50:+.1f} µs.",
    ]
    if args.auth_json is not None:
        data = json.loads(args.auth_json.read_text())
        m = {b["name"]: b["stats"]["median"] * 1e6 / 100 for b in data["benchmarks"]}
        auth_us, noop_us = m.get("test_authenticate_cached_key_x100"), m.get("test_asyncio_noop_x100")
        if auth_us is not None and noop_us is not None:
            lines += [
                "",
                f"In process (`bench/test_key_auth.py`, pytest-benchmark): `KeyAuthenticator.authenticate` on a cached key record takes "
                f"{auth_us:.1f} µs median per request (an awaited no-op: {noop_us:.2f} µs).",
            ]
    verdict = "met" if max(extra, d50) <= KEY_AUTH_US else "NOT met"
    lines += ["", f"Target (issue #16): authenticated requests add <= {KEY_AUTH_US:.0f} µs p50 over unauthenticated ones: {verdict}."]
    out = HERE / "results" / "keys.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
