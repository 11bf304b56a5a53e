"""Offline routing evaluation: data loading, reference rows, cross-validation and the CLI."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from routeiq.strategies.base import TrainingExample
from routeiq.strategies.evaluation import DataError, cross_validate, evaluate, load_examples, main
from routeiq.strategies.registry import StrategyRegistry

TOPICS = {
    "science": ["atom", "gravity", "photon", "enzyme", "neutron", "genome", "quasar", "molecule"],
    "sports": ["goal", "striker", "tennis", "marathon", "league", "stadium", "pitcher", "referee"],
}


def row(q_id: int, query: str, results: dict[str, tuple[float, float]]) -> dict:
    return {
        "q_id": q_id,
        "query": query,
        "gold": ["x"],
        "results": [{"model": m, "performance": p, "cost": c} for m, (p, c) in results.items()],
    }


def topical_rows(n: int, seed: int) -> list[dict]:
    """'sci' is right on science, 'ball' on sports; 'big' is right on both but 5x the price."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        topic = "science" if i % 2 == 0 else "sports"
        query = f"who discovered the {' '.join(rng.sample(TOPICS[topic], 3))}?"
        rows.append(
            row(i, query, {
                "sci": (1.0 if topic == "science" else 0.0, 2.0),
                "ball": (1.0 if topic == "sports" else 0.0, 2.0),
                "big": (0.9, 10.0),
            })
        )
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_load_examples_reads_the_data_format(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [row(0, "q?", {"a": (0.5, 3.0), "b": (1.0, 7.5)})])
    (ex,) = load_examples(path)
    assert ex == TrainingExample("q?", {"a": (0.5, 3.0), "b": (1.0, 7.5)})


def test_load_examples_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(row(0, "q", {"a": (1, 1)})) + "\n" + '{"query": "no results"}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2: not a routing row"):
        load_examples(path)


def test_reference_rows_are_computed_from_train_and_scored_on_test() -> None:
    train = [TrainingExample("t1", {"a": (0.9, 5.0), "b": (0.2, 1.0)}), TrainingExample("t2", {"a": (0.7, 5.0), "b": (0.4, 1.0)})]
    test = [
        TrainingExample("x1", {"a": (0.0, 6.0), "b": (1.0, 2.0)}),
        TrainingExample("x2", {"a": (1.0, 4.0), "b": (1.0, 1.0)}),  # tie: the oracle takes the cheaper
    ]
    rows = {r["strategy"]: r for r in evaluate(train, test, StrategyRegistry(), strategies=[])}
    assert rows["best-single-model"]["model"] == "a"
    assert rows["best-single-model"]["performance"] == pytest.approx(0.5)
    assert rows["best-single-model"]["cost"] == pytest.approx(5.0)
    assert rows["cheapest"]["model"] == "b" and rows["cheapest"]["performance"] == pytest.approx(1.0)
    assert rows["random"]["performance"] == pytest.approx(0.75) and rows["random"]["cost"] == pytest.approx(3.25)
    assert rows["oracle"]["performance"] == pytest.approx(1.0) and rows["oracle"]["cost"] == pytest.approx(1.5)


def test_learned_routers_beat_every_single_model_when_topics_decide() -> None:
    train = load_rows(topical_rows(80, 1))
    test = load_rows(topical_rows(40, 2))
    rows = {r["strategy"]: r for r in evaluate(train, test, StrategyRegistry.with_builtins())}
    best = rows["best-single-model"]
    assert best["model"] == "big" and best["performance"] == pytest.approx(0.9)
    for name in ("knn", "matrix_factorization", "bradley_terry", "contextual_bandit"):
        assert rows[name]["performance"] > best["performance"], name
        assert rows[name]["cost"] < best["cost"], name
    assert rows["cheapest"]["cost"] == pytest.approx(2.0)
    assert rows["oracle"]["performance"] == pytest.approx(1.0)


