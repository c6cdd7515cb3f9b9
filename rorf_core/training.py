"""Training a router: read battles, embed, fit the scorer, evaluate, save."""

from __future__ import annotations

import datetime
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from rorf_core import plugins
from rorf_core.calibration import calibration_table
from rorf_core.data import Battles, load_battles
from rorf_core.errors import DatasetError
from rorf_core.features import with_text_features
from rorf_core.labels import get_decision_rule, get_label_scheme
from rorf_core.router import DEFAULT_DECISION_RULE, DEFAULT_LABEL_SCHEME, Router

if TYPE_CHECKING:
    from rorf_core.cache import EmbeddingCache

logger = logging.getLogger(__name__)

__all__ = ["TrainingConfig", "TrainingResult", "train_router", "DEFAULT_EMBEDDER", "DEFAULT_SCORER"]

DEFAULT_EMBEDDER = "wordllama"
DEFAULT_SCORER = "random-forest"
#: Fewest rows a forest is fitted on, and fewest held-out rows evaluated.
MIN_TRAIN_ROWS = 10
MIN_EVAL_ROWS = 10


def _check_fraction(instance: Any, attribute: Any, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise ValueError(f"eval_fraction must be between 0 and 1 (exclusive), got {value!r}")


@attrs.frozen(kw_only=True)
class TrainingConfig:
    """Everything that decides how a router is trained; saved in its metadata."""

    dataset: str
    model_a: str | None = None
    model_b: str | None = None
    embedder: str = DEFAULT_EMBEDDER
    embedder_options: dict[str, Any] = attrs.field(factory=dict)
    scorer: str = DEFAULT_SCORER
    scorer_params: dict[str, Any] = attrs.field(factory=dict)
    eval_dataset: str | None = None
    eval_fraction: float = attrs.field(default=0.2, validator=_check_fraction)
    seed: int = 0
    label_scheme: str = DEFAULT_LABEL_SCHEME
    decision_rule: str = DEFAULT_DECISION_RULE
    text_features: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    drop_invalid: bool = False


@attrs.frozen(kw_only=True)
class TrainingResult:
    """The trained router and its report on the held-out rows."""

    router: Router
    report: Any
    train_rows: int
    eval_rows: int


def split_battles(battles: Battles, eval_fraction: float, seed: int) -> tuple[Battles, Battles]:
    """Split into training and held-out battles with a seeded permutation."""
    order = np.random.default_rng(seed).permutation(len(battles))
    eval_count = int(round(eval_fraction * len(battles)))
    if eval_count < MIN_EVAL_ROWS or len(battles) - eval_count < MIN_TRAIN_ROWS:
        raise DatasetError(
            f"dataset {battles.source!r} has {len(battles)} rows, too few for a split with "
            f"eval_fraction={eval_fraction}: training needs {MIN_TRAIN_ROWS} rows and "
            f"evaluation {MIN_EVAL_ROWS}. Add rows, change --eval-fraction, or pass "
            "--eval-dataset."
        )
    return battles.subset(np.sort(order[eval_count:])), battles.subset(np.sort(order[:eval_count]))


def _load_splits(config: TrainingConfig) -> tuple[Battles, Battles]:
    battles = load_battles(
        config.dataset, config.model_a, config.model_b, drop_invalid=config.drop_invalid
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
        only = names.get(int(present[0]), str(present[0]))
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
) -> TrainingResult:
    """Train a router as ``config`` says, evaluate it, and save it to ``out`` if given.

    Nothing is written unless training and evaluation succeed. Nothing is
    pushed anywhere.
    """
    from rorf_core.evaluation import evaluate_scores

    label_scheme = get_label_scheme(config.label_scheme)
    get_decision_rule(config.decision_rule)
    train, held_out = _load_splits(config)
    labels = label_scheme(train.scores_a, train.scores_b)
    _check_labels(labels, label_scheme.label_names(), train.source)
    embedder = plugins.get_embedder(config.embedder, **config.embedder_options)
    scorer = plugins.get_scorer_class(config.scorer)(**config.scorer_params)
    cache = cache if cache is not None else _default_cache()
    embeddings = cache.embed(embedder, train.prompts + held_out.prompts, progress=progress)
    train_x, eval_x = embeddings[: len(train)], embeddings[len(train) :]
    logger.info("fitting %s on %d rows", scorer.name, len(train))
    scorer.fit(with_text_features(config.text_features, train.prompts, train_x), labels)
    router = Router(
        embedder=embedder,
        scorer=scorer,
        model_a=train.model_a,
        model_b=train.model_b,
        label_scheme=config.label_scheme,
        decision_rule=config.decision_rule,
        text_features=config.text_features,
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
    if out is not None:
        router.save_pretrained(Path(out))
    return TrainingResult(router=router, report=report, train_rows=len(train), eval_rows=len(held_out))


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
