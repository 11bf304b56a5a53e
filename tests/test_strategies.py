"""Native routing strategies: baselines, learned routers, registry, artifacts, custom loading."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest

from routeiq.strategies.artifacts import ArtifactError, load_artifact, save_artifact
from routeiq.strategies.base import Decision, Deployment, Outcome, RoutingRequest, RoutingStrategy, TrainingExample
from routeiq.strategies.custom import CustomStrategyError, load_custom_strategies
from routeiq.strategies.registry import BUILTINS, StrategyRegistry, UnknownStrategyError, create, names

LEARNED = ("knn", "matrix_factorization", "bradley_terry", "contextual_bandit", "quality_predictor")
MATH = ["integral", "derivative", "matrix", "equation", "algebra", "polynomial", "theorem", "prime"]
HISTORY = ["empire", "war", "king", "treaty", "revolution", "dynasty", "battle", "pharaoh"]


def topical_examples(n: int, seed: int = 0) -> list[TrainingExample]:
    """'mathbot' answers maths, 'histbot' answers history, 'cheapbot' is cheap and so-so."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        topic = i % 2
        words = rng.sample(MATH if topic == 0 else HISTORY, 3)
        query = f"{rng.choice(['what is the', 'explain the', 'tell me about the'])} {' '.join(words)}?"
        out.append(
            TrainingExample(
                query=query,
                results={
                    "mathbot": (1.0 if topic == 0 else 0.1, 10.0),
                    "histbot": (1.0 if topic == 1 else 0.1, 10.0),
                    "cheapbot": (0.3, 1.0),
                },
            )
        )
    return out


def deps(*names_: str, **kw: float) -> list[Deployment]:
    return [Deployment(id=f"{n}#0", model=n, provider_model=n, **kw) for n in names_]  # type: ignore[arg-type]


def req(query: str = "hello", i: int = 0) -> RoutingRequest:
    return RoutingRequest(request_id=f"r{i}", model="auto", query=query)


def outcome(decision: Decision, deployment: Deployment, *, query: str = "hello", success: bool = True, latency: float = 0.1) -> Outcome:
    return Outcome(req(query), decision, deployment, success, latency)


# -- registry -----------------------------------------------------------------------------------


def test_registry_lists_and_creates_every_builtin_with_options() -> None:
    assert set(names()) == {
        "weighted_round_robin", "least_latency", "cheapest", "cost_capped_quality", *LEARNED,
    }
    s = create("least_latency", alpha=0.5)
    assert s.name == "least_latency" and s.options == {"alpha": 0.5}
    reg = StrategyRegistry.with_builtins()
    assert reg.names() == names()
    with pytest.raises(UnknownStrategyError, match="unknown routing strategy 'nope'"):
        reg.create("nope")


def test_registry_instances_are_independent_and_refuse_duplicate_names() -> None:
    class Mine(RoutingStrategy):
        name = "mine"

        def choose(self, request: RoutingRequest, candidates):  # type: ignore[no-untyped-def]
            return Decision(tuple(candidates), self.name)

    a, b = StrategyRegistry.with_builtins(), StrategyRegistry.with_builtins()
    a.register(Mine)
    assert "mine" in a and "mine" not in b and "mine" not in BUILTINS
    assert isinstance(a.create("mine"), Mine)

    class Clash(Mine):
        name = "knn"

    with pytest.raises(ValueError, match="'knn' is already registered"):
        a.register(Clash)


# -- baselines ----------------------------------------------------------------------------------


def test_weighted_round_robin_is_proportional_and_interleaved() -> None:
    s = create("weighted_round_robin")
    cands = [
        Deployment("a", "g", weight=5.0),
        Deployment("b", "g", weight=1.0),
        Deployment("c", "g", weight=1.0),
    ]
    picks = [s.choose(req(), cands).ranked[0].id for _ in range(70)]
    assert Counter(picks) == {"a": 50, "b": 10, "c": 10}
    assert picks[:7] == ["a", "a", "b", "a", "c", "a", "a"]  # smooth: the light ones are spread out
    d = s.choose(req(), cands)
    assert sorted(x.id for x in d.ranked) == ["a", "b", "c"]  # all candidates are still ranked


