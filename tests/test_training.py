"""Training routers end to end on small tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import config_for, synthetic_battles, write_table
from rorf_core import Controller, DatasetError, Router
from rorf_core.training import TrainingConfig, train_router

def test_runtime_plugin_trains_and_routes(battles_file: Path, keyword_plugin, cache, tmp_path: Path) -> None:
    out = tmp_path / "router"
    result = train_router(config_for(battles_file), cache=cache, out=out, progress=False)
    assert (out / "router.json").is_file()
    assert result.train_rows == 240
    assert result.eval_rows == 60
    controller = Controller(router=str(out), threshold=0.5)
    math_rate = controller.predict_proba("math question number 1")
    law_rate = controller.predict_proba("law question number 2")
    # Model A wins math far more often in the synthetic data.
    assert math_rate > law_rate
    rates = controller.batch_calculate_win_rate(["math question", "law question", "code"])
    assert rates.shape == (3,)
    assert rates[0] == pytest.approx(math_rate, abs=0.2)


def test_saved_router_scores_like_trained(battles_file: Path, keyword_plugin, cache, tmp_path: Path) -> None:
    result = train_router(config_for(battles_file), cache=cache, out=tmp_path / "r", progress=False)
    loaded = Router.from_pretrained(tmp_path / "r")
    prompts = [f"history why {i}" for i in range(5)] + ["math code math"]
    np.testing.assert_allclose(loaded.win_rate(prompts), result.router.win_rate(prompts), atol=1e-12)
    assert loaded.training["config"]["seed"] == 0
    assert len(loaded.calibration["table"]) == 101


def test_second_run_embeds_nothing(battles_file: Path, keyword_plugin, cache) -> None:
    train_router(config_for(battles_file), cache=cache, progress=False)
    assert cache.last_stats.misses == 300
    train_router(config_for(battles_file), cache=cache, progress=False)
    assert cache.last_stats.misses == 0
    assert cache.last_stats.hits == 300


def test_missing_label_keeps_columns_aligned(tmp_path: Path, keyword_plugin, cache) -> None:
    rows = synthetic_battles(200)
    # No tie where both scored 0: label 1 never occurs in training.
    rows["weak-model/score"] = [
        1.0 if a == 0 and b == 0 else b for a, b in zip(rows["strong/model/score"], rows["weak-model/score"])
    ]
    path = write_table(tmp_path / "t.parquet", rows)
    result = train_router(config_for(path, recipe="rorf"), cache=cache, progress=False)
    scorer = result.router.scorer
    assert 1 not in scorer.classes_
    prompts = ["math question", "law question"]
    proba = scorer.predict_proba(result.router.embed(prompts))
    column_of_a_better = list(scorer.classes_).index(0)
    np.testing.assert_allclose(result.router.win_rate(prompts), proba[:, column_of_a_better])


def test_nothing_written_on_missing_column(battles_file: Path, keyword_plugin, cache, tmp_path: Path) -> None:
    out = tmp_path / "router"
    with pytest.raises(DatasetError, match="score columns present"):
        train_router(config_for(battles_file, model_a="gpt-9"), cache=cache, out=out)
    assert not out.exists()
    assert list(tmp_path.glob(".router*")) == []


def test_too_few_rows(tmp_path: Path, keyword_plugin, cache) -> None:
    path = write_table(tmp_path / "t.parquet", synthetic_battles(15))
    with pytest.raises(DatasetError, match="too few"):
        train_router(config_for(path), cache=cache)


def test_single_label_rejected(tmp_path: Path, keyword_plugin, cache) -> None:
    rows = synthetic_battles(100)
    rows["strong/model/score"] = [1.0] * 100
    rows["weak-model/score"] = [1.0] * 100
    path = write_table(tmp_path / "t.parquet", rows)
    with pytest.raises(DatasetError, match="same label"):
        train_router(config_for(path), cache=cache)


def test_eval_dataset_used_instead_of_split(tmp_path: Path, keyword_plugin, cache) -> None:
    train_path = write_table(tmp_path / "train.parquet", synthetic_battles(120, seed=1))
    eval_path = write_table(tmp_path / "eval.parquet", synthetic_battles(40, seed=2))
    result = train_router(config_for(train_path, eval_dataset=str(eval_path)), cache=cache, progress=False)
    assert (result.train_rows, result.eval_rows) == (120, 40)
    assert result.router.calibration["dataset"] == str(eval_path)


def test_eval_fraction_validated() -> None:
    with pytest.raises(ValueError, match="eval_fraction"):
        TrainingConfig(dataset="x.parquet", eval_fraction=1.0)


def test_default_recipe_is_gap_regression(battles_file: Path, keyword_plugin, cache, tmp_path: Path) -> None:
    result = train_router(config_for(battles_file), cache=cache, out=tmp_path / "r", progress=False)
    router = result.router
    assert router.label_scheme.name == "score_gap"
    assert router.scorer.is_regressor
    # The keyword embedder has 7 columns, fewer than the recipe's 32.
    assert router.embedding_columns == 7
    assert router.scorer.n_features_in_ == 7 + len(router.text_features)
    prompts = ["math question", "law question"]
    inputs = router.features(prompts, router.embed(prompts))
    # The recipe blends the forest's gain 0.7 / 0.3 with the n-gram model's.
    assert router.lexical_weight == 0.3
    assert router.lexical is not None
    gain = 0.7 * router.scorer.estimator_.predict(inputs) + 0.3 * router.lexical.predict(prompts)
    expected = 0.5 + 0.5 * np.clip(gain, -1, 1)
    np.testing.assert_allclose(router.win_rate(prompts), expected, atol=1e-6)
    loaded = Router.from_pretrained(tmp_path / "r")
    np.testing.assert_allclose(loaded.win_rate(prompts), router.win_rate(prompts), atol=1e-12)


def test_rorf_recipe_settings(battles_file: Path, keyword_plugin, cache) -> None:
    config = config_for(battles_file, recipe="rorf", scorer_params={"n_estimators": 5}).resolved()
    assert config.scorer == "random-forest"
    assert config.scorer_params == {"n_estimators": 5, "max_depth": 20, "max_features": 1.0, "random_state": 0}
    assert config.label_scheme == "rorf"
    assert config.decision_rule == "p_a_needed"
    assert config.text_features == ()


def test_mismatched_rule_and_scheme_rejected(battles_file: Path, keyword_plugin, cache) -> None:
    with pytest.raises(ValueError, match="decision rule 'p_a_needed' reads classes"):
        train_router(config_for(battles_file, decision_rule="p_a_needed"), cache=cache)
