"""Thresholds for a share of calls to model A."""

from __future__ import annotations

import numpy as np
import pytest

from rorf_core.calibration import calibration_table, check_share, threshold_for_share


def test_threshold_sends_requested_share() -> None:
    scores = np.random.default_rng(0).random(1000)
    for share in (0.0, 0.1, 0.5, 0.83, 1.0):
        threshold, reached = threshold_for_share(scores, share)
        assert reached == pytest.approx(share, abs=1e-9)
        assert np.mean(scores >= threshold) == pytest.approx(share, abs=1e-9)


def test_threshold_between_neighbours() -> None:
    threshold, reached = threshold_for_share(np.array([0.9, 0.7, 0.5, 0.1]), 0.5)
    assert threshold == pytest.approx(0.6)
    assert reached == 0.5


def test_ties_report_reached_share() -> None:
    scores = np.array([0.4] * 10)
    threshold, reached = threshold_for_share(scores, 0.5)
    assert threshold == pytest.approx(0.4)
    assert reached == 1.0


def test_zero_share_above_every_score() -> None:
    scores = np.array([0.2, 0.3, 0.999])
    threshold, reached = threshold_for_share(scores, 0.0)
    assert threshold > 0.999
    assert reached == 0.0


@pytest.mark.parametrize("share", [-0.1, 1.5, float("nan")])
def test_share_outside_unit_interval_rejected(share: float) -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        check_share(share)


def test_table_has_every_percent() -> None:
    table = calibration_table(np.linspace(0, 1, 201))
    assert [row["percent"] for row in table] == list(range(101))
    thresholds = [row["threshold"] for row in table]
    assert thresholds == sorted(thresholds, reverse=True)
    assert table[50]["reached"] == pytest.approx(0.5, abs=0.01)