def test_weighted_round_robin_zero_weights_round_robins() -> None:
    s = create("weighted_round_robin")
    cands = [Deployment(x, "g", weight=0.0) for x in "xyz"]
    assert [s.choose(req(), cands).ranked[0].id for _ in range(6)] == list("xyzxyz")


def test_least_latency_explores_unknown_then_prefers_the_faster_ewma() -> None:
    s = create("least_latency", alpha=0.5)
    fast, slow, new = Deployment("fast", "g"), Deployment("slow", "g"), Deployment("new", "g")
    d = s.choose(req(), [slow, fast])
    s.observe(outcome(d, slow, latency=2.0))
    s.observe(outcome(d, fast, latency=0.2))
    assert [x.id for x in s.choose(req(), [slow, fast]).ranked] == ["fast", "slow"]
    assert s.choose(req(), [slow, fast, new]).ranked[0].id == "new"  # never measured: try it
    # EWMA, not last sample: one quick reply does not outweigh a slow history at alpha=0.5
    for _ in range(3):
        s.observe(outcome(d, slow, latency=4.0))
    s.observe(outcome(d, slow, latency=0.1))
    assert s.choose(req(), [slow, fast]).ranked[0].id == "fast"
    assert s.ewma["slow"] == pytest.approx(0.5 * 0.1 + 0.5 * (0.5 * 4.0 + 0.5 * (0.5 * 4.0 + 0.5 * (0.5 * 4.0 + 0.5 * 2.0))))
    # a fast failure counts as the failure penalty, so it is not mistaken for speed
    s.observe(outcome(d, fast, latency=0.01, success=False))
    assert s.choose(req(), [slow, fast]).ranked[0].id == "slow"


def test_least_latency_rejects_bad_alpha() -> None:
    with pytest.raises(ValueError, match="alpha"):
        create("least_latency", alpha=0.0)


def test_cheapest_uses_config_price_then_learned_cost() -> None:
    s = create("cheapest")
    cands = [
        Deployment("m1", "mathbot", "mathbot", cost_per_1k_tokens=0.5),
        Deployment("m2", "cheapbot", "cheapbot", cost_per_1k_tokens=3.0),
        Deployment("m3", "histbot", "histbot", cost_per_1k_tokens=1.0),
    ]
    assert [d.id for d in s.choose(req(), cands).ranked] == ["m1", "m3", "m2"]
    s.fit(topical_examples(20))  # learned: cheapbot costs 1, the others 10
    assert s.choose(req(), cands).ranked[0].id == "m2"
    other = cands + [Deployment("x", "unknown-model", cost_per_1k_tokens=0.1)]
    assert s.choose(req(), other).ranked[0].id == "x"  # not all learned: config prices, never mixed units


def test_cost_capped_quality_respects_the_cap_and_falls_back_to_cheapest() -> None:
    cands = [
        Deployment("best", "g", quality=0.9, cost_per_1k_tokens=10.0),
        Deployment("good", "g", quality=0.7, cost_per_1k_tokens=4.0),
        Deployment("ok", "g", quality=0.5, cost_per_1k_tokens=1.0),
    ]
    assert create("cost_capped_quality").choose(req(), cands).ranked[0].id == "best"  # no cap
    capped = create("cost_capped_quality", max_cost=5.0).choose(req(), cands)
    assert [d.id for d in capped.ranked] == ["good", "ok", "best"]
    assert all(d.cost_per_1k_tokens <= 5.0 for d in capped.ranked[:2])
    none_fit = create("cost_capped_quality", max_cost=0.5).choose(req(), cands)
    assert [d.id for d in none_fit.ranked] == ["ok", "good", "best"]


# -- learned strategies -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fitted() -> dict[str, RoutingStrategy]:
    train = topical_examples(80)
    out = {}
    for name in LEARNED:
        s = create(name)
        s.fit(train)
        out[name] = s
    return out


