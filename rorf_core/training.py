"""Training a router: read battles, embed, fit the scorer, evaluate, save."""

from __future__ import annotations

import datetime
import logging
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from rorf_core import plugins
from rorf_core.calibration import calibration_table
from rorf_core.data import Battles, load_battles
from rorf_core.errors import DatasetError, InvalidConfigError
from rorf_core.features import model_inputs
from rorf_core.group_target import (
    GroupTarget,
    check_group_weight,
    group_metadata,
    requested_group_target,
    smooth_gap,
    usable_group_target,
)
from rorf_core.labels import (
    check_rule_fits_scheme,
    gain_to_score,
    get_decision_rule,
    get_label_scheme,
)
from rorf_core.lexical import (
    LexicalModel,
    check_lexical_weight,
    fit_lexical,
    prompt_ngrams,
    requested_lexical_weight,
)
from rorf_core.recipes import DEFAULT_RECIPE, get_recipe
from rorf_core.router import Router

if TYPE_CHECKING:
    from rorf_core.cache import EmbeddingCache

logger = logging.getLogger(__name__)

__all__ = ["TrainingConfig", "TrainingResult", "train_router", "DEFAULT_EMBEDDER", "DEFAULT_SCORER"]

DEFAULT_EMBEDDER = "wordllama"
DEFAULT_SCORER = "random-forest"
#: Minimum rows a forest is fitted on, and minimum held-out rows evaluated.
MIN_TRAIN_ROWS = 10
MIN_EVAL_ROWS = 10


