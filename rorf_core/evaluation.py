"""Cost-quality curves and routing metrics over per-prompt scores.

Everything here is a pure function of numpy arrays. A router score is higher
when the prompt should go to model A (the stronger one). Sweeping a threshold
over the router scores sends the top ``k`` prompts to A for ``k = 0..n`` and
gives the routing curve: the average score against the share of calls to A,
and optionally against the average cost per call. Rows with tied router scores
are routed fractionally, so that the curve does not depend on row order. The
metrics follow RouteLLM: PGR (performance gap recovered), APGR (its mean over
the curve) and CPT (call-performance threshold). docs/evaluation.md defines
each of them.

``evaluate_scores``, prices, the report types and the writers live in
``rorf_core.evaluation_report`` and ``plot_curves`` in ``rorf_core.plotting``.
Those names can also be imported from here: the modules load on first use, so
matplotlib is not imported until a plot is drawn.
"""

from __future__ import annotations

import importlib
import math
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import attrs
import numpy as np

from rorf_core.calibration import calibration_table, threshold_for_share
from rorf_core.errors import DatasetError

_LAZY = {
    "EvaluationReport": "rorf_core.evaluation_report",
    "Prices": "rorf_core.evaluation_report",
    "TOKENS_PER_WORD": "rorf_core.evaluation_report",
    "estimate_tokens": "rorf_core.evaluation_report",
    "row_costs": "rorf_core.evaluation_report",
    "RouterEvaluation": "rorf_core.evaluation_report",
    "evaluate_scores": "rorf_core.evaluation_report",
    "format_table": "rorf_core.evaluation_report",
    "write_json": "rorf_core.evaluation_report",
    "write_csv": "rorf_core.evaluation_report",
    "plot_curves": "rorf_core.plotting",
}

__all__ = [
    "DegenerateDataWarning",
    "RoutingCurve",
    "RoutingMetrics",
    "calibration_table",
    "cpt",
    "oracle_curve",
    "pgr",
    "random_curve",
    "routing_curve",
    "routing_metrics",
    "simulated_random_curves",
    "summary_at_shares",
]

_RANDOM_ROUTER_STREAM = 0x524F5246  # "RORF" in ASCII

DEFAULT_SUMMARY_SHARES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


class DegenerateDataWarning(RuntimeWarning):
    """The scores make PGR undefined or inverted (model A is not better)."""


def _frozen_array(value: Any) -> np.ndarray:
    array = np.array(value, dtype=np.float64)
    array.setflags(write=False)
    return array


def _optional_frozen_array(value: Any) -> np.ndarray | None:
    return None if value is None else _frozen_array(value)


@attrs.frozen(kw_only=True, eq=False)
class RoutingCurve:
    """Average score (and cost) at each share of calls sent to model A.

    All arrays have ``n + 1`` entries, one per ``k = 0..n`` rows sent to A.
    ``thresholds[k]`` is the router score of the k-th highest row, so the rule
    ``router_score >= threshold`` sends those rows to A. ``thresholds[0]`` is
    the next float above the maximum score. Inside a group of tied router
    scores the point is an expected value: it is reached by sending a random
    part of the group to A. Random baselines have NaN thresholds. ``costs``
    is the average cost per call, or None when no prices were given.
    """

    shares: np.ndarray = attrs.field(converter=_frozen_array)
    scores: np.ndarray = attrs.field(converter=_frozen_array)
    thresholds: np.ndarray = attrs.field(converter=_frozen_array)
    costs: np.ndarray | None = attrs.field(
        default=None, converter=_optional_frozen_array
    )

    @property
    def n_rows(self) -> int:
        return len(self.shares) - 1


@attrs.frozen(kw_only=True)
class RoutingMetrics:
    """Summary numbers of one routing curve, with shares as fractions in [0, 1].

    ``apgr`` is NaN and the CPT values are None when the score gap between
    always-A and always-B is zero. ``share_matching_a`` is None when only
    sending every call to A reaches always-A's score. ``apgr_std`` is set for
    the simulated random baseline only.
    """

    apgr: float
    cpt_50: float | None
    cpt_80: float | None
    best_score: float
    best_share: float
    share_matching_a: float | None
    score_a: float
    score_b: float
    gap: float
    n_rows: int
    apgr_std: float | None = None


def _as_column(name: str, values: Any, n_rows: int | None = None) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise DatasetError(
            f"{name} must be one-dimensional, got shape {array.shape}. Pass one "
            "value per prompt."
        )
    if array.size == 0:
        raise DatasetError(f"{name} is empty, but evaluation needs at least one row.")
    if n_rows is not None and array.size != n_rows:
        raise DatasetError(
            f"{name} has {array.size} rows but the scores have {n_rows}. Pass one "
            "value per evaluation row."
        )
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise DatasetError(
            f"{name} has a non-finite value {array[bad[0]]!r} at row {bad[0]} "
            f"({bad.size} such rows). Drop those rows or fix their values."
        )
    return array


def _check_scores(scores_a: Any, scores_b: Any) -> tuple[np.ndarray, np.ndarray]:
    a = _as_column("scores_a", scores_a)
    b = _as_column("scores_b", scores_b, len(a))
    return a, b