@pytest.mark.parametrize("name", LEARNED)
def test_learned_strategy_routes_unseen_queries_by_topic(fitted: dict[str, RoutingStrategy], name: str) -> None:
    s = fitted[name]
    cands = deps("cheapbot", "histbot", "mathbot")
    # word combinations never seen in training
    math_q = "explain the prime polynomial theorem?"
    hist_q = "tell me about the pharaoh dynasty treaty?"
    assert s.choose(req(math_q), cands).ranked[0].model == "mathbot"
    assert s.choose(req(hist_q), cands).ranked[0].model == "histbot"
    d = s.choose(req(math_q), cands)
    assert set(d.scores) == {c.id for c in cands} and len(d.ranked) == 3


@pytest.mark.parametrize("name", LEARNED)
def test_learned_strategy_maps_provider_model_and_gives_unknown_a_neutral_prior(fitted: dict[str, RoutingStrategy], name: str) -> None:
    s = fitted[name]
    cands = [
        Deployment("a", "group-math", provider_model="mathbot"),
        Deployment("b", "group-hist", provider_model="histbot"),
        Deployment("z", "never-seen", provider_model="never-seen"),
    ]
    d = s.choose(req("what is the matrix integral equation?"), cands)
    assert [x.id for x in d.ranked] == ["a", "z", "b"]  # unknown sits between the learned good and bad


@pytest.mark.parametrize("name", LEARNED)
def test_learned_state_round_trips_through_an_artifact(fitted: dict[str, RoutingStrategy], name: str, tmp_path: Path) -> None:
    s = fitted[name]
    path = tmp_path / f"{name}.json"
    digest = save_artifact(s, path)
    doc = json.loads(path.read_text())
    assert doc["name"] == name and doc["sha256"] == digest and doc["version"] == 1 and doc["created"]
    loaded = load_artifact(path, StrategyRegistry.with_builtins())
    assert type(loaded) is type(s)
    cands = deps("cheapbot", "histbot", "mathbot")
    for q in ("explain the prime matrix?", "tell me about the king battle?", "something else entirely"):
        a, b = s.choose(req(q), cands), loaded.choose(req(q), cands)
        assert [x.id for x in a.ranked] == [x.id for x in b.ranked]
        assert a.scores == pytest.approx(b.scores)


def test_tampered_artifact_is_refused_naming_file_and_hashes(fitted: dict[str, RoutingStrategy], tmp_path: Path) -> None:
    path = tmp_path / "mf.json"
    digest = save_artifact(fitted["matrix_factorization"], path)
    doc = json.loads(path.read_text())
    doc["state"]["default"] = (doc["state"]["default"] + 1) % 3  # a one-number change
    path.write_text(json.dumps(doc))
    with pytest.raises(ArtifactError) as err:
        load_artifact(path, StrategyRegistry.with_builtins())
    msg = str(err.value)
    assert str(path) in msg and f"expected {digest}" in msg and "actual " in msg
    actual = msg.split("actual ")[1].split(";")[0]
    assert len(actual) == 64 and actual != digest


def test_artifact_of_unregistered_strategy_is_refused(fitted: dict[str, RoutingStrategy], tmp_path: Path) -> None:
    path = tmp_path / "knn.json"
    save_artifact(fitted["knn"], path)
    with pytest.raises(ArtifactError, match="'knn' is not registered"):
        load_artifact(path, StrategyRegistry())


def test_cost_tradeoff_prefers_cheap_model_when_quality_is_equal() -> None:
    # every model equally good: a learned router must pick the cheapest
    train = [
        TrainingExample(f"question number {i} about {w}", {"big": (0.8, 50.0), "small": (0.8, 2.0)})
        for i, w in enumerate(MATH * 5)
    ]
    for name in ("knn", "matrix_factorization"):
        s = create(name)
        s.fit(train)
        assert s.choose(req("question about algebra"), deps("big", "small")).ranked[0].model == "small"


