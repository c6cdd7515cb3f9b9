"""Settings search: cross-validation on training rows only."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from conftest import synthetic_battles, write_table
from rorf_core.search import candidate_settings, search_settings
from rorf_core.training import TrainingConfig, train_router


def test_candidates_start_with_recipe_settings() -> None:
    start = {"min_samples_leaf": 10, "embedding_columns": 32}
    candidates = candidate_settings(start, dimension=20)
    assert candidates[0] == start
    assert all(c["embedding_columns"] <= 32 for c in candidates)
    assert {"min_samples_leaf": 40, "embedding_columns": 20} in candidates
    assert len(candidates) == len({tuple(sorted(c.items())) for c in candidates})


def test_search_picks_best_cv_candidate() -> None:
    rng = np.random.default_rng(0)
    scores_a = (rng.random(300) < 0.8).astype(float)
    scores_b = (rng.random(300) < 0.5).astype(float)
    gain = scores_a - scores_b

    def fit_and_score(settings, fit_rows, score_rows):
        # "good" scores rows by their true gain plus noise. "bad" uses noise alone.
        noise = rng.random(score_rows.size)
        return gain[score_rows] + noise if settings["name"] == "good" else noise

    result = search_settings(
        fit_and_score, scores_a, scores_b, [{"name": "bad"}, {"name": "good"}], budget_seconds=60, seed=0
    )
    assert result.best == {"name": "good"}
    assert len(result.trials) == 2
    assert result.trials[1].cv_apgr > result.trials[0].cv_apgr


def test_search_stops_at_budget() -> None:
    calls = []

    def fit_and_score(settings, fit_rows, score_rows):
        calls.append(settings["name"])
        return np.zeros(score_rows.size)

    scores = np.array([1.0, 0.0] * 30)
    result = search_settings(
        fit_and_score, scores, 1 - scores, [{"name": 1}, {"name": 2}], budget_seconds=0, seed=0
    )
    assert set(calls) == {1}
    assert result.skipped == 1


def test_held_out_rows_never_reach_search(tmp_path: Path, keyword_plugin, cache) -> None:
    train_path = write_table(tmp_path / "train.parquet", synthetic_battles(200, seed=3))
    first_eval = write_table(tmp_path / "eval1.parquet", synthetic_battles(60, seed=4))
    flipped = synthetic_battles(60, seed=5)
    flipped["strong/model/score"], flipped["weak-model/score"] = (
        flipped["weak-model/score"],
        flipped["strong/model/score"],
    )
    second_eval = write_table(tmp_path / "eval2.parquet", flipped)
    results = []
    for eval_path in (first_eval, second_eval):
        config = TrainingConfig(
            dataset=str(train_path),
            eval_dataset=str(eval_path),
            embedder="keyword-test",
            scorer_params={"n_estimators": 10},
        )
        results.append(train_router(config, cache=cache, progress=False, search_budget=600))
    trials = [[(t.settings, t.cv_apgr) for t in r.search.trials] for r in results]
    assert trials[0] == trials[1]
    assert results[0].search.best == results[1].search.best
    # The held-out rows differ, so the reports on them do differ.
    apgr = [r.report.router_metrics_dict("router")["apgr"] for r in results]
    assert apgr[0] != apgr[1]
    saved = results[0].router.training["search"]
    assert saved["best"] == results[0].search.best
