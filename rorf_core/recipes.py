"""Named training recipes: label scheme, decision rule, scorer and features.

``default`` is what new routers use. It was chosen by cross-validation on
the training rows of the shared MMLU data (GPT-4 against Mixtral, wordllama
embeddings); ``docs/quality.md`` has the ablation. ``rorf`` is the original
RoRF recipe, which the pre-trained RoRF routers on the hub use.
"""

from __future__ import annotations

from typing import Any

import attrs

from rorf_core.features import DEFAULT_TEXT_FEATURES
from rorf_core.group_target import DEFAULT_PRIOR_ROWS
from rorf_core.lexical import DEFAULT_ALPHA

__all__ = ["Recipe", "RECIPES", "get_recipe", "DEFAULT_RECIPE"]

DEFAULT_RECIPE = "default"


@attrs.frozen(kw_only=True)
class Recipe:
    """Settings that a training run uses unless it overrides them."""

    name: str
    description: str
    label_scheme: str
    decision_rule: str
    scorer: str
    scorer_params: dict[str, Any] = attrs.field(factory=dict)
    #: leading embedding columns fed to the scorer; None feeds all of them.
    embedding_columns: int | None = None
    text_features: tuple[str, ...] = ()
    #: column whose per-group mean gap smooths the regression target, used
    #: when the training table has it (see rorf_core.group_target).
    group_column: str | None = None
    #: share of the target taken from the group's mean gap; 0 turns it off.
    group_weight: float = 0.0
    group_prior_rows: float = DEFAULT_PRIOR_ROWS
    #: share of the predicted gain taken from the n-gram ridge model
    #: (rorf_core.lexical); 0 leaves it out. Regression recipes only.
    lexical_weight: float = 0.0
    lexical_alpha: float = DEFAULT_ALPHA


RECIPES: dict[str, Recipe] = {
    "default": Recipe(
        name="default",
        description=(
            "extra-trees regressor on score_A - score_B, smoothed toward the "
            "subject's mean gap when the table has a 'subject' column, over the "
            "first 32 embedding columns plus 12 text features, blended 0.7 / 0.3 "
            "with a ridge model on word n-grams"
        ),
        label_scheme="score_gap",
        decision_rule="predicted_gain",
        scorer="extra-trees-regressor",
        scorer_params={
            "n_estimators": 300,
            "max_features": 0.5,
            "min_samples_leaf": 10,
        },
        embedding_columns=32,
        text_features=DEFAULT_TEXT_FEATURES,
        group_column="subject",
        group_weight=0.5,
        group_prior_rows=DEFAULT_PRIOR_ROWS,
        lexical_weight=0.3,
        lexical_alpha=DEFAULT_ALPHA,
    ),
    "rorf": Recipe(
        name="rorf",
        description="RoRF's recipe: 4-class random forest, win rate p0 + p1",
        label_scheme="rorf",
        decision_rule="p_a_needed",
        scorer="random-forest",
        scorer_params={"n_estimators": 100, "max_depth": 20, "max_features": 1.0},
    ),
}


def get_recipe(name: str) -> Recipe:
    """Return the recipe called ``name``."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; known recipes: {', '.join(RECIPES)}")
    return RECIPES[name]
