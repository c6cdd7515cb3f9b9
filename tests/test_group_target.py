"""Smoothing the score-gap target toward group means, and its use in training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import config_for, synthetic_battles, write_table
from rorf_core import DatasetError, InvalidConfigError
from rorf_core import training as training_module
from rorf_core.data import load_battles
from rorf_core.group_target import GroupTarget, group_means, smooth_gap
from rorf_core.training import TrainingConfig, held_out_positions, train_router

def test_group_means_shrink_toward_overall_mean() -> None:
    gap = np.array([1.0, 0.0, -1.0, 1.0])
    groups = np.array(["a", "a", "b", None], dtype=object)
    means, overall = group_means(gap, groups, prior_rows=2.0)
    assert overall == pytest.approx(0.25)
    # Two prior rows at the overall mean join each group's own rows.
    assert means == pytest.approx({"a": (1.0 + 0.0 + 2 * 0.25) / 4, "b": (-1.0 + 2 * 0.25) / 3})


def test_smooth_gap_mixes_row_and_group() -> None:
    gap = np.array([1.0, 0.0, -1.0, 1.0])
    groups = np.array(["a", "a", "b", None], dtype=object)
    target = smooth_gap(gap, groups, GroupTarget(column="g", weight=0.5, prior_rows=2.0))
    mean_a, mean_b = 1.5 / 4, -0.5 / 3
    # The row without a group keeps its own gap.
    expected = [0.5 + 0.5 * mean_a, 0.5 * mean_a, -0.5 + 0.5 * mean_b, 1.0]
    np.testing.assert_allclose(target, expected)
    whole = smooth_gap(gap, groups, GroupTarget(column="g", weight=1.0, prior_rows=0.0))
    np.testing.assert_allclose(whole, [0.5, 0.5, -1.0, 1.0])


def test_smooth_gap_rejects_misaligned_groups() -> None:
    with pytest.raises(ValueError, match="3 groups for 2 rows"):
        smooth_gap(np.zeros(2), np.array(["a", "b", "c"], dtype=object), GroupTarget(column="g", weight=0.5))


@pytest.mark.parametrize("weight", [-0.1, 1.5])
def test_weight_outside_range_rejected(weight: float) -> None:
    with pytest.raises(ValueError, match=f"got {weight}"):
        GroupTarget(column="g", weight=weight)
    with pytest.raises(ValueError, match="group_weight must be between 0 and 1"):
        TrainingConfig(dataset="x.parquet", group_weight=weight)


def grouped_table(tmp_path: Path, column: str = "subject", count: int = 300) -> tuple[Path, dict[str, Any]]:
    rows = synthetic_battles(count)
    rows[column] = [prompt.split()[0] for prompt in rows["Input"]]
    return write_table(tmp_path / "grouped.parquet", rows), rows


def test_groups_stay_aligned_after_dropped_rows(tmp_path: Path) -> None:
    rows = synthetic_battles(12)
    rows["subject"] = [f"s{index}" for index in range(12)]
    rows["Input"][3] = ""
    rows["subject"][5] = None
    path = write_table(tmp_path / "t.parquet", rows)
    battles = load_battles(str(path), drop_invalid=True, group_column="subject")
    expected = [f"s{index}" if index != 5 else None for index in range(12) if index != 3]
    assert battles.groups.tolist() == expected
    assert battles.subset(np.array([0, 4])).groups.tolist() == ["s0", None]


def test_missing_group_column_named_in_error(tmp_path: Path) -> None:
    path = write_table(tmp_path / "t.parquet", synthetic_battles(20))
    with pytest.raises(DatasetError, match="no group column 'topic'; columns present: Input"):
        load_battles(str(path), group_column="topic", require_group_column=True)
    assert load_battles(str(path), group_column="topic").groups is None


def test_default_recipe_uses_subject_column(tmp_path: Path, keyword_plugin, cache) -> None:
    path, _ = grouped_table(tmp_path)
    result = train_router(config_for(path), cache=cache, progress=False)
    applied = result.router.training["group_target"]
    assert applied == {"column": "subject", "weight": 0.5, "prior_rows": 20.0, "groups": 4, "rows_with_group": 240}
    assert result.router.training["config"]["group_column"] == "subject"


def test_default_recipe_without_subject_trains_on_gap(battles_file: Path, keyword_plugin, cache) -> None:
    result = train_router(config_for(battles_file), cache=cache, progress=False)
    assert result.router.training["group_target"] is None
    assert result.router.training["config"]["group_weight"] == 0.0


@pytest.mark.parametrize("weight", [None, 0.0, 0.5])
def test_named_column_must_exist(battles_file: Path, keyword_plugin, cache, weight: float | None) -> None:
    config = config_for(battles_file, group_column="topic", group_weight=weight)
    with pytest.raises(DatasetError, match="no group column 'topic'"):
        train_router(config, cache=cache, progress=False)


def test_group_error_is_rorf_error(tmp_path: Path, keyword_plugin, cache) -> None:
    path, _ = grouped_table(tmp_path)
    with pytest.raises(InvalidConfigError, match="got 'rorf'"):
        train_router(config_for(path, recipe="rorf", group_column="subject"), cache=cache)


def test_group_options_require_regression(tmp_path: Path, keyword_plugin, cache) -> None:
    path, _ = grouped_table(tmp_path)
    with pytest.raises(ValueError, match="requires a regression label scheme"):
        train_router(config_for(path, recipe="rorf", group_column="subject"), cache=cache)
    with pytest.raises(ValueError, match="requires a regression label scheme"):
        train_router(config_for(path, recipe="rorf", group_weight=0.5), cache=cache)


def test_group_weight_requires_column(tmp_path: Path, keyword_plugin, cache) -> None:
    path, _ = grouped_table(tmp_path)
    # RoRF's recipe names no group column, even when switched to regression.
    regression = {
        "recipe": "rorf",
        "label_scheme": "score_gap",
        "decision_rule": "predicted_gain",
        "scorer": "extra-trees-regressor",
    }
    with pytest.raises(ValueError, match="requires a group column"):
        train_router(config_for(path, group_weight=0.5, **regression), cache=cache)


def test_group_weight_zero_turns_smoothing_off(tmp_path: Path, keyword_plugin, cache) -> None:
    path, _ = grouped_table(tmp_path)
    result = train_router(config_for(path, group_weight=0.0), cache=cache, progress=False)
    assert result.router.training["group_target"] is None


def spy_on_smoothing(monkeypatch: pytest.MonkeyPatch) -> list[np.ndarray]:
    """Record the groups of every smooth_gap call made by training."""
    seen: list[np.ndarray] = []
    real = training_module.smooth_gap

    def recording(gap: np.ndarray, groups: np.ndarray, target: GroupTarget) -> np.ndarray:
        seen.append(np.asarray(groups))
        return real(gap, groups, target)

    monkeypatch.setattr(training_module, "smooth_gap", recording)
    return seen


@pytest.mark.parametrize("search", [False, True])
def test_group_means_never_read_held_out_rows(
    tmp_path: Path, keyword_plugin, cache, monkeypatch: pytest.MonkeyPatch, search: bool
) -> None:
    path, rows = grouped_table(tmp_path)
    held_out = held_out_positions(300, 0.2, 0)
    # A group that only held-out rows carry: no mean may ever include it.
    rows["subject"] = ["held-out" if i in set(held_out) else s for i, s in enumerate(rows["subject"])]
    write_table(path, rows)
    seen = spy_on_smoothing(monkeypatch)
    budget = 60.0 if search else None
    result = train_router(config_for(path), cache=cache, progress=False, search_budget=budget)
    assert seen, "training never smoothed the target"
    assert all("held-out" not in set(groups.tolist()) for groups in seen)
    # The final fit's target covers all 240 training rows; search folds fewer.
    assert len(seen[-1]) == result.train_rows == 240
    if search:
        assert len(seen) > 1 and all(len(groups) < 240 for groups in seen[:-1])
        weights = {trial["settings"]["group_weight"] for trial in result.router.training["search"]["trials"]}
        assert weights == {0.0, 0.5}
