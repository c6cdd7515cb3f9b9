"""Smoothing the score-gap training target toward each group's mean gap.

On graded data such as MMLU the gap score_A - score_B is 0 for most prompts
and +-1 for the rest, so one row carries little information. Its group (an
MMLU subject, for example) carries more: the mean gap of the group's
training rows. The default recipe trains its regressor on a mix of the
two::

    group_mean[g] = (sum of gap over g's rows + prior_rows * overall_mean)
                    / (rows in g + prior_rows)
    target = (1 - weight) * gap + weight * group_mean[group]

``prior_rows`` pulls small groups toward the overall mean, as if each group
had that many extra rows at the overall mean. Only training reads the
groups. The fitted forest routes from the prompt alone, so a router trained
this way needs no group at route time. ``docs/quality.md`` has the
measurements: a gain in cross-validation on training rows, none on the
held-out rows of the MMLU benchmark.
"""

from __future__ import annotations

import logging
from typing import Any

import attrs
import numpy as np

from rorf_core.errors import InvalidConfigError

logger = logging.getLogger(__name__)

__all__ = [
    "GroupTarget",
    "check_group_weight",
    "group_means",
    "group_metadata",
    "requested_group_target",
    "smooth_gap",
    "usable_group_target",
]

DEFAULT_PRIOR_ROWS = 20.0


def check_group_weight(value: float) -> None:
    """Raise InvalidConfigError unless ``value`` is a group weight in [0, 1]."""
    if not 0.0 <= value <= 1.0:
        raise InvalidConfigError(
            f"group_weight must be between 0 and 1, got {value!r}; "
            "0 trains on the plain score gap"
        )


def _check_weight(instance: object, attribute: object, value: float) -> None:
    check_group_weight(value)


def _check_prior(instance: object, attribute: object, value: float) -> None:
    if value < 0:
        raise InvalidConfigError(f"group prior rows must be 0 or more, got {value!r}")


@attrs.frozen(kw_only=True)
class GroupTarget:
    """How much of each row's target comes from its group's mean gap."""

    column: str
    weight: float = attrs.field(validator=_check_weight)
    prior_rows: float = attrs.field(default=DEFAULT_PRIOR_ROWS, validator=_check_prior)


def group_means(
    gap: np.ndarray, groups: np.ndarray, prior_rows: float
) -> tuple[dict[str, float], float]:
    """Return each group's shrunken mean gap and the overall mean gap.

    Rows whose group is None count toward the overall mean only.
    """
    overall = float(np.mean(gap))
    means: dict[str, float] = {}
    named = np.array([group is not None for group in groups], dtype=bool)
    for group in set(groups[named]):
        member = groups == group
        rows = float(np.count_nonzero(member))
        means[group] = (float(np.sum(gap[member])) + prior_rows * overall) / (rows + prior_rows)
    return means, overall


def smooth_gap(gap: np.ndarray, groups: np.ndarray, target: GroupTarget) -> np.ndarray:
    """Return the training target: gap mixed with its group's mean gap.

    The means come from the rows passed in, so callers pass training rows
    only. A row without a group keeps its plain gap.
    """
    gap = np.asarray(gap, dtype=np.float64)
    if len(groups) != len(gap):
        raise ValueError(f"got {len(groups)} groups for {len(gap)} rows")
    means, _ = group_means(gap, groups, target.prior_rows)
    row_means = np.array([means.get(group, np.nan) for group in groups], dtype=np.float64)
    smoothed = (1.0 - target.weight) * gap + target.weight * row_means
    return np.where(np.isnan(row_means), gap, smoothed)


def requested_group_target(
    column: str | None,
    weight: float | None,
    prior_rows: float | None,
    *,
    label_scheme: Any,
    column_named: bool,
    weight_named: bool,
) -> GroupTarget | None:
    """Return the smoothing that a training run requests, or None.

    ``column_named`` and ``weight_named`` are true where the caller set the
    column or the weight itself, not only the recipe. Then a setting that
    cannot apply is an error instead of being skipped.
    """
    weight = float(weight or 0.0)
    named = column_named or (weight_named and weight > 0.0)
    if named and not label_scheme.is_regression:
        raise InvalidConfigError(
            "group smoothing requires a regression label scheme such as 'score_gap', "
            f"got {label_scheme.name!r}; drop --group-column and --group-weight, "
            "or use --recipe default"
        )
    if column is None:
        if weight_named and weight > 0.0:
            raise InvalidConfigError(
                f"group_weight={weight} requires a group column; pass group_column "
                "(--group-column NAME)"
            )
        return None
    if weight == 0.0:
        if column_named and not weight_named:
            logger.warning(
                "group column %r is set but the group weight is 0, so the target is "
                "the plain gap; pass --group-weight to smooth it",
                column,
            )
        return None
    if not label_scheme.is_regression:
        return None
    prior = DEFAULT_PRIOR_ROWS if prior_rows is None else float(prior_rows)
    return GroupTarget(column=column, weight=weight, prior_rows=prior)


def usable_group_target(group: GroupTarget | None, groups: np.ndarray | None) -> GroupTarget | None:
    """Return ``group`` if the training rows carry groups, else None."""
    if group is None:
        return None
    if groups is None:
        logger.info("no %r groups in the training rows; training on the plain score gap", group.column)
        return None
    if all(value is None for value in groups):
        logger.warning(
            "group column %r is empty in every training row; training on the plain score gap",
            group.column,
        )
        return None
    logger.info(
        "smoothing the training target toward each %r group's mean gap (weight %.2f)",
        group.column,
        group.weight,
    )
    return group


def group_metadata(group: GroupTarget | None, groups: np.ndarray | None) -> dict[str, Any] | None:
    """Describe the smoothing applied, for the router's training metadata."""
    if group is None or groups is None:
        return None
    named = [value for value in groups if value is not None]
    return {**attrs.asdict(group), "groups": len(set(named)), "rows_with_group": len(named)}