def load_rows(rows: list[dict]) -> list[TrainingExample]:
    return [
        TrainingExample(r["query"], {x["model"]: (x["performance"], x["cost"]) for x in r["results"]})
        for r in rows
    ]


def test_cross_validate_covers_every_row_once_and_flags_the_winner() -> None:
    examples = load_rows(topical_rows(60, 3))
    rows = {r["strategy"]: r for r in cross_validate(examples, folds=3, seed=0, strategies=["knn", "cheapest"]) if r["kind"] == "strategy"}
    assert rows["knn"]["beats_best_single"] is True
    assert rows["cheapest"]["beats_best_single"] is False
    assert rows["knn"]["folds"] == 3 and rows["knn"]["seed"] == 0
    with pytest.raises(DataError, match="folds"):
        cross_validate(examples, folds=1)


def test_cli_train_test_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", topical_rows(80, 4))
    test = write_jsonl(tmp_path / "test.jsonl", topical_rows(30, 5))
    assert main(["--train", str(train), "--test", str(test), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    by_name = {(r["kind"], r["strategy"]): r for r in out}
    assert {r["strategy"] for r in out} >= set(StrategyRegistry.with_builtins().names()) | {"best-single-model", "random", "oracle"}
    assert ("reference", "cheapest") in by_name and ("strategy", "cheapest") in by_name
    for r in out:
        if r["kind"] != "models":
            assert isinstance(r["performance"], float) and isinstance(r["cost"], float)
    assert by_name[("strategy", "knn")]["performance"] > by_name[("reference", "random")]["performance"]
    assert by_name[("reference", "oracle")]["performance"] == pytest.approx(1.0)


def test_cli_cross_validation_table_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_jsonl(tmp_path / "all.jsonl", topical_rows(60, 6))
    assert main(["--data", str(data), "--folds", "3", "--seed", "1", "--strategies", "knn,cheapest"]) == 0
    table = capsys.readouterr().out
    assert "knn" in table and "oracle" in table and "better quality at <= its cost" in table
    assert main(["--data", str(data), "--folds", "3", "--json", "--strategies", "cheapest"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["strategy"] for r in rows if r["kind"] == "strategy"] == ["cheapest"]
    assert all(r["folds"] == 3 for r in rows)


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--train", "only-train.jsonl"])
    assert exit_.value.code == 2
    assert main(["--data", str(tmp_path / "missing.jsonl")]) == 2
    assert "missing.jsonl" in capsys.readouterr().err
    data = write_jsonl(tmp_path / "d.jsonl", topical_rows(10, 0))
    assert main(["--data", str(data), "--strategies", "nope"]) == 2
    assert "unknown routing strategy 'nope'" in capsys.readouterr().err


def test_cli_plot_writes_a_png_or_names_how_to_get_matplotlib(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    data = write_jsonl(tmp_path / "all.jsonl", topical_rows(60, 7))
    png = tmp_path / "frontier.png"
    code = main(["--data", str(data), "--folds", "3", "--strategies", "knn,cheapest", "--plot", str(png)])
    if importlib.util.find_spec("matplotlib") is None:
        assert code == 2 and "requirements-bench.lock" in capsys.readouterr().err
        assert not png.exists()
    else:
        assert code == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_frontier_and_bootstrap_rows(tmp_path: Path) -> None:
    examples = load_rows(topical_rows(90, 8))
    rows = {r["strategy"]: r for r in cross_validate(examples, folds=3, seed=0, strategies=["knn"], bootstrap=200)}
    knn = rows["knn"]
    lo, hi = knn["d_performance_ci"]
    assert lo - 1e-9 <= knn["d_performance"] <= hi + 1e-9 and knn["verdict"] == "better quality at <= its cost"
    pareto = knn["frontier"]["pareto"]
    assert all(a[0] <= b[0] and a[1] < b[1] for a, b in zip(pareto, pareto[1:]))  # cost and quality rise together
    assert 0 < knn["frontier"]["auc"] <= 1.0
    assert knn["frontier_crosses_best_at_cost"] <= rows["best-single-model"]["cost"]
