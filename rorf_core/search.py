"""Choosing forest settings by cross-validation on the training rows only.

The search never sees held-out rows: :func:`search_settings` receives the
training rows' inputs and scores and nothing else, splits them into folds,
and scores each candidate by its mean APGR on the folds it was not fitted
on. Candidates run in order until the time budget is spent; the recipe's
own settings always run first, so a search returns a result even when the
budget allows one candidate.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["SearchResult", "Trial", "candidate_settings", "search_settings"]

#: The grid searched around a recipe: leaf sizes and embedding columns.
LEAF_SIZES = (10, 20, 40)
EMBEDDING_COLUMNS = (16, 32, 64)
FOLDS = 3


@attrs.frozen(kw_only=True)
class Trial:
    """One candidate's settings and its cross-validated APGR."""

    settings: dict[str, Any]
    cv_apgr: float
    fold_apgr: tuple[float, ...]
    seconds: float


@attrs.frozen(kw_only=True)
class SearchResult:
    """Every trial run, the best settings, and whether the budget cut the grid."""

    trials: tuple[Trial, ...]
    best: dict[str, Any]
    skipped: int
    folds: int

    def summary(self) -> str:
        """Format the trials as a table, best first."""
        lines = [f"settings search: {len(self.trials)} candidates, {self.folds}-fold CV on training rows"]
        for trial in sorted(self.trials, key=lambda t: -t.cv_apgr):
            mark = "*" if trial.settings == self.best else " "
            lines.append(f" {mark} CV APGR {trial.cv_apgr:.4f}  {trial.settings}  ({trial.seconds:.1f} s)")
        if self.skipped:
            lines.append(f"   {self.skipped} candidates skipped: the time budget ran out")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Return the result as JSON-ready data for router metadata."""
        return attrs.asdict(self)


def candidate_settings(
    start: dict[str, Any],
    dimension: int,
    group_weights: Sequence[float] = (),
    lexical_weights: Sequence[float] = (),
) -> list[dict[str, Any]]:
    """Return the candidates to try: ``start`` first, then the grid around it.

    With ``group_weights`` (when the training rows carry groups), every
    candidate also has a ``group_weight`` taken from them, so the search
    measures whether smoothing the target toward group means helps this data.
    ``lexical_weights`` does the same for the n-gram model's share.
    """
    columns = sorted({min(c, dimension) for c in EMBEDDING_COLUMNS})
    grid = [
        {"min_samples_leaf": leaf, "embedding_columns": cols}
        for leaf, cols in itertools.product(LEAF_SIZES, columns)
    ]
    if group_weights:
        grid = [{**point, "group_weight": weight} for point in grid for weight in group_weights]
    if lexical_weights:
        grid = [{**point, "lexical_weight": weight} for point in grid for weight in lexical_weights]
    return [start] + [candidate for candidate in grid if candidate != start]


def search_settings(
    fit_and_score: Callable[[dict[str, Any], np.ndarray, np.ndarray], np.ndarray],
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    candidates: Sequence[dict[str, Any]],
    *,
    budget_seconds: float,
    seed: int,
    folds: int = FOLDS,
) -> SearchResult:
    """Return the candidate with the best mean APGR over ``folds`` folds.

    :param fit_and_score: ``fit_and_score(settings, fit_rows, score_rows)``
        fits on the training-row positions ``fit_rows`` and returns routing
        scores for the positions ``score_rows``.
    :param scores_a: the training rows' scores of model A.
    :param scores_b: the training rows' scores of model B.
    """
    from sklearn.model_selection import KFold

    from rorf_core.evaluation import routing_curve, routing_metrics

    splits = list(KFold(folds, shuffle=True, random_state=seed).split(scores_a))
    started = time.perf_counter()
    trials: list[Trial] = []
    for index, settings in enumerate(candidates):
        if trials and time.perf_counter() - started > budget_seconds:
            logger.info("search budget of %.0f s spent after %d candidates", budget_seconds, index)
            break
        trial_start = time.perf_counter()
        fold_apgr = []
        for fit_rows, score_rows in splits:
            scores = fit_and_score(settings, fit_rows, score_rows)
            curve = routing_curve(scores, scores_a[score_rows], scores_b[score_rows])
            fold_apgr.append(routing_metrics(curve, scores_a[score_rows], scores_b[score_rows]).apgr)
        trial = Trial(
            settings=dict(settings),
            cv_apgr=float(np.mean(fold_apgr)),
            fold_apgr=tuple(float(v) for v in fold_apgr),
            seconds=time.perf_counter() - trial_start,
        )
        logger.info("candidate %s: CV APGR %.4f", settings, trial.cv_apgr)
        trials.append(trial)
    best = max(trials, key=lambda t: t.cv_apgr)
    return SearchResult(
        trials=tuple(trials),
        best=best.settings,
        skipped=len(candidates) - len(trials),
        folds=folds,
    )