def test_bandit_feedback_changes_future_choices() -> None:
    s = create("contextual_bandit")
    train = [TrainingExample(f"tell me about {w}", {"a": (0.6, 1.0), "b": (0.5, 1.0)}) for w in MATH + HISTORY]
    s.fit(train)
    cands = deps("a", "b")
    q = "tell me about the derivative"
    first = s.choose(req(q), cands)
    assert first.ranked[0].model == "a"
    for i in range(30):
        d = s.choose(req(q, i), cands)
        chosen = d.ranked[0]
        s.feedback(Outcome(req(q, i), d, chosen, True, 0.1), 0.0 if chosen.model == "a" else 1.0)
    assert s.choose(req(q), cands).ranked[0].model == "b"


def test_bandit_learns_a_deployment_it_never_saw_in_training() -> None:
    s = create("contextual_bandit")
    s.fit([TrainingExample(f"tell me about {w}", {"a": (0.5, 1.0)}) for w in MATH])
    cands = [Deployment("a#0", "a"), Deployment("n#0", "newcomer")]
    q = "tell me about the theorem"
    before = s.choose(req(q), cands).scores["n#0"]
    for i in range(20):
        d = s.choose(req(q, i), cands)
        s.feedback(Outcome(req(q, i), d, cands[1], True, 0.1), 1.0)
    after = s.choose(req(q), cands)
    assert after.scores["n#0"] > before
    assert after.ranked[0].id == "n#0"
    # a failed call counts as reward 0 and pushes it back down
    for i in range(40):
        s.observe(Outcome(req(q, i), after, cands[1], False, 5.0))
    assert s.choose(req(q), cands).ranked[0].id == "a#0"


@pytest.mark.parametrize("name", ("knn", "matrix_factorization", "bradley_terry"))
def test_untrained_learned_strategy_ranks_by_the_configured_quality_prior(name: str) -> None:
    cands = [
        Deployment("lo", "g", quality=0.2, cost_per_1k_tokens=1.0),
        Deployment("hi", "g", quality=0.9, cost_per_1k_tokens=5.0),
        Deployment("hi-cheap", "g", quality=0.9, cost_per_1k_tokens=2.0),
    ]
    assert [d.id for d in create(name).choose(req(), cands).ranked] == ["hi-cheap", "hi", "lo"]
    with pytest.raises(RuntimeError, match="before fit"):
        create(name).predict("q")


def test_cold_bandit_explores_then_learns_from_feedback_alone(tmp_path: Path) -> None:
    s = create("contextual_bandit")  # no fit, no artifact
    # one model group served by three provider models: each gets its own arm
    cands = [Deployment(f"{m}#0", "chat", provider_model=m) for m in ("a", "b", "c")]
    picks = []
    for i in range(60):
        q = f"question number {i % 5}"
        d = s.choose(req(q, i), cands)
        picks.append(d.ranked[0].provider_model)
        s.feedback(Outcome(req(q, i), d, d.ranked[0], True, 0.1), 1.0 if d.ranked[0].provider_model == "c" else 0.0)
    assert {"a", "b", "c"} <= set(picks[:10])  # untried arms are optimistic: each gets tried
    assert picks[-20:].count("c") >= 18
    # what it learned online survives an artifact round trip
    path = tmp_path / "bandit.json"
    save_artifact(s, path)
    loaded = load_artifact(path, StrategyRegistry.with_builtins())
    assert loaded.choose(req("question number 1"), cands).ranked[0].provider_model == "c"
    empty = tmp_path / "empty.json"
    save_artifact(create("contextual_bandit"), empty)
    cold = load_artifact(empty, StrategyRegistry.with_builtins()).choose(req(), cands)
    assert sorted(d.id for d in cold.ranked) == ["a#0", "b#0", "c#0"]


# -- custom strategies --------------------------------------------------------------------------

GOOD = '''
from routeiq.strategies.base import Decision, RoutingStrategy

class Reverse(RoutingStrategy):
    name = "reverse"

    def choose(self, request, candidates):
        return Decision(tuple(reversed(candidates)), self.name)
'''