def _sorted_gains(
    order: np.ndarray, group_starts: np.ndarray, gains: np.ndarray
) -> np.ndarray:
    """Reorder per-row gains and replace each by the mean of its tie group."""
    ordered = gains[order]
    sizes = np.diff(np.append(group_starts, len(ordered)))
    means = np.add.reduceat(ordered, group_starts) / sizes
    return np.repeat(means, sizes)


def _cumulative_average(
    base: np.ndarray, gains: np.ndarray, final: float
) -> np.ndarray:
    """Average of ``base`` after swapping in the first ``k`` gains, k = 0..n."""
    n_rows = len(base)
    totals = base.sum() + np.concatenate(([0.0], np.cumsum(gains)))
    averages = totals / n_rows
    # Pin the ends to the plain means, so that PGR is exactly 0 and 1 there
    # and comparisons with always-A's score are not lost to rounding.
    averages[0] = base.mean()
    averages[-1] = final
    return averages


def routing_curve(
    router_scores: Any,
    scores_a: Any,
    scores_b: Any,
    *,
    costs: tuple[Any, Any] | None = None,
) -> RoutingCurve:
    """Compute the curve of ``router_scores`` (higher sends the row to A).

    ``costs``, when given, is the pair ``(cost_a, cost_b)`` of per-row costs
    of sending each prompt to A and to B (see ``row_costs``).
    """
    a, b = _check_scores(scores_a, scores_b)
    router = _as_column("router_scores", router_scores, len(a))
    order = np.argsort(-router, kind="stable")
    ranked = router[order]
    group_starts = np.flatnonzero(np.diff(ranked, prepend=np.inf))
    scores = _cumulative_average(
        b, _sorted_gains(order, group_starts, a - b), float(a.mean())
    )
    curve_costs = None
    if costs is not None:
        cost_a = _as_column("cost_a", costs[0], len(a))
        cost_b = _as_column("cost_b", costs[1], len(a))
        gains = _sorted_gains(order, group_starts, cost_a - cost_b)
        curve_costs = _cumulative_average(cost_b, gains, float(cost_a.mean()))
    thresholds = np.concatenate(([np.nextafter(ranked[0], np.inf)], ranked))
    return RoutingCurve(
        shares=np.arange(len(a) + 1) / len(a),
        scores=scores,
        thresholds=thresholds,
        costs=curve_costs,
    )


def oracle_curve(
    scores_a: Any, scores_b: Any, *, costs: tuple[Any, Any] | None = None
) -> RoutingCurve:
    """Compute the curve of a router that ranks rows by ``score_a - score_b``."""
    a, b = _check_scores(scores_a, scores_b)
    return routing_curve(a - b, a, b, costs=costs)


def random_curve(
    scores_a: Any, scores_b: Any, *, costs: tuple[Any, Any] | None = None
) -> RoutingCurve:
    """Compute the expected curve of a random router: the line from B to A."""
    a, b = _check_scores(scores_a, scores_b)
    shares = np.arange(len(a) + 1) / len(a)
    curve_costs = None
    if costs is not None:
        cost_a = _as_column("cost_a", costs[0], len(a))
        cost_b = _as_column("cost_b", costs[1], len(a))
        curve_costs = cost_b.mean() + shares * (cost_a.mean() - cost_b.mean())
    return RoutingCurve(
        shares=shares,
        scores=b.mean() + shares * (a.mean() - b.mean()),
        thresholds=np.full(len(shares), np.nan),
        costs=curve_costs,
    )


def simulated_random_curves(
    scores_a: Any,
    scores_b: Any,
    *,
    seeds: Iterable[int],
    costs: tuple[Any, Any] | None = None,
) -> list[RoutingCurve]:
    """Compute one curve per seed for a router with uniform random scores.

    A seed gives the same curve on every run under one numpy version.
    """
    a, b = _check_scores(scores_a, scores_b)
    curves = []
    for seed in seeds:
        # The extra entropy word keeps the router's stream apart from data
        # drawn with default_rng(seed), which would correlate with it.
        rng = np.random.default_rng([seed, _RANDOM_ROUTER_STREAM])
        router = rng.random(len(a))
        curve = routing_curve(router, a, b, costs=costs)
        curves.append(attrs.evolve(curve, thresholds=np.full(len(a) + 1, np.nan)))
    return curves


def _is_zero_gap(score_a: float, score_b: float) -> bool:
    # Means of the same 0/1 values summed in another order can differ in the
    # last bits, so "equal" allows a relative 1e-12.
    scale = max(1.0, abs(score_a), abs(score_b))
    return abs(score_a - score_b) <= 1e-12 * scale


def _gap_or_nan(score_a: float, score_b: float) -> float:
    """Return ``score_a - score_b``, or NaN with a warning when it is zero."""
    if _is_zero_gap(score_a, score_b):
        warnings.warn(
            f"always-A and always-B have the same average score ({score_a:.6g}), "
            "so PGR, APGR and CPT are undefined (NaN or None). Evaluate on rows "
            "where the models differ.",
            DegenerateDataWarning,
            stacklevel=3,
        )
        return math.nan
    gap = score_a - score_b
    if gap < 0:
        warnings.warn(
            f"model A scores lower than model B on average ({score_a:.6g} < "
            f"{score_b:.6g}), so a higher PGR means routing to the weaker model. "
            "Swap model A and model B.",
            DegenerateDataWarning,
            stacklevel=3,
        )
    return gap


