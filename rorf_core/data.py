"""Reading battle tables: prompts and the two models' scores.

A table has an ``Input`` column and one ``<model>/score`` column per model,
as in RoRF's battles datasets. It can be a local parquet, CSV or JSON Lines
file, or a Hugging Face hub dataset name; ``datasets`` reads all of them.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from rorf_core.errors import DatasetError

logger = logging.getLogger(__name__)

__all__ = [
    "Battles",
    "PROMPT_COLUMN",
    "load_battles",
    "load_prompts",
    "load_table",
    "score_columns",
]

PROMPT_COLUMN = "Input"
SCORE_SUFFIX = "/score"
_LOCAL_BUILDERS = {
    ".parquet": "parquet",
    ".csv": "csv",
    ".jsonl": "json",
    ".json": "json",
}


@attrs.frozen(kw_only=True)
class Battles:
    """Prompts with both models' scores, one entry per row, in table order."""

    prompts: list[str]
    scores_a: np.ndarray
    scores_b: np.ndarray
    model_a: str
    model_b: str
    source: str
    #: 0-based row numbers in the source table, after any dropped rows.
    rows: np.ndarray
    dropped: int = 0
    #: the group column's value per row (None where empty), if one was read.
    groups: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.prompts)

    def subset(self, index: np.ndarray) -> Battles:
        """Return the battles at positions ``index``."""
        return attrs.evolve(
            self,
            prompts=[self.prompts[i] for i in index],
            scores_a=self.scores_a[index],
            scores_b=self.scores_b[index],
            rows=self.rows[index],
            groups=None if self.groups is None else self.groups[index],
        )


def load_table(dataset: str, split: str | None = None) -> Any:
    """Read ``dataset`` (a local file or a hub dataset name) as a ``datasets.Dataset``."""
    import datasets

    path = Path(dataset)
    builder = _LOCAL_BUILDERS.get(path.suffix.lower())
    try:
        if builder is not None:
            if not path.is_file():
                raise DatasetError(f"dataset file {str(path)!r} does not exist")
            table = datasets.load_dataset(builder, data_files=str(path), split="train")
        elif path.exists():
            raise DatasetError(
                f"cannot read {str(path)!r}: use a .parquet, .csv, .jsonl or .json "
                "file, or a Hugging Face hub dataset name"
            )
        else:
            table = datasets.load_dataset(dataset, split=split or "train")
    except DatasetError:
        raise
    except Exception as error:  # datasets raises many types; name the source
        raise DatasetError(
            f"failed to read dataset {dataset!r}: {type(error).__name__}: {error}"
        ) from error
    return table


def score_columns(column_names: Sequence[str]) -> dict[str, str]:
    """Map each model name to its ``<model>/score`` column.

    Only the trailing ``/score`` is stripped, so a model name may contain ``/``.
    """
    return {
        column[: -len(SCORE_SUFFIX)]: column
        for column in column_names
        if column.endswith(SCORE_SUFFIX) and len(column) > len(SCORE_SUFFIX)
    }


def _pick_models(
    columns: dict[str, str], model_a: str | None, model_b: str | None, source: str
) -> tuple[str, str]:
    listed = ", ".join(sorted(columns.values())) or "none"
    for model in (model_a, model_b):
        if model is not None and model not in columns:
            raise DatasetError(
                f"dataset {source!r} has no score column {model + SCORE_SUFFIX!r} "
                f"for model {model!r}; score columns present: {listed}"
            )
    if model_a is not None and model_b is not None:
        if model_a == model_b:
            raise DatasetError(f"model A and model B are both {model_a!r}; name two models")
        return model_a, model_b
    if len(columns) != 2:
        raise DatasetError(
            f"dataset {source!r} has {len(columns)} score columns ({listed}); "
            "name the models with model_a and model_b (--model-a, --model-b)"
        )
    first, second = columns
    if model_a is None and model_b is None:
        return first, second
    if model_a is None:
        return (first if second == model_b else second), model_b  # type: ignore[return-value]
    return model_a, (second if first == model_a else first)


