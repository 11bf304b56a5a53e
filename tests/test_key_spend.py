"""SpendLedger.unseen, which every budget check calls on the request path: what this node
charged that a key read could not include (pending, or written after the read, told by
the row's charge number), summed per flush; and the spend metrics."""

from __future__ import annotations

from pathlib import Path

from routeiq.identity.database import Database
from routeiq.identity.keys import KeyStore
from routeiq.identity.spend import Charge, SpendLedger


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def charge(request_id: str, token_hash: str, cost: float, at: float, team: str = "t") -> Charge:
    return Charge(request_id, token_hash, None, team, None, "chat", "d", 1, 1, cost, at)


def test_unseen_counts_pending_and_written_after_the_read_only(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'keys.db'}", tmp_path)
    db.migrate()
    store = KeyStore(db)
    store.new_team("t")
    _, key = store.generate(team_id="t")
    clock = Clock()
    ledger = SpendLedger(db, tmp_path / "outbox.db", clock=clock)
    scope = f"key:{key.token_hash}"
    try:
        ledger.charge(charge("r1", key.token_hash, 1.0, clock.now))
        ledger.charge(charge("r1", key.token_hash, 1.0, clock.now))  # the same request: once
        assert ledger.unseen(scope, 0) == 1.0 and ledger.unseen("team:t", 0) == 1.0  # pending
        clock.now += 1
        ledger.flush()  # the key's row now counts 1 charge
        assert store.get(key.token_hash).charges == 1  # type: ignore[union-attr]
        assert ledger.unseen(scope, 0) == 1.0  # a read from before the write missed it
        assert ledger.unseen(scope, 1) == 0.0  # a read after it saw it: never counted twice
        ledger.charge(charge("r2", key.token_hash, 2.0, clock.now))
        assert ledger.unseen(scope, 1) == 2.0
        clock.now += 1
        ledger.flush()
        assert ledger.unseen(scope, 0) == 3.0 and ledger.unseen(scope, 1) == 2.0 and ledger.unseen(scope, 2) == 0.0
        assert ledger.unseen("team:t", 2) == 0.0
        clock.now += 61  # a minute on, the flushes are forgotten (every read since sees them)
        assert ledger.unseen(scope, 0) == 0.0
        assert store.get(key.token_hash).spend == 3.0  # type: ignore[union-attr]
    finally:
        ledger.close()
        db.close()


def test_unseen_sums_only_the_flushes_a_read_missed(tmp_path: Path) -> None:
    """Twenty flushes of a thousand charges: a read that saw the first ten misses the rest
    (bench/test_key_auth.py measures what a budget check costs)."""
    db = Database(f"sqlite:///{tmp_path / 'keys.db'}", tmp_path)
    db.migrate()
    store = KeyStore(db)
    _, key = store.generate()
    clock = Clock()
    ledger = SpendLedger(db, tmp_path / "outbox.db", clock=clock)
    scope = f"key:{key.token_hash}"
    try:
        for batch in range(20):
            for i in range(1000):
                ledger.charge(charge(f"r{batch}-{i}", key.token_hash, 0.001, clock.now, team=""))
            clock.now += 0.05
            ledger.flush()
        assert store.get(key.token_hash).charges == 20_000  # type: ignore[union-attr]
        assert abs(ledger.unseen(scope, 10_000) - 10 * 1000 * 0.001) < 1e-6
        assert ledger.unseen(scope, 20_000) == 0.0
    finally:
        ledger.close()
        db.close()


def test_metrics_show_spend_by_team_key_and_model_group(make_app, live, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    master = {"authorization": "Bearer sk-master-0123456789"}
    app = make_app(
        [],
        keys={"enabled": True, "master_key": "sk-master-0123456789"},
        admin={"state_dir": str(tmp_path / "state")},
        model_list=[{"model_name": "chat", "litellm_params": {"model": "openai/mock", "api_base": "embedded"}, "model_info": {"cost_per_1k_tokens": 1.0}}],
    )
    base = live(app)
    with httpx.Client(base_url=base, timeout=30, trust_env=False) as client:
        assert client.post("/team/new", json={"team_id": "search"}, headers=master).status_code == 200
        key = client.post("/key/generate", json={"key_alias": "bot", "team_id": "search"}, headers=master).json()["key"]
        chat = {"model": "chat", "messages": [{"role": "user", "content": "hi there friend"}]}  # 3 + 5 tokens
        for _ in range(2):
            assert client.post("/v1/chat/completions", json=chat, headers={"authorization": f"Bearer {key}"}).status_code == 200
        assert client.post("/v1/chat/completions", json=chat, headers={"authorization": "Bearer sk-nope"}).status_code == 401
        text = client.get("/metrics").text
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(text) for s in f.samples}
    who = (("key_alias", "bot"), ("model_group", "chat"), ("team", "search"))
    assert samples[("routeiq_key_requests_total", who)] == 2
    assert abs(samples[("routeiq_key_spend_dollars_total", who)] - 2 * 8 / 1000) < 1e-9
    assert samples[("routeiq_key_tokens_total", tuple(sorted((*who, ("kind", "prompt")))))] == 6
    assert samples[("routeiq_key_tokens_total", tuple(sorted((*who, ("kind", "completion")))))] == 10
    assert samples[("routeiq_key_refusals_total", (("code", "invalid_api_key"),))] == 1