def pgr(curve: RoutingCurve) -> np.ndarray:
    """Return the PGR at each curve point, NaN everywhere when the gap is zero.

    The curve's first and last points are always-B and always-A, so PGR
    ``(score - score_b) / (score_a - score_b)`` needs no other input.
    """
    score_b, score_a = float(curve.scores[0]), float(curve.scores[-1])
    if _is_zero_gap(score_a, score_b):
        return np.full(len(curve.scores), np.nan)
    return (curve.scores - score_b) / (score_a - score_b)


def _first_crossing(
    shares: np.ndarray, values: np.ndarray, level: float
) -> float | None:
    """Return the smallest share where ``values`` reaches ``level``, interpolated.

    Between two curve points the value is taken as linear in the share, which
    is the expected value when a random part of the next rows goes to A.
    """
    reached = np.flatnonzero(values >= level)
    if reached.size == 0:
        return None
    k = int(reached[0])
    if k == 0:
        return float(shares[0])
    low, high = values[k - 1], values[k]
    fraction = (level - low) / (high - low)
    return float(shares[k - 1] + fraction * (shares[k] - shares[k - 1]))


def cpt(curve: RoutingCurve, level: float) -> float | None:
    """Return the smallest share of calls to A at which PGR reaches ``level``.

    None when PGR is undefined (zero gap) or never reaches ``level``.
    """
    values = pgr(curve)
    if np.isnan(values).all():
        return None
    return _first_crossing(curve.shares, values, level)


def _apgr(curve: RoutingCurve) -> float:
    values = pgr(curve)
    # Trapezoid rule over share in [0, 1]. The interval has width 1, so the
    # integral is the mean PGR.
    return float(np.sum((values[1:] + values[:-1]) * np.diff(curve.shares)) / 2)


def routing_metrics(
    curve: RoutingCurve, scores_a: Any, scores_b: Any
) -> RoutingMetrics:
    """Compute APGR, CPT(50%), CPT(80%), the best score and where A is matched.

    Warns with ``DegenerateDataWarning`` when the gap between always-A and
    always-B is zero (the PGR-based metrics become NaN or None) or negative.
    """
    a, b = _check_scores(scores_a, scores_b)
    if curve.n_rows != len(a):
        raise DatasetError(
            f"the curve has {curve.n_rows} rows but the scores have {len(a)}. "
            "Compute both from the same evaluation rows."
        )
    score_a, score_b = float(a.mean()), float(b.mean())
    gap = _gap_or_nan(score_a, score_b)
    best = int(np.argmax(curve.scores))
    matching = None
    if not math.isnan(gap):
        # Every curve ends at always-A's score, so only an earlier match counts.
        reached = np.flatnonzero(curve.scores[:-1] >= score_a)
        if reached.size:
            matching = _first_crossing(curve.shares, curve.scores, score_a)
    return RoutingMetrics(
        apgr=math.nan if math.isnan(gap) else _apgr(curve),
        cpt_50=cpt(curve, 0.5),
        cpt_80=cpt(curve, 0.8),
        best_score=float(curve.scores[best]),
        best_share=float(curve.shares[best]),
        share_matching_a=matching,
        score_a=score_a,
        score_b=score_b,
        gap=gap,
        n_rows=len(a),
    )


def _deployable_threshold(curve: RoutingCurve, share: float) -> float | None:
    ranked = curve.thresholds[1:]
    # Routers take thresholds in [0, 1]. Random baselines have none, and the
    # oracle's score_a - score_b can lie outside that range.
    if not np.isfinite(ranked).all() or ranked.min() < 0.0 or ranked.max() > 1.0:
        return None
    return threshold_for_share(ranked, share)[0]


def summary_at_shares(
    curve: RoutingCurve, shares: Sequence[float] = DEFAULT_SUMMARY_SHARES
) -> list[dict[str, float | None]]:
    """Return the threshold, average score, PGR and cost at chosen shares.

    Score, PGR and cost are interpolated linearly between curve points. The
    threshold is the one ``rorf_core.calibration.threshold_for_share`` picks
    for that share, or None where the curve's scores are not in [0, 1].
    """
    values = pgr(curve)
    rows: list[dict[str, float | None]] = []
    for share in shares:
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"share must be in [0, 1], got {share!r}.")
        pgr_value = float(np.interp(share, curve.shares, values))
        row: dict[str, float | None] = {
            "share": float(share),
            "threshold": _deployable_threshold(curve, share),
            "score": float(np.interp(share, curve.shares, curve.scores)),
            "pgr": None if math.isnan(pgr_value) else pgr_value,
        }
        if curve.costs is not None:
            row["cost"] = float(np.interp(share, curve.shares, curve.costs))
        rows.append(row)
    return rows


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
