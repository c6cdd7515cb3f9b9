"""Routing curves, metrics, baselines, report writers, plots and `rorf evaluate`."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rorf_core.errors import DatasetError
from rorf_core.evaluation import (
    DegenerateDataWarning,
    RoutingCurve,
    cpt,
    oracle_curve,
    pgr,
    random_curve,
    routing_curve,
    routing_metrics,
    simulated_random_curves,
    summary_at_shares,
)
from rorf_core.evaluation_report import (
    CSV_COLUMNS,
    Prices,
    estimate_tokens,
    evaluate_scores,
    format_table,
    row_costs,
    write_csv,
    write_json,
)

# Four prompts worked by hand. Model A wins rows 0 and 2, B wins row 3, and
# row 1 is a tie: always-A scores 0.75, always-B 0.5, so the gap is 0.25.
A4 = np.array([1.0, 1.0, 1.0, 0.0])
B4 = np.array([0.0, 1.0, 0.0, 1.0])
# Ranks rows 0, 2, 3, 1: the two wins first, then the loss, then the tie.
ROUTER4 = np.array([0.9, 0.2, 0.6, 0.4])


def synthetic_scores(count: int = 2000, seed: int = 1) -> tuple[np.ndarray, ...]:
    """Return scores of a stronger A, a weaker B and a noisy but useful router."""
    rng = np.random.default_rng(seed)
    a = (rng.random(count) < 0.8).astype(float)
    b = (rng.random(count) < 0.6).astype(float)
    router = np.clip(0.5 + 0.3 * (a - b) + rng.normal(0, 0.3, count), 0, 1)
    return a, b, router


def hand_curve() -> RoutingCurve:
    # Scores from always-B 0.0 to always-A 1.0, so PGR equals the score.
    return RoutingCurve(
        shares=[0.0, 0.25, 0.5, 0.75, 1.0],
        scores=[0.0, 0.3, 0.6, 0.9, 1.0],
        thresholds=[1.0, 0.9, 0.6, 0.4, 0.2],
    )


# Curves ------------------------------------------------------------------


def test_curve_hand_worked() -> None:
    curve = routing_curve(ROUTER4, A4, B4)
    np.testing.assert_allclose(curve.shares, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(curve.scores, [0.5, 0.75, 1.0, 0.75, 0.75])
    assert curve.thresholds[0] > 0.9
    assert curve.thresholds[0] == np.nextafter(0.9, 1.0)
    np.testing.assert_array_equal(curve.thresholds[1:], [0.9, 0.6, 0.4, 0.2])
    assert curve.costs is None


def test_curve_arrays_read_only() -> None:
    curve = routing_curve(ROUTER4, A4, B4)
    with pytest.raises(ValueError):
        curve.scores[0] = 2.0


def test_curve_ties_routed_fractionally() -> None:
    # Both rows tie on the router, and A gains 1 on row 0 only. Sending one of
    # the two is worth half a gain, whichever row comes first in the table.
    forward = routing_curve([0.5, 0.5], [1.0, 0.0], [0.0, 0.0])
    backward = routing_curve([0.5, 0.5], [0.0, 1.0], [0.0, 0.0])
    np.testing.assert_allclose(forward.scores, [0.0, 0.25, 0.5])
    np.testing.assert_allclose(backward.scores, [0.0, 0.25, 0.5])


def test_curve_ignores_row_order() -> None:
    a, b, router = synthetic_scores(500)
    router = np.round(router, 1)  # many ties
    order = np.random.default_rng(5).permutation(len(a))
    curve = routing_curve(router, a, b)
    shuffled = routing_curve(router[order], a[order], b[order])
    np.testing.assert_allclose(shuffled.scores, curve.scores, atol=1e-12)


def test_constant_router_is_random_line() -> None:
    a, b, _ = synthetic_scores(300)
    constant = routing_curve(np.full(len(a), 0.3), a, b)
    np.testing.assert_allclose(constant.scores, random_curve(a, b).scores, atol=1e-12)
    assert routing_metrics(constant, a, b).apgr == pytest.approx(0.5, abs=1e-12)


def test_oracle_curve_hand_worked() -> None:
    curve = oracle_curve(A4, B4)
    np.testing.assert_allclose(curve.scores, [0.5, 0.75, 1.0, 1.0, 0.75])
    metrics = routing_metrics(curve, A4, B4)
    # PGR is 0, 1, 2, 2, 1 at steps of 0.25.
    assert metrics.apgr == pytest.approx(1.375)
    assert metrics.best_score == pytest.approx(1.0)
    assert metrics.best_share == pytest.approx(0.5)


def test_random_line_apgr_exact() -> None:
    a, b, _ = synthetic_scores()
    curve = random_curve(a, b)
    np.testing.assert_allclose(
        curve.scores, b.mean() + curve.shares * (a.mean() - b.mean())
    )
    assert np.isnan(curve.thresholds).all()
    assert routing_metrics(curve, a, b).apgr == pytest.approx(0.5, abs=1e-12)


def test_simulated_random_near_half() -> None:
    a, b, _ = synthetic_scores()
    curves = simulated_random_curves(a, b, seeds=range(20))
    apgrs = np.array([routing_metrics(curve, a, b).apgr for curve in curves])
    standard_error = apgrs.std(ddof=1) / math.sqrt(len(apgrs))
    # Tolerance: four standard errors of the mean over 20 seeds, which on
    # these 2000 rows is about 0.03.
    assert abs(apgrs.mean() - 0.5) <= 4 * standard_error
    assert abs(apgrs.mean() - 0.5) < 0.03
    assert apgrs.std() > 0  # the seeds give different curves


def test_simulated_random_repeatable() -> None:
    a, b, _ = synthetic_scores(200)
    first = simulated_random_curves(a, b, seeds=[3])[0]
    second = simulated_random_curves(a, b, seeds=[3])[0]
    np.testing.assert_array_equal(first.scores, second.scores)


# Metrics -----------------------------------------------------------------


def test_metrics_hand_worked() -> None:
    metrics = routing_metrics(routing_curve(ROUTER4, A4, B4), A4, B4)
    # PGR is 0, 1, 2, 1, 1, so trapezoids of width 0.25 sum to 4.5 * 0.25.
    assert metrics.apgr == pytest.approx(1.125)
    assert metrics.cpt_50 == pytest.approx(0.125)
    assert metrics.cpt_80 == pytest.approx(0.2)
    assert metrics.best_score == pytest.approx(1.0)
    assert metrics.best_share == pytest.approx(0.5)
    assert metrics.share_matching_a == pytest.approx(0.25)
    assert metrics.score_a == pytest.approx(0.75)
    assert metrics.score_b == pytest.approx(0.5)
    assert metrics.gap == pytest.approx(0.25)
    assert metrics.n_rows == 4


def test_metrics_reversed_router() -> None:
    curve = routing_curve(-ROUTER4, A4, B4)
    np.testing.assert_allclose(curve.scores, [0.5, 0.5, 0.25, 0.5, 0.75])
    metrics = routing_metrics(curve, A4, B4)
    assert metrics.apgr == pytest.approx(0.25 * (0 - 0.5 - 0.5 + 0.5))
    # PGR first reaches 0.5 halfway between share 0.75 (PGR 0) and 1 (PGR 1).
    assert metrics.cpt_50 == pytest.approx(0.875)
    assert metrics.best_share == 1.0
    assert metrics.share_matching_a is None


def test_perfect_router_matches_oracle() -> None:
    a, b, _ = synthetic_scores()
    jitter = np.random.default_rng(2).random(len(a)) * 1e-3
    # Same order as score_a - score_b. The jitter only breaks ties, and rows
    # with equal gains are interchangeable.
    perfect = routing_metrics(routing_curve((a - b) + jitter, a, b), a, b)
    oracle = routing_metrics(oracle_curve(a, b), a, b)
    assert perfect.apgr == pytest.approx(oracle.apgr, abs=1e-12)
    assert perfect.best_score == pytest.approx(oracle.best_score, abs=1e-12)
    assert oracle.apgr > 1.0  # the oracle beats always-A


def test_cpt_hand_curve() -> None:
    curve = hand_curve()
    np.testing.assert_allclose(pgr(curve), [0.0, 0.3, 0.6, 0.9, 1.0])
    # PGR 0.5 lies 2/3 of the way from 0.3 (share 0.25) to 0.6 (share 0.5).
    assert cpt(curve, 0.5) == pytest.approx(0.25 + 0.25 * 2 / 3)
    assert cpt(curve, 0.8) == pytest.approx(0.5 + 0.25 * 2 / 3)
    assert cpt(curve, 0.0) == 0.0
    assert cpt(curve, 1.0) == pytest.approx(1.0)
    assert cpt(curve, 1.5) is None


def test_metrics_a_never_beats_b() -> None:
    a = np.array([0.0, 0.0, 1.0, 0.5])
    b = np.array([1.0, 0.0, 1.0, 0.5])
    with pytest.warns(DegenerateDataWarning, match="Swap model A and model B"):
        metrics = routing_metrics(routing_curve([0.1, 0.2, 0.3, 0.4], a, b), a, b)
    assert metrics.gap == pytest.approx(-0.25)
    assert math.isfinite(metrics.apgr)
    # Every share of calls to A is at least as good as always-A here.
    assert metrics.share_matching_a == 0.0
    assert metrics.best_share == 0.0


def test_metrics_zero_gap() -> None:
    a = np.array([1.0, 0.0, 1.0])
    b = np.array([0.0, 1.0, 1.0])
    curve = routing_curve([0.9, 0.1, 0.5], a, b)
    with pytest.warns(DegenerateDataWarning, match="same average score"):
        metrics = routing_metrics(curve, a, b)
    assert math.isnan(metrics.apgr)
    assert metrics.cpt_50 is None
    assert metrics.cpt_80 is None
    assert metrics.share_matching_a is None
    assert metrics.best_score == pytest.approx(1.0)
    assert np.isnan(pgr(curve)).all()


def test_zero_gap_report_writes_null(tmp_path: Path) -> None:
    a = np.array([1.0, 0.0])
    b = np.array([0.0, 1.0])
    with pytest.warns(DegenerateDataWarning):
        report = evaluate_scores({"r": [0.7, 0.2]}, a, b, seeds=range(2))
    data = json.loads(write_json(report, tmp_path / "m.json").read_text())
    assert data["routers"]["r"]["metrics"]["apgr"] is None
    assert data["baselines"]["random-simulated"]["metrics"]["apgr"] is None
    assert "nan" in format_table(report)


@pytest.mark.parametrize(
    ("router", "a", "b", "match"),
    [
        ([], [], [], "scores_a is empty"),
        ([0.5], [1.0, 0.0], [0.0, 1.0], "router_scores has 1 rows"),
        ([0.5, 0.5], [1.0, 0.0], [0.0], "scores_b has 1 rows"),
        ([0.5, float("nan")], [1.0, 0.0], [0.0, 1.0], "at row 1"),
        ([[0.5, 0.5]], [[1.0, 0.0]], [[0.0, 1.0]], "one-dimensional"),
    ],
)
def test_curve_rejects_bad_input(router, a, b, match) -> None:
    with pytest.raises(DatasetError, match=match):
        routing_curve(router, a, b)


def test_metrics_rejects_other_rows() -> None:
    curve = routing_curve(ROUTER4, A4, B4)
    with pytest.raises(DatasetError, match="the curve has 4 rows"):
        routing_metrics(curve, A4[:3], B4[:3])


# Shares, thresholds and costs -----------------------------------------------


def test_summary_at_shares_hand_worked() -> None:
    curve = routing_curve(ROUTER4, A4, B4)
    rows = summary_at_shares(curve, shares=(0.125, 0.5))
    assert rows[0]["score"] == pytest.approx(0.625)
    assert rows[0]["pgr"] == pytest.approx(0.5)
    assert rows[1]["score"] == pytest.approx(1.0)
    # Two of four rows go to A: midway between the 2nd and 3rd router scores.
    assert rows[1]["threshold"] == pytest.approx(0.5)
    assert "cost" not in rows[0]


def test_summary_at_shares_defaults() -> None:
    rows = summary_at_shares(hand_curve())
    assert [row["share"] for row in rows] == pytest.approx(
        [0.1 * i for i in range(1, 10)]
    )
    with pytest.raises(ValueError, match="share must be in"):
        summary_at_shares(hand_curve(), shares=(1.5,))


def test_summary_no_threshold_for_baselines() -> None:
    a, b, _ = synthetic_scores(100)
    assert summary_at_shares(random_curve(a, b))[0]["threshold"] is None
    # The oracle ranks by score_a - score_b, which is no router threshold.
    assert summary_at_shares(oracle_curve(a, b))[0]["threshold"] is None


def test_estimate_tokens_rule() -> None:
    np.testing.assert_allclose(estimate_tokens(["one two  three", "x"]), [3.9, 1.3])


def test_row_costs_per_call_and_tokens() -> None:
    prices = Prices(a_per_call=0.01, b_per_call=0.001, a_per_mtok=10, b_per_mtok=1)
    cost_a, cost_b = row_costs(prices, [1e6, 0.0])
    np.testing.assert_allclose(cost_a, [10.01, 0.01])
    np.testing.assert_allclose(cost_b, [1.001, 0.001])
    with pytest.raises(DatasetError, match="negative count"):
        row_costs(prices, [1.0, -1.0])


def test_prices_reject_negative() -> None:
    with pytest.raises(ValueError):
        Prices(a_per_call=-1)


def test_cost_curve_tracks_calls_to_a() -> None:
    a, b, router = synthetic_scores(400)
    costs = row_costs(Prices(a_per_call=2.0), np.zeros(len(a)))
    curve = routing_curve(router, a, b, costs=costs)
    # A call to A costs 2 and one to B nothing, so the cost is 2 * share.
    np.testing.assert_allclose(curve.costs, 2.0 * curve.shares, atol=1e-12)


def test_cost_curve_follows_routed_rows() -> None:
    # Row 0 costs 3 on A and row 1 costs 1. Row 0 goes to A first.
    cost_a = np.array([3.0, 1.0])
    cost_b = np.zeros(2)
    curve = routing_curve([0.9, 0.1], [1.0, 0.0], [0.0, 0.0], costs=(cost_a, cost_b))
    np.testing.assert_allclose(curve.costs, [0.0, 1.5, 2.0])


# Reports and writers -------------------------------------------------------


@pytest.fixture
def report():
    a, b, router = synthetic_scores(500)
    prompts = ["word " * (i % 7 + 1) for i in range(len(a))]
    return evaluate_scores(
        {"noisy": router, "tied": np.round(router, 1)},
        a,
        b,
        prices=Prices(a_per_call=0.01, b_per_mtok=0.5),
        prompts=prompts,
        seeds=range(5),
        model_a="strong",
        model_b="weak",
        metadata={"dataset": "synthetic"},
    )


def test_report_contents(report) -> None:
    assert list(report.routers) == ["noisy", "tied"]
    assert list(report.baselines) == ["oracle", "random", "random-simulated"]
    assert report.n_rows == 500
    assert report.cost_a == pytest.approx(0.01)
    assert report.token_rule == "whitespace-separated words x 1.3"
    simulated = report.baselines["random-simulated"]
    assert simulated.metrics.apgr_std is not None
    assert simulated.metrics.apgr_std > 0
    assert simulated.score_std is not None
    assert len(report.routers["noisy"].calibration) == 101
    assert report.baselines["oracle"].calibration is None
    noisy = report.routers["noisy"].metrics
    assert noisy.apgr > 0.5  # the synthetic router carries signal
    assert noisy.apgr < report.baselines["oracle"].metrics.apgr


def test_report_calibration_sends_share(report) -> None:
    router = synthetic_scores(500)[2]
    table = report.routers["noisy"].calibration
    half = table[50]
    assert half["percent"] == 50
    assert np.mean(router >= half["threshold"]) == pytest.approx(0.5)


def test_report_rejects_baseline_name() -> None:
    with pytest.raises(ValueError, match="reserved for a baseline"):
        evaluate_scores({"oracle": ROUTER4}, A4, B4)


def test_report_prices_need_tokens() -> None:
    with pytest.raises(ValueError, match="tokens="):
        evaluate_scores({"r": ROUTER4}, A4, B4, prices=Prices(a_per_call=1))


def test_report_given_tokens() -> None:
    result = evaluate_scores(
        {"r": ROUTER4}, A4, B4, prices=Prices(a_per_mtok=1e6), tokens=[1, 2, 3, 4]
    )
    assert result.cost_a == pytest.approx(2.5)
    assert result.token_rule == "given"


def test_router_metrics_dict(report) -> None:
    data = report.router_metrics_dict("noisy")
    assert data["apgr"] == pytest.approx(report.routers["noisy"].metrics.apgr)
    assert data["oracle_apgr"] == pytest.approx(report.baselines["oracle"].metrics.apgr)
    json.dumps(data, allow_nan=False)
    with pytest.raises(KeyError, match="Routers: noisy, tied"):
        report.router_metrics_dict("missing")


def test_format_table(report) -> None:
    text = format_table(report)
    lines = text.splitlines()
    assert lines[0].startswith("500 prompts. Model A strong")
    assert "Average cost per call: always-A 0.01" in text
    header = next(line for line in lines if line.startswith("router"))
    assert "APGR" in header
    assert "CPT(80%)" in header
    noisy_line = next(line for line in lines if line.startswith("noisy "))
    assert f"{report.routers['noisy'].metrics.apgr:.4f}" in noisy_line
    assert "±" in next(line for line in lines if line.startswith("random-simulated"))
    assert "score at share" in text
    summary = report.training_summary()
    assert "score at share" in summary
    assert "always-A" in summary


def test_write_json(report, tmp_path: Path) -> None:
    path = write_json(report, tmp_path / "metrics.json")
    data = json.loads(path.read_text())
    assert data["model_a"] == "strong"
    assert data["n_rows"] == 500
    assert data["gap"] == pytest.approx(report.score_a - report.score_b)
    assert data["prices"]["a_per_call"] == 0.01
    assert data["seeds"] == [0, 1, 2, 3, 4]
    assert data["metadata"] == {"dataset": "synthetic"}
    noisy = data["routers"]["noisy"]
    assert noisy["metrics"]["apgr"] == pytest.approx(
        report.routers["noisy"].metrics.apgr
    )
    assert len(noisy["at_shares"]) == 9
    assert "cost" in noisy["at_shares"][0]
    assert len(noisy["calibration"]) == 101
    assert set(data["baselines"]) == {"oracle", "random", "random-simulated"}
    assert data["baselines"]["random"]["metrics"]["apgr"] == pytest.approx(0.5)
    assert data["baselines"]["random"]["at_shares"][0]["threshold"] is None


def test_write_csv(report, tmp_path: Path) -> None:
    path = write_csv(report, tmp_path / "curve.csv")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == 5 * (report.n_rows + 1)
    noisy = [row for row in rows if row["router"] == "noisy"]
    curve = report.routers["noisy"].curve
    assert [float(row["score"]) for row in noisy] == pytest.approx(list(curve.scores))
    assert [float(row["share"]) for row in noisy] == pytest.approx(list(curve.shares))
    assert float(noisy[-1]["pgr"]) == pytest.approx(1.0)
    assert noisy[0]["kind"] == "router"
    assert noisy[0]["score_std"] == ""
    random_rows = [row for row in rows if row["router"] == "random"]
    assert random_rows[0]["kind"] == "baseline"
    assert random_rows[0]["threshold"] == ""
    simulated = [row for row in rows if row["router"] == "random-simulated"]
    assert float(simulated[250]["score_std"]) > 0


def _assert_png(path: Path) -> np.ndarray:
    import matplotlib.image

    assert path.stat().st_size > 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)
    assert image.ndim == 3
    return image


def test_plot_with_costs(report, tmp_path: Path) -> None:
    from rorf_core.plotting import plot_curves

    image = _assert_png(plot_curves(report, tmp_path / "curve.png"))
    # Two panels side by side: wider than tall.
    assert image.shape[1] > image.shape[0]


def test_plot_without_costs(tmp_path: Path) -> None:
    from rorf_core.evaluation import plot_curves

    result = evaluate_scores({"r": ROUTER4}, A4, B4, seeds=range(3))
    image = _assert_png(plot_curves(result, tmp_path / "curve.png"))
    assert image.shape[1] < 2 * image.shape[0]


def test_import_does_not_load_matplotlib() -> None:
    code = (
        "import sys, rorf_core, rorf_core.evaluation, rorf_core.evaluation_report,"
        " rorf_core.plotting; print('matplotlib' in sys.modules)"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert output.stdout.strip() == "False"


# The command ---------------------------------------------------------------


@pytest.fixture
def trained_router(battles_file: Path, keyword_plugin, cache, tmp_path: Path) -> Path:
    from rorf_core.training import TrainingConfig, train_router

    config = TrainingConfig(
        dataset=str(battles_file),
        model_a="strong/model",
        model_b="weak-model",
        embedder="keyword-test",
        scorer_params={"n_estimators": 10, "max_depth": 4},
    )
    out = tmp_path / "router"
    train_router(config, cache=cache, out=out, progress=False)
    return out


def test_command_writes_outputs(
    trained_router: Path, battles_file: Path, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from rorf_core.cli.evaluate import evaluate

    out = tmp_path / "eval"
    result = CliRunner().invoke(
        evaluate,
        [
            "--router",
            str(trained_router),
            "--dataset",
            str(battles_file),
            "--price-a-per-call",
            "0.01",
            "--random-seeds",
            "3",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "APGR" in result.output
    data = json.loads((out / "metrics.json").read_text())
    assert list(data["routers"]) == [str(trained_router)]
    assert data["model_a"] == "strong/model"
    assert data["n_rows"] == 300
    assert data["metadata"]["dataset"] == str(battles_file)
    assert data["cost_a"] == pytest.approx(0.01)
    # Model A wins the math and code prompts, and the router learns that.
    assert data["routers"][str(trained_router)]["metrics"]["apgr"] > 0.6
    assert (out / "curve.csv").stat().st_size > 0
    _assert_png(out / "curve.png")


def test_command_rejects_swapped_models(
    trained_router: Path, battles_file: Path, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from rorf_core.cli.evaluate import evaluate

    arguments = ["--router", str(trained_router), "--dataset", str(battles_file)]
    arguments += ["--model-a", "weak-model", "--model-b", "strong/model"]
    arguments += ["--out", str(tmp_path / "eval")]
    result = CliRunner().invoke(evaluate, arguments)
    assert result.exit_code == 2
    assert "--model-a strong/model --model-b weak-model" in result.output
    assert not (tmp_path / "eval").exists()


def test_command_in_rorf_group() -> None:
    from rorf_core.cli import _add_commands, cli

    _add_commands()
    assert "evaluate" in cli.commands
