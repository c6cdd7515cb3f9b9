"""PNG plots of routing curves.

matplotlib is imported inside ``plot_curves`` and drives a ``Figure`` with
the Agg canvas directly. Importing this module does not load matplotlib, and
plotting never touches pyplot's global state or the user's chosen backend.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rorf_core.evaluation_report import EvaluationReport, RouterEvaluation

__all__ = ["plot_curves"]

logger = logging.getLogger(__name__)

_BASELINE_STYLES: dict[str, dict[str, Any]] = {
    "oracle": {"color": "black", "linestyle": "--", "linewidth": 1.2},
    "random": {"color": "grey", "linestyle": ":", "linewidth": 1.2},
    "random-simulated": {"color": "grey", "linestyle": "-", "linewidth": 0.8},
}


def _draw_result(axes: Any, result: RouterEvaluation, use_cost: bool) -> None:
    curve = result.curve
    x = curve.costs if use_cost else curve.shares
    style = _BASELINE_STYLES.get(result.name, {"linewidth": 1.6})
    axes.plot(x, curve.scores, label=result.name, **style)
    if result.score_std is not None and not use_cost:
        axes.fill_between(
            x,
            curve.scores - result.score_std,
            curve.scores + result.score_std,
            color="grey",
            alpha=0.2,
            linewidth=0,
        )


def _draw_endpoints(axes: Any, report: EvaluationReport, use_cost: bool) -> None:
    x_a = report.cost_a if use_cost else 1.0
    x_b = report.cost_b if use_cost else 0.0
    axes.scatter([x_a], [report.score_a], marker="^", color="tab:red", zorder=3)
    axes.scatter([x_b], [report.score_b], marker="v", color="tab:blue", zorder=3)
    axes.annotate(
        f"always-A ({report.model_a})",
        (x_a, report.score_a),
        textcoords="offset points",
        xytext=(-4, 6),
        ha="right",
    )
    axes.annotate(
        f"always-B ({report.model_b})",
        (x_b, report.score_b),
        textcoords="offset points",
        xytext=(4, -12),
        ha="left",
    )


def plot_curves(report: EvaluationReport, path: str | Path, *, dpi: int = 120) -> Path:
    """Draw score against share of calls to A (and against cost) into a PNG.

    A second panel plots score against average cost per call when the
    report has prices. The simulated random baseline is drawn with a band of
    one standard deviation across seeds on the share panel.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    results = [*report.routers.values(), *report.baselines.values()]
    with_cost = report.cost_a is not None
    panels = [False, True] if with_cost else [False]
    figure = Figure(figsize=(6.4 * len(panels), 4.8), layout="constrained")
    FigureCanvasAgg(figure)
    for index, use_cost in enumerate(panels):
        axes = figure.add_subplot(1, len(panels), index + 1)
        for result in results:
            _draw_result(axes, result, use_cost)
        _draw_endpoints(axes, report, use_cost)
        axes.set_xlabel(
            "average cost per call" if use_cost else "share of calls to model A"
        )
        axes.set_ylabel("average score")
        axes.grid(alpha=0.3)
        axes.legend(loc="lower right", fontsize="small")
    figure.suptitle(f"{report.model_a} vs {report.model_b}, {report.n_rows} prompts")
    path = Path(path)
    figure.savefig(path, dpi=dpi)
    logger.info("wrote routing curves to %s", path)
    return path