def _parse_score(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _row_problem(prompt: Any, score_a: Any, score_b: Any, names: tuple[str, str]) -> str | None:
    if not isinstance(prompt, str) or not prompt.strip():
        return f"the {PROMPT_COLUMN!r} prompt is empty or missing"
    for name, value in zip(names, (score_a, score_b)):
        if _parse_score(value) is None:
            return f"score {value!r} in column {name!r} is not a finite number"
    return None


def load_battles(
    dataset: str,
    model_a: str | None = None,
    model_b: str | None = None,
    *,
    split: str | None = None,
    drop_invalid: bool = False,
    group_column: str | None = None,
    require_group_column: bool = False,
) -> Battles:
    """Read prompts and scores from ``dataset`` and check every row.

    :param dataset: a local ``.parquet``, ``.csv``, ``.jsonl`` file or a hub
        dataset name.
    :param model_a: model A's name, as in its ``<model>/score`` column. May
        be omitted when the table has exactly two score columns.
    :param model_b: model B's name.
    :param split: the hub dataset split (default ``train``).
    :param drop_invalid: drop rows with an empty prompt or a missing or
        non-numeric score, and report how many, instead of raising.
    :param group_column: a column that groups the rows (such as an MMLU
        subject), read into ``Battles.groups`` when the table has it.
    :param require_group_column: raise if ``group_column`` is missing
        instead of leaving ``groups`` as None.
    :raises DatasetError: a column is missing, or a row is invalid and
        ``drop_invalid`` is false; the message names the row.
    """
    source = os.fspath(dataset)
    table = load_table(source, split)
    if PROMPT_COLUMN not in table.column_names:
        raise DatasetError(
            f"dataset {source!r} has no {PROMPT_COLUMN!r} column; columns present: "
            f"{', '.join(table.column_names)}"
        )
    columns = score_columns(table.column_names)
    model_a, model_b = _pick_models(columns, model_a, model_b, source)
    names = (columns[model_a], columns[model_b])
    prompts, raw_a, raw_b = table[PROMPT_COLUMN], table[names[0]], table[names[1]]
    keep: list[int] = []
    for row, (prompt, score_a, score_b) in enumerate(zip(prompts, raw_a, raw_b)):
        problem = _row_problem(prompt, score_a, score_b, names)
        if problem is None:
            keep.append(row)
        elif not drop_invalid:
            raise DatasetError(
                f"row {row} of {source!r} is invalid: {problem}. Fix the row, or "
                "pass drop_invalid=True (--drop-invalid) to skip such rows."
            )
    dropped = len(prompts) - len(keep)
    if dropped:
        logger.warning("dropped %d invalid rows of %d from %s", dropped, len(prompts), source)
    return Battles(
        prompts=[prompts[i] for i in keep],
        scores_a=np.array([_parse_score(raw_a[i]) for i in keep], dtype=np.float64),
        scores_b=np.array([_parse_score(raw_b[i]) for i in keep], dtype=np.float64),
        model_a=model_a,
        model_b=model_b,
        source=source,
        rows=np.asarray(keep, dtype=np.int64),
        dropped=dropped,
        groups=_read_groups(table, group_column, require_group_column, source, keep),
    )


def _read_groups(
    table: Any, column: str | None, required: bool, source: str, keep: list[int]
) -> np.ndarray | None:
    if column is None:
        return None
    if column not in table.column_names:
        if required:
            raise DatasetError(
                f"dataset {source!r} has no group column {column!r}; columns present: "
                f"{', '.join(table.column_names)}. Name another with --group-column, "
                "or pass --group-weight 0 to train without groups."
            )
        logger.info("dataset %s has no %r column, so no groups were read", source, column)
        return None
    values = table[column]
    groups = np.empty(len(keep), dtype=object)
    for position, row in enumerate(keep):
        value = values[row]
        groups[position] = None if value is None or str(value).strip() == "" else str(value)
    return groups


def load_prompts(dataset: str, *, split: str | None = None, drop_invalid: bool = False) -> list[str]:
    """Read the ``Input`` column of ``dataset``; score columns are not needed.

    :raises DatasetError: the column is missing, or a prompt is empty and
        ``drop_invalid`` is false; the message names the row.
    """
    source = os.fspath(dataset)
    table = load_table(source, split)
    if PROMPT_COLUMN not in table.column_names:
        raise DatasetError(
            f"dataset {source!r} has no {PROMPT_COLUMN!r} column; columns present: "
            f"{', '.join(table.column_names)}"
        )
    prompts = []
    for row, prompt in enumerate(table[PROMPT_COLUMN]):
        if isinstance(prompt, str) and prompt.strip():
            prompts.append(prompt)
        elif not drop_invalid:
            raise DatasetError(
                f"row {row} of {source!r} is invalid: the {PROMPT_COLUMN!r} prompt is "
                "empty or missing. Fix the row, or pass drop_invalid=True "
                "(--drop-invalid) to skip such rows."
            )
    if not prompts:
        raise DatasetError(f"dataset {source!r} has no prompts")
    return prompts
