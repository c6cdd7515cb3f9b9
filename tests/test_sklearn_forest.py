"""Built-in scikit-learn scorers: regressors through the compiled forest."""

from __future__ import annotations

import numpy as np
import pytest

from rorf_core.errors import RouterFormatError
from rorf_core.forest.sklearn_forest import ExtraTreesRegressorScorer, RandomForestRegressorScorer


@pytest.mark.parametrize("scorer_class", [ExtraTreesRegressorScorer, RandomForestRegressorScorer])
def test_regressor_matches_sklearn(scorer_class) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 6)).astype(np.float32)
    y = np.sign(X[:, 0] + rng.normal(size=400))
    scorer = scorer_class(n_estimators=20, min_samples_leaf=3).fit(X, y)
    np.testing.assert_allclose(scorer.predict(X), scorer.estimator_.predict(X), atol=1e-6)
    meta, arrays = scorer.to_state()
    restored = scorer_class.from_state(scorer.get_params(), meta, arrays)
    np.testing.assert_allclose(restored.predict(X), scorer.estimator_.predict(X), atol=1e-6)
    assert restored.is_regressor


def test_regressor_rejects_proba() -> None:
    scorer = ExtraTreesRegressorScorer(n_estimators=2).fit(np.eye(4), np.array([0.0, 1, -1, 0]))
    with pytest.raises(TypeError, match="use predict"):
        scorer.predict_proba(np.eye(4))


def test_regressor_state_missing_range() -> None:
    scorer = ExtraTreesRegressorScorer(n_estimators=2).fit(np.eye(4), np.array([0.0, 1, -1, 0]))
    meta, arrays = scorer.to_state()
    del meta["target_range"]
    with pytest.raises(RouterFormatError, match="target_range"):
        ExtraTreesRegressorScorer.from_state(scorer.get_params(), meta, arrays)


def test_unknown_parameter_named() -> None:
    with pytest.raises(TypeError, match="class_weight"):
        ExtraTreesRegressorScorer(class_weight="balanced")