def _check_fraction(instance: Any, attribute: Any, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise InvalidConfigError(f"eval_fraction must be between 0 and 1 (exclusive), got {value!r}")


def _check_group_weight(instance: Any, attribute: Any, value: float | None) -> None:
    if value is not None:
        check_group_weight(value)


def _check_lexical_weight(instance: Any, attribute: Any, value: float | None) -> None:
    if value is not None:
        check_lexical_weight(value)


def _check_lexical_alpha(instance: Any, attribute: Any, value: float | None) -> None:
    if value is not None and not 0 < value < math.inf:
        raise InvalidConfigError(f"lexical_alpha must be a positive number, got {value!r}")


#: TrainingConfig fields that default to the recipe's value of the same name.
_RECIPE_SETTINGS = (
    "scorer",
    "label_scheme",
    "decision_rule",
    "embedding_columns",
    "text_features",
    "group_column",
    "group_weight",
    "group_prior_rows",
    "lexical_weight",
    "lexical_alpha",
)


@attrs.frozen(kw_only=True)
class TrainingConfig:
    """Everything that decides how a router is trained; saved in its metadata.

    ``recipe`` supplies the label scheme, decision rule, scorer, scorer
    parameters, embedding columns and text features. Any of those given
    here (not None) overrides the recipe's value, and ``scorer_params`` are
    merged over the recipe's.

    ``group_column``, ``group_weight`` and ``group_prior_rows`` smooth a
    score-gap target toward each group's mean gap (see
    :mod:`rorf_core.group_target`). The recipe's column is used only when the
    table has it; a column or weight given here must be usable, or training
    fails. ``group_weight=0`` turns the smoothing off.

    ``lexical_weight`` blends the forest's predicted gain with a ridge model
    on word n-grams (see :mod:`rorf_core.lexical`), fitted on the same
    target with penalty ``lexical_alpha``; 0 leaves the n-gram model out.
    """

    dataset: str
    model_a: str | None = None
    model_b: str | None = None
    recipe: str = DEFAULT_RECIPE
    embedder: str = DEFAULT_EMBEDDER
    embedder_options: dict[str, Any] = attrs.field(factory=dict)
    scorer: str | None = None
    scorer_params: dict[str, Any] = attrs.field(factory=dict)
    label_scheme: str | None = None
    decision_rule: str | None = None
    embedding_columns: int | None = None
    text_features: tuple[str, ...] | None = attrs.field(
        default=None, converter=attrs.converters.optional(tuple)
    )
    group_column: str | None = None
    group_weight: float | None = attrs.field(default=None, validator=_check_group_weight)
    group_prior_rows: float | None = None
    lexical_weight: float | None = attrs.field(default=None, validator=_check_lexical_weight)
    lexical_alpha: float | None = attrs.field(default=None, validator=_check_lexical_alpha)
    eval_dataset: str | None = None
    eval_fraction: float = attrs.field(default=0.2, validator=_check_fraction)
    seed: int = 0
    drop_invalid: bool = False

    def resolved(self) -> TrainingConfig:
        """Return a copy with every recipe-provided setting filled in."""
        recipe = get_recipe(self.recipe)
        params = {**recipe.scorer_params, **self.scorer_params}
        params.setdefault("random_state", self.seed)
        # A setting left as None takes the recipe's value.
        filled = {
            name: getattr(recipe, name)
            for name in _RECIPE_SETTINGS
            if getattr(self, name) is None
        }
        return attrs.evolve(self, scorer_params=params, **filled)


@attrs.frozen(kw_only=True)
class TrainingResult:
    """The trained router and its report on the held-out rows."""

    router: Router
    report: Any
    train_rows: int
    eval_rows: int
    search: Any = None


def held_out_positions(count: int, eval_fraction: float, seed: int) -> np.ndarray:
    """Return the sorted positions of the held-out rows among ``count`` rows."""
    order = np.random.default_rng(seed).permutation(count)
    return np.sort(order[: int(round(eval_fraction * count))])


def split_battles(battles: Battles, eval_fraction: float, seed: int) -> tuple[Battles, Battles]:
    """Split into training and held-out battles with a seeded permutation."""
    held_out = held_out_positions(len(battles), eval_fraction, seed)
    eval_count = held_out.size
    if eval_count < MIN_EVAL_ROWS or len(battles) - eval_count < MIN_TRAIN_ROWS:
        raise DatasetError(
            f"dataset {battles.source!r} has {len(battles)} rows, too few for a split with "
            f"eval_fraction={eval_fraction}: training needs {MIN_TRAIN_ROWS} rows and "
            f"evaluation {MIN_EVAL_ROWS}. Add rows, change --eval-fraction, or pass "
            "--eval-dataset."
        )
    training = np.setdiff1d(np.arange(len(battles)), held_out)
    return battles.subset(training), battles.subset(held_out)


def _load_splits(
    config: TrainingConfig, group_column: str | None, required: bool
) -> tuple[Battles, Battles]:
    battles = load_battles(
        config.dataset,
        config.model_a,
        config.model_b,
        drop_invalid=config.drop_invalid,
        group_column=group_column,
        require_group_column=required,
    )
    if config.eval_dataset is None:
        return split_battles(battles, config.eval_fraction, config.seed)
    held_out = load_battles(
        config.eval_dataset, battles.model_a, battles.model_b, drop_invalid=config.drop_invalid
    )
    for name, part, minimum in (("training", battles, MIN_TRAIN_ROWS), ("evaluation", held_out, MIN_EVAL_ROWS)):
        if len(part) < minimum:
            raise DatasetError(
                f"{name} dataset {part.source!r} has {len(part)} rows; at least {minimum} are needed"
            )
    return battles, held_out


def _check_labels(labels: np.ndarray, names: dict[int, str], source: str) -> None:
    present = np.unique(labels)
    if present.size < 2:
        only = names.get(int(present[0]), str(present[0])) if names else str(present[0])
        raise DatasetError(
            f"every training row of {source!r} has the same label ({only!r}), so a "
            "router cannot learn to tell prompts apart; use data where the two "
            "models' scores differ on some prompts"
        )


def _default_cache() -> EmbeddingCache:
    from rorf_core.cache import EmbeddingCache

    return EmbeddingCache()


def train_router(
    config: TrainingConfig,
    *,
    cache: EmbeddingCache | None = None,
    out: str | os.PathLike[str] | None = None,
    progress: bool = True,
    search_budget: float | None = None,
) -> TrainingResult:
    """Train a router from ``config``, evaluate it, and save it to ``out`` if given.

    With ``search_budget`` (seconds), the leaf size and the number of
    embedding columns are first chosen by cross-validation on the training
    rows (see :mod:`rorf_core.search`). Nothing is written unless training
    and evaluation succeed. Nothing is pushed anywhere.
    """
    from rorf_core.evaluation import evaluate_scores

    # A group setting the caller gave must apply; the recipe's may be skipped.
    column_named, weight_named = config.group_column is not None, config.group_weight is not None
    lexical_named = config.lexical_weight is not None
    config = config.resolved()
    label_scheme = get_label_scheme(config.label_scheme)
    check_rule_fits_scheme(label_scheme, get_decision_rule(config.decision_rule))
    config = attrs.evolve(
        config,
        lexical_weight=requested_lexical_weight(
            config.lexical_weight, label_scheme=label_scheme, named=lexical_named
        ),
    )
    group = requested_group_target(
        config.group_column,
        config.group_weight,
        config.group_prior_rows,
        label_scheme=label_scheme,
        column_named=column_named,
        weight_named=weight_named,
    )
    # A column the caller named must exist even when its weight turns smoothing off.
    group_column = config.group_column if column_named else None
    if group is not None:
        group_column = group.column
    train, held_out = _load_splits(config, group_column, required=column_named or weight_named)
    labels = label_scheme(train.scores_a, train.scores_b)
    _check_labels(labels, label_scheme.label_names(), train.source)
    group = usable_group_target(group, train.groups)
    embedder = plugins.get_embedder(config.embedder, **config.embedder_options)
    scorer = plugins.get_scorer_class(config.scorer)(**config.scorer_params)
    if scorer.is_regressor != label_scheme.is_regression:
        raise InvalidConfigError(
            f"scorer {config.scorer!r} is a {'regressor' if scorer.is_regressor else 'classifier'} "
            f"but label scheme {label_scheme.name!r} needs a "
            f"{'regressor' if label_scheme.is_regression else 'classifier'}"
        )
    cache = cache if cache is not None else _default_cache()
    embeddings = cache.embed(embedder, train.prompts + held_out.prompts, progress=progress)
    train_x, eval_x = embeddings[: len(train)], embeddings[len(train) :]
    columns = config.embedding_columns
    if columns is not None:
        columns = min(columns, embeddings.shape[1])
    gain_scale = float(np.max(np.abs(labels))) if label_scheme.is_regression else 1.0
    search = None
    # Counted once: the search fits the n-gram model on every fold.
    ngrams = [prompt_ngrams(p) for p in train.prompts] if config.lexical_weight else None
    if search_budget is not None:
        search = _search(config, train, train_x, labels, columns, search_budget, group, ngrams)
        config, group = _apply_search(config, search.best, group)
        columns = config.embedding_columns
        scorer = plugins.get_scorer_class(config.scorer)(**config.scorer_params)
    # The saved config records the smoothing that was applied, not only requested.
    if group is None:
        config = attrs.evolve(config, group_column=None, group_weight=0.0)
    else:
        config = attrs.evolve(config, group_weight=group.weight)
    targets = labels if group is None else smooth_gap(labels, train.groups, group)
    logger.info("fitting %s on %d rows", scorer.name, len(train))
    scorer.fit(
        model_inputs(train_x, train.prompts, embedding_columns=columns, text_features=config.text_features),
        targets,
    )
    lexical = None
    if config.lexical_weight:
        logger.info("fitting the n-gram model on %d rows", len(train))
        lexical = fit_lexical(ngrams, targets, alpha=config.lexical_alpha)
    router = Router(
        embedder=embedder,
        scorer=scorer,
        model_a=train.model_a,
        model_b=train.model_b,
        label_scheme=config.label_scheme,
        decision_rule=config.decision_rule,
        text_features=config.text_features,
        embedding_columns=columns,
        gain_scale=gain_scale,
        embedder_dimension=int(embeddings.shape[1]),
        lexical=lexical,
        lexical_weight=config.lexical_weight,
    )
    scores = router.win_rate_from_embeddings(eval_x, held_out.prompts)
    report = evaluate_scores(
        {"router": scores},
        held_out.scores_a,
        held_out.scores_b,
        model_a=train.model_a,
        model_b=train.model_b,
    )
    router.calibration = {
        "dataset": held_out.source,
        "rows": len(held_out),
        "table": calibration_table(scores),
    }
    router.training = _training_metadata(config, train, held_out, report)
    router.training["group_target"] = group_metadata(group, train.groups)
    if search is not None:
        router.training["search"] = search.to_dict()
    if out is not None:
        router.save_pretrained(Path(out))
    return TrainingResult(
        router=router, report=report, train_rows=len(train), eval_rows=len(held_out), search=search
    )


def _search(
    config: TrainingConfig,
    train: Battles,
    train_x: np.ndarray,
    labels: np.ndarray,
    columns: int | None,
    budget: float,
    group: GroupTarget | None,
    ngrams: list[np.ndarray] | None,
) -> Any:
    # Only training rows reach the search: held-out rows are never passed in.
    from rorf_core.search import candidate_settings, search_settings

    scheme = get_label_scheme(config.label_scheme)
    rule = get_decision_rule(config.decision_rule)
    scale = float(np.max(np.abs(labels))) if scheme.is_regression else 1.0
    scorer_class = plugins.get_scorer_class(config.scorer)
    prompts = train.prompts

    def fit_and_score(settings: dict[str, Any], fit_rows: np.ndarray, score_rows: np.ndarray) -> np.ndarray:
        inputs = model_inputs(
            train_x, prompts, embedding_columns=settings["embedding_columns"], text_features=config.text_features
        )
        params = {**config.scorer_params, "min_samples_leaf": settings["min_samples_leaf"]}
        targets = labels[fit_rows]
        fold_group = _searched_group(group, settings)
        if fold_group is not None:
            # Group means from the fitting rows only, as in the final fit.
            targets = smooth_gap(targets, train.groups[fit_rows], fold_group)
        scorer = scorer_class(**params).fit(inputs[fit_rows], targets)
        if scheme.is_regression:
            gain = scorer.predict(inputs[score_rows])
            weight = float(settings.get("lexical_weight", 0.0))
            if weight > 0.0:
                # Vocabulary, IDF and weights from the fitting rows only.
                lexical = _fit_rows_lexical(ngrams, fit_rows, targets, config.lexical_alpha)
                gain = (1.0 - weight) * gain + weight * lexical.predict_ngrams([ngrams[i] for i in score_rows])
            return gain_to_score(gain, scale)
        proba = scorer.predict_proba(inputs[score_rows])
        return rule(proba, scorer.classes_, scheme.labels)

    start: dict[str, Any] = {
        "min_samples_leaf": config.scorer_params.get("min_samples_leaf", 1),
        "embedding_columns": columns if columns is not None else train_x.shape[1],
    }
    group_weights: tuple[float, ...] = ()
    if group is not None:
        start["group_weight"] = group.weight
        group_weights = (group.weight, 0.0)
    lexical_weights: tuple[float, ...] = ()
    if config.lexical_weight:
        start["lexical_weight"] = config.lexical_weight
        lexical_weights = (config.lexical_weight, 0.0)
    return search_settings(
        fit_and_score,
        train.scores_a,
        train.scores_b,
        candidate_settings(start, train_x.shape[1], group_weights, lexical_weights),
        budget_seconds=budget,
        seed=config.seed,
    )


def _apply_search(
    config: TrainingConfig, best: dict[str, Any], group: GroupTarget | None
) -> tuple[TrainingConfig, GroupTarget | None]:
    """Return the config and smoothing with the search's best settings."""
    params = {**config.scorer_params, "min_samples_leaf": best["min_samples_leaf"]}
    config = attrs.evolve(
        config,
        scorer_params=params,
        embedding_columns=best["embedding_columns"],
        lexical_weight=float(best.get("lexical_weight", config.lexical_weight)),
    )
    return config, _searched_group(group, best)


def _fit_rows_lexical(
    ngrams: list[np.ndarray] | None, fit_rows: np.ndarray, targets: np.ndarray, alpha: float
) -> LexicalModel:
    if ngrams is None:
        raise ValueError("a search candidate uses the n-gram model but no n-grams were counted")
    return fit_lexical([ngrams[i] for i in fit_rows], targets, alpha=alpha)


def _searched_group(group: GroupTarget | None, settings: dict[str, Any]) -> GroupTarget | None:
    """Return ``group`` with the weight a search candidate gives, None for 0."""
    if group is None:
        return None
    weight = float(settings.get("group_weight", group.weight))
    return None if weight == 0.0 else attrs.evolve(group, weight=weight)


def _training_metadata(
    config: TrainingConfig, train: Battles, held_out: Battles, report: Any
) -> dict[str, Any]:
    from rorf_core import __version__

    return {
        "config": attrs.asdict(config),
        "train_rows": len(train),
        "eval_rows": len(held_out),
        "dropped_rows": train.dropped + (held_out.dropped if config.eval_dataset else 0),
        "metrics": report.router_metrics_dict("router"),
        "rorf_core_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