def write(directory: Path, filename: str, body: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / filename
    path.write_text(body)
    return path


def test_custom_strategy_is_loaded_into_the_given_registry_only(tmp_path: Path) -> None:
    import sys

    before = list(sys.path)
    d = tmp_path / "custom_routers"
    write(d, "reverse.py", GOOD)
    reg = StrategyRegistry.with_builtins()
    loaded = load_custom_strategies(d, reg)
    assert [c.name for c in loaded] == ["reverse"]
    s = reg.create("reverse", flavour="x")
    assert s.options == {"flavour": "x"}
    assert [x.id for x in s.choose(req(), deps("a", "b")).ranked] == ["b#0", "a#0"]
    assert "reverse" not in StrategyRegistry.with_builtins() and sys.path == before


BAD_CASES = {
    "no_name": ("class NoName(RoutingStrategy):\n    def choose(self, request, candidates):\n        return None\n", "NoName", "non-empty str"),
    "empty_name": ("class Empty(RoutingStrategy):\n    name = ''\n    def choose(self, request, candidates):\n        return None\n", "Empty", "non-empty str"),
    "int_name": ("class IntName(RoutingStrategy):\n    name = 3\n    def choose(self, request, candidates):\n        return None\n", "IntName", "non-empty str"),
    "clash": ("class Fake(RoutingStrategy):\n    name = 'knn'\n    def choose(self, request, candidates):\n        return None\n", "Fake", "clashes with the built-in"),
    "no_choose": ("class Lazy(RoutingStrategy):\n    name = 'lazy'\n", "Lazy", "does not implement choose"),
    "arity_short": ("class Short(RoutingStrategy):\n    name = 'short'\n    def choose(self, request):\n        return None\n", "Short", "choose must take (self, request, candidates)"),
    "arity_long": ("class Long(RoutingStrategy):\n    name = 'long'\n    def choose(self, request, candidates, extra):\n        return None\n", "Long", "choose must take (self, request, candidates)"),
    "init": ("class Rigid(RoutingStrategy):\n    name = 'rigid'\n    def __init__(self, x=1):\n        super().__init__()\n    def choose(self, request, candidates):\n        return None\n", "Rigid", "**options"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_malformed_custom_strategy_is_refused_naming_file_class_and_problem(tmp_path: Path, case: str) -> None:
    body, cls, problem = BAD_CASES[case]
    d = tmp_path / "custom_routers"
    path = write(d, f"{case}.py", "from routeiq.strategies.base import RoutingStrategy\n\n" + body)
    reg = StrategyRegistry.with_builtins()
    with pytest.raises(CustomStrategyError) as err:
        load_custom_strategies(d, reg)
    msg = str(err.value)
    assert str(path) in msg and f"class {cls}" in msg and problem in msg
    assert reg.names() == names()  # nothing half-registered


@pytest.mark.parametrize(
    ("body", "exc"),
    [("raise RuntimeError('boom at import')\n", "RuntimeError: boom at import"), ("def broken(:\n", "SyntaxError")],
)
def test_custom_file_that_fails_to_import_names_file_and_exception(tmp_path: Path, body: str, exc: str) -> None:
    d = tmp_path / "custom_routers"
    path = write(d, "broken.py", body)
    with pytest.raises(CustomStrategyError) as err:
        load_custom_strategies(d, StrategyRegistry.with_builtins())
    assert str(path) in str(err.value) and "import failed" in str(err.value) and exc in str(err.value)


def test_two_custom_files_with_the_same_name_clash(tmp_path: Path) -> None:
    d = tmp_path / "custom_routers"
    write(d, "a.py", GOOD)
    write(d, "b.py", GOOD.replace("class Reverse", "class Reverse2"))
    reg = StrategyRegistry.with_builtins()
    with pytest.raises(CustomStrategyError, match=r"b\.py: class Reverse2: name 'reverse' is already used by Reverse"):
        load_custom_strategies(d, reg)
    assert "reverse" not in reg  # all or nothing: a.py's valid class is not registered either
