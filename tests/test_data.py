"""Reading battle tables and rejecting bad rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import synthetic_battles, write_table
from rorf_core.data import load_battles, load_prompts, score_columns
from rorf_core.errors import DatasetError


def test_model_names_keep_inner_slashes() -> None:
    columns = score_columns(["Input", "org/model-a/score", "b/score", "score", "/score"])
    assert columns == {"org/model-a": "org/model-a/score", "b": "b/score"}


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_reads_each_file_type(tmp_path: Path, suffix: str) -> None:
    path = write_table(tmp_path / f"t{suffix}", synthetic_battles(40))
    battles = load_battles(str(path), "strong/model", "weak-model")
    assert len(battles) == 40
    assert battles.model_a == "strong/model"
    assert battles.scores_a.dtype == np.float64
    assert battles.prompts[3].startswith("code question")


def test_models_inferred_from_two_columns(battles_file: Path) -> None:
    battles = load_battles(str(battles_file))
    assert (battles.model_a, battles.model_b) == ("strong/model", "weak-model")
    flipped = load_battles(str(battles_file), model_b="strong/model")
    assert flipped.model_a == "weak-model"


def test_missing_score_column_lists_existing(battles_file: Path) -> None:
    with pytest.raises(DatasetError) as caught:
        load_battles(str(battles_file), "gpt-5", "weak-model")
    message = str(caught.value)
    assert "'gpt-5/score'" in message
    assert "strong/model/score" in message
    assert "weak-model/score" in message


def test_missing_input_column(tmp_path: Path) -> None:
    path = write_table(tmp_path / "t.parquet", {"prompt": ["x"], "a/score": [1.0], "b/score": [0.0]})
    with pytest.raises(DatasetError, match="no 'Input' column"):
        load_battles(str(path))


def _rows_with(index: int, column: str, value: object) -> dict[str, list[object]]:
    rows = synthetic_battles(30)
    rows[column] = [v for v in rows[column]]
    rows[column][index] = value
    return rows


@pytest.mark.parametrize(
    ("column", "value", "fragment"),
    [
        ("Input", "   ", "empty"),
        ("Input", None, "empty"),
        ("weak-model/score", None, "None"),
        ("weak-model/score", float("nan"), "nan"),
    ],
)
def test_bad_row_named(tmp_path: Path, column: str, value: object, fragment: str) -> None:
    path = write_table(tmp_path / "t.parquet", _rows_with(7, column, value))
    with pytest.raises(DatasetError) as caught:
        load_battles(str(path), "strong/model", "weak-model")
    assert "row 7" in str(caught.value)
    assert fragment in str(caught.value)
    assert "--drop-invalid" in str(caught.value)


def test_non_numeric_score_in_csv_named(tmp_path: Path) -> None:
    rows = synthetic_battles(30)
    rows["weak-model/score"] = [str(v) for v in rows["weak-model/score"]]
    rows["weak-model/score"][12] = "high"
    path = write_table(tmp_path / "t.csv", rows)
    with pytest.raises(DatasetError, match=r"row 12 .*'high'"):
        load_battles(str(path), "strong/model", "weak-model")


def test_drop_invalid_counts_rows(tmp_path: Path) -> None:
    rows = _rows_with(3, "Input", "")
    rows["weak-model/score"][5] = None
    path = write_table(tmp_path / "t.parquet", rows)
    battles = load_battles(str(path), "strong/model", "weak-model", drop_invalid=True)
    assert len(battles) == 28
    assert battles.dropped == 2
    assert 3 not in battles.rows
    assert 5 not in battles.rows
    assert not np.isnan(battles.scores_b).any()


def test_missing_file_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        load_battles(str(tmp_path / "nope.parquet"))


def test_load_prompts_without_scores(tmp_path: Path) -> None:
    path = write_table(tmp_path / "p.jsonl", {"Input": ["a", "b"]})
    assert load_prompts(str(path)) == ["a", "b"]
