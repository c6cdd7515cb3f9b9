"""Evaluation of routers against baselines, and its table, JSON and CSV output.

``evaluate_scores`` runs the pure functions of ``rorf_core.evaluation`` over
several routers and the baselines (oracle, random line, simulated random) on
the same rows, with optional prices, and returns an ``EvaluationReport``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from rorf_core.errors import DatasetError
from rorf_core.evaluation import (
    DegenerateDataWarning,
    RoutingCurve,
    RoutingMetrics,
    _as_column,
    _check_scores,
    calibration_table,
    oracle_curve,
    pgr,
    random_curve,
    routing_curve,
    routing_metrics,
    simulated_random_curves,
    summary_at_shares,
)

__all__ = [
    "TOKENS_PER_WORD",
    "EvaluationReport",
    "Prices",
    "RouterEvaluation",
    "estimate_tokens",
    "evaluate_scores",
    "format_table",
    "report_to_dict",
    "row_costs",
    "write_csv",
    "write_json",
]

logger = logging.getLogger(__name__)

# Rough tokens per whitespace-separated word of English text under common BPE
# tokenizers. It is an estimate, not a measurement, and applies only when the
# caller gives no token counts.
TOKENS_PER_WORD = 1.3
TOKEN_RULE = f"whitespace-separated words x {TOKENS_PER_WORD}"

BASELINE_NAMES = ("oracle", "random", "random-simulated")

CSV_COLUMNS = (
    "router",
    "kind",
    "k",
    "share",
    "threshold",
    "score",
    "score_std",
    "pgr",
    "cost",
)


def _price_field() -> Any:
    return attrs.field(default=0.0, converter=float, validator=attrs.validators.ge(0.0))


@attrs.frozen(kw_only=True)
class Prices:
    """Prices of one call to each model, in one currency (USD by convention).

    A call costs ``per_call + per_mtok * input_tokens / 1e6``. Output tokens
    are not counted because the battles data does not record them.
    """

    a_per_call: float = _price_field()
    b_per_call: float = _price_field()
    a_per_mtok: float = _price_field()
    b_per_mtok: float = _price_field()


@attrs.frozen(kw_only=True)
class RouterEvaluation:
    """Curve and metrics of one router or baseline on the evaluation rows.

    ``calibration`` is the threshold table of a real router (None for the
    baselines). ``score_std`` is the per-point standard deviation across
    seeds of the simulated random baseline (None elsewhere).
    """

    name: str
    curve: RoutingCurve
    metrics: RoutingMetrics
    calibration: list[dict[str, float]] | None = None
    score_std: np.ndarray | None = attrs.field(default=None, eq=False)


@attrs.frozen(kw_only=True)
class EvaluationReport:
    """Routers and baselines evaluated on the same rows.

    ``baselines`` contains ``oracle``, ``random`` (the expected straight line)
    and, when seeds were given, ``random-simulated``. ``cost_a`` and
    ``cost_b`` are the average costs per call of always-A and always-B, and
    ``token_rule`` states how input tokens were counted.
    """

    model_a: str
    model_b: str
    n_rows: int
    score_a: float
    score_b: float
    routers: dict[str, RouterEvaluation]
    baselines: dict[str, RouterEvaluation]
    prices: Prices | None = None
    cost_a: float | None = None
    cost_b: float | None = None
    token_rule: str | None = None
    seeds: tuple[int, ...] = ()
    metadata: dict[str, Any] = attrs.Factory(dict)

    def all_results(self) -> dict[str, RouterEvaluation]:
        """Return routers then baselines, keyed by name."""
        return {**self.routers, **self.baselines}

    def router_metrics_dict(self, name: str) -> dict[str, Any]:
        """Return router ``name``'s metrics as JSON-ready data.

        NaN becomes None. ``oracle_apgr`` is added for scale, because the
        best reachable APGR depends on the data.
        """
        if name not in self.routers:
            known = ", ".join(self.routers)
            raise KeyError(f"no router named {name!r} in the report. Routers: {known}")
        data = attrs.asdict(self.routers[name].metrics)
        data["oracle_apgr"] = self.baselines["oracle"].metrics.apgr
        return _clean(data)

    def training_summary(self) -> str:
        """Format the metrics table and the scores at 10%..90% calls to A."""
        return format_table(self, at_shares=True)


def estimate_tokens(prompts: Sequence[str]) -> np.ndarray:
    """Estimate input tokens per prompt as whitespace words times 1.3."""
    counts = [len(prompt.split()) * TOKENS_PER_WORD for prompt in prompts]
    return np.array(counts, dtype=np.float64)


def row_costs(prices: Prices, tokens: Any) -> tuple[np.ndarray, np.ndarray]:
    """Return the per-row costs ``(cost_a, cost_b)`` of one call to each model."""
    counts = _as_column("tokens", tokens)
    negative = np.flatnonzero(counts < 0)
    if negative.size:
        raise DatasetError(
            f"tokens has a negative count {counts[negative[0]]!r} at row "
            f"{negative[0]}. Token counts must be >= 0."
        )
    cost_a = prices.a_per_call + prices.a_per_mtok * counts / 1e6
    cost_b = prices.b_per_call + prices.b_per_mtok * counts / 1e6
    return cost_a, cost_b


def _evaluate_one(
    name: str,
    curve: RoutingCurve,
    a: np.ndarray,
    b: np.ndarray,
    router: np.ndarray | None = None,
) -> RouterEvaluation:
    table = None
    # Router thresholds lie in [0, 1]. The calibration rule clamps to that
    # range, so scores outside it (hand-made ones) get no table.
    if router is not None and router.min() >= 0.0 and router.max() <= 1.0:
        table = calibration_table(router)
    metrics = routing_metrics(curve, a, b)
    return RouterEvaluation(name=name, curve=curve, metrics=metrics, calibration=table)


def _simulated_random(
    a: np.ndarray, b: np.ndarray, seeds: tuple[int, ...], costs: Any
) -> RouterEvaluation:
    curves = simulated_random_curves(a, b, seeds=seeds, costs=costs)
    scores = np.array([curve.scores for curve in curves])
    mean_curve = RoutingCurve(
        shares=curves[0].shares,
        scores=scores.mean(axis=0),
        thresholds=curves[0].thresholds,
        costs=None if costs is None else np.mean([c.costs for c in curves], axis=0),
    )
    apgrs = [routing_metrics(curve, a, b).apgr for curve in curves]
    # Sample standard deviations across seeds (ddof=1), or zero for one seed.
    ddof = 1 if len(curves) > 1 else 0
    metrics = attrs.evolve(
        routing_metrics(mean_curve, a, b),
        apgr=float(np.mean(apgrs)),
        apgr_std=float(np.std(apgrs, ddof=ddof)),
    )
    return RouterEvaluation(
        name="random-simulated",
        curve=mean_curve,
        metrics=metrics,
        score_std=scores.std(axis=0, ddof=ddof),
    )


def _row_costs_for(
    prices: Prices, n_rows: int, prompts: Sequence[str] | None, tokens: Any
) -> tuple[tuple[np.ndarray, np.ndarray], str]:
    if tokens is not None:
        return row_costs(prices, _as_column("tokens", tokens, n_rows)), "given"
    if prompts is None:
        raise ValueError(
            "prices need token counts. Pass tokens= (input tokens per row) or "
            "prompts= to estimate them."
        )
    counts = _as_column("tokens", estimate_tokens(prompts), n_rows)
    return row_costs(prices, counts), TOKEN_RULE


def evaluate_scores(
    router_scores: dict[str, Any],
    scores_a: Any,
    scores_b: Any,
    *,
    prices: Prices | None = None,
    prompts: Sequence[str] | None = None,
    tokens: Any = None,
    seeds: Iterable[int] = range(10),
    model_a: str = "A",
    model_b: str = "B",
    metadata: dict[str, Any] | None = None,
) -> EvaluationReport:
    """Evaluate each router and the oracle and random baselines on one dataset.

    ``router_scores`` maps a router name to its score per row. With
    ``prices``, costs use ``tokens`` (input tokens per row) when given, else
    ``estimate_tokens(prompts)``. ``seeds`` drive the simulated random
    baseline, which is left out when ``seeds`` is empty.
    """
    a, b = _check_scores(scores_a, scores_b)
    if not router_scores:
        raise ValueError("router_scores is empty. Pass at least one router.")
    clashes = sorted(set(router_scores) & set(BASELINE_NAMES))
    if clashes:
        raise ValueError(
            f"router name {clashes[0]!r} is reserved for a baseline. Rename the "
            f"router (reserved names: {', '.join(BASELINE_NAMES)})."
        )
    costs, token_rule = None, None
    if prices is not None:
        costs, token_rule = _row_costs_for(prices, len(a), prompts, tokens)
    routers = {}
    for name, values in router_scores.items():
        router = _as_column(f"router_scores[{name!r}]", values, len(a))
        curve = routing_curve(router, a, b, costs=costs)
        routers[name] = _evaluate_one(name, curve, a, b, router)
    seed_list = tuple(int(seed) for seed in seeds)
    with warnings.catch_warnings():
        # The routers' metrics have already warned about a degenerate gap.
        warnings.simplefilter("ignore", DegenerateDataWarning)
        baselines = {
            "oracle": _evaluate_one("oracle", oracle_curve(a, b, costs=costs), a, b),
            "random": _evaluate_one("random", random_curve(a, b, costs=costs), a, b),
        }
        if seed_list:
            baselines["random-simulated"] = _simulated_random(a, b, seed_list, costs)
    logger.info("evaluated %d routers on %d rows", len(routers), len(a))
    return EvaluationReport(
        model_a=model_a,
        model_b=model_b,
        n_rows=len(a),
        score_a=float(a.mean()),
        score_b=float(b.mean()),
        routers=routers,
        baselines=baselines,
        prices=prices,
        cost_a=None if costs is None else float(costs[0].mean()),
        cost_b=None if costs is None else float(costs[1].mean()),
        token_rule=token_rule,
        seeds=seed_list,
        metadata=dict(metadata or {}),
    )


def _percent(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{100 * value:.1f}%"


def _metrics_cells(metrics: RoutingMetrics) -> list[str]:
    apgr = "nan" if math.isnan(metrics.apgr) else f"{metrics.apgr:.4f}"
    if metrics.apgr_std is not None and not math.isnan(metrics.apgr_std):
        apgr += f" ± {metrics.apgr_std:.4f}"
    return [
        apgr,
        _percent(metrics.cpt_50),
        _percent(metrics.cpt_80),
        f"{metrics.best_score:.4f}",
        _percent(metrics.best_share),
        _percent(metrics.share_matching_a),
    ]


def _aligned(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:])]
        lines.append("  ".join(cells).rstrip())
    return lines


def format_table(report: EvaluationReport, *, at_shares: bool = True) -> str:
    """Format the metrics, and the scores at 10%..90% calls to A, as plain text."""
    gap = report.score_a - report.score_b
    summary = (
        f"{report.n_rows} prompts. Model A {report.model_a}: always-A score "
        f"{report.score_a:.4f}. Model B {report.model_b}: always-B score "
        f"{report.score_b:.4f}. Gap {gap:.4f}."
    )
    lines = [summary]
    if report.cost_a is not None and report.cost_b is not None:
        lines.append(
            f"Average cost per call: always-A {report.cost_a:.6g}, always-B "
            f"{report.cost_b:.6g} (tokens: {report.token_rule})."
        )
    header = ["router", "APGR", "CPT(50%)", "CPT(80%)", "best score"]
    header += ["at share", "matches A at"]
    results = report.all_results()
    rows = [header] + [[n, *_metrics_cells(r.metrics)] for n, r in results.items()]
    lines += ["", *_aligned(rows)]
    if not at_shares:
        return "\n".join(lines)
    share_rows = [["score at share", *[f"{10 * i}%" for i in range(1, 10)]]]
    for name, result in results.items():
        summary = summary_at_shares(result.curve)
        share_rows.append([name, *[f"{row['score']:.4f}" for row in summary]])
    for name in report.routers:
        summary = summary_at_shares(results[name].curve)
        cells = ["-" if row["threshold"] is None else f"{row['threshold']:.4f}" for row in summary]
        share_rows.append([f"{name} threshold", *cells])
    share_rows.append(["always-A", *[f"{report.score_a:.4f}"] * 9])
    share_rows.append(["always-B", *[f"{report.score_b:.4f}"] * 9])
    lines += ["", *_aligned(share_rows)]
    return "\n".join(lines)


def _clean(value: Any) -> Any:
    """Convert numpy values to Python ones and non-finite floats to None."""
    if isinstance(value, dict):
        return {str(key): _clean(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _result_json(result: RouterEvaluation) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "metrics": attrs.asdict(result.metrics),
        "at_shares": summary_at_shares(result.curve),
    }
    if result.calibration is not None:
        entry["calibration"] = result.calibration
    return entry


def report_to_dict(report: EvaluationReport) -> dict[str, Any]:
    """Return the report as JSON-ready data: metrics, never the full curves."""
    data = {
        "n_rows": report.n_rows,
        "model_a": report.model_a,
        "model_b": report.model_b,
        "score_a": report.score_a,
        "score_b": report.score_b,
        "gap": report.score_a - report.score_b,
        "prices": None if report.prices is None else attrs.asdict(report.prices),
        "cost_a": report.cost_a,
        "cost_b": report.cost_b,
        "token_rule": report.token_rule,
        "seeds": list(report.seeds),
        "metadata": report.metadata,
        "routers": {n: _result_json(r) for n, r in report.routers.items()},
        "baselines": {n: _result_json(r) for n, r in report.baselines.items()},
    }
    return _clean(data)


def write_json(report: EvaluationReport, path: str | Path) -> Path:
    """Write ``report_to_dict(report)`` as JSON, with NaN and infinity as null."""
    path = Path(path)
    text = json.dumps(report_to_dict(report), indent=2, allow_nan=False)
    path.write_text(text + "\n", encoding="utf-8")
    return path


def _csv_number(value: float) -> str:
    return "" if not math.isfinite(value) else repr(float(value))


def _curve_rows(result: RouterEvaluation, kind: str) -> Iterable[list[str]]:
    curve = result.curve
    values = pgr(curve)
    for k in range(curve.n_rows + 1):
        std = None if result.score_std is None else result.score_std[k]
        cost = None if curve.costs is None else curve.costs[k]
        yield [
            result.name,
            kind,
            str(k),
            _csv_number(curve.shares[k]),
            _csv_number(curve.thresholds[k]),
            _csv_number(curve.scores[k]),
            "" if std is None else _csv_number(std),
            _csv_number(values[k]),
            "" if cost is None else _csv_number(cost),
        ]


def write_csv(report: EvaluationReport, path: str | Path) -> Path:
    """Write every curve point of every router and baseline, one row each.

    Columns are ``CSV_COLUMNS``. Empty cells are undefined values: random
    thresholds, PGR with a zero gap, costs without prices.
    """
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for result in report.routers.values():
            writer.writerows(_curve_rows(result, "router"))
        for result in report.baselines.values():
            writer.writerows(_curve_rows(result, "baseline"))
    return path
