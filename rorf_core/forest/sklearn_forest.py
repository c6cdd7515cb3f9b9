"""Built-in scorers: scikit-learn random forests and extra trees.

scikit-learn fits the forest; prediction goes through
:class:`rorf_core.forest.compiled.CompiledForest`, which evaluates all trees
from flat arrays and skips scikit-learn's per-call thread start-up.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from rorf_core.errors import RouterFormatError
from rorf_core.forest.base import Scorer

__all__ = ["RandomForestScorer", "ExtraTreesScorer"]

#: RoRF's forest settings, kept as the defaults of the built-in scorers.
RORF_FOREST_DEFAULTS: dict[str, Any] = {
    "n_estimators": 100,
    "max_depth": 20,
    "max_features": 1.0,
    "min_samples_leaf": 1,
    "class_weight": None,
    "random_state": 0,
    "n_jobs": -1,
}

#: Parameters that do not change the fitted forest, so they are not saved.
_RUNTIME_PARAMS = ("n_jobs",)


class _SklearnForestScorer(Scorer):
    estimator_name: ClassVar[str]

    def __init__(self, **params: Any) -> None:
        unknown = sorted(set(params) - set(RORF_FOREST_DEFAULTS))
        if unknown:
            known = ", ".join(sorted(RORF_FOREST_DEFAULTS))
            raise TypeError(f"{self.name} scorer got unknown parameters {unknown}; known: {known}")
        super().__init__(**{**RORF_FOREST_DEFAULTS, **params})

    def _make_estimator(self) -> Any:
        from sklearn import ensemble

        estimator_class = getattr(ensemble, self.estimator_name)
        return estimator_class(**self.params)

    def fit(self, X: np.ndarray, y: np.ndarray) -> _SklearnForestScorer:
        from rorf_core.forest.compiled import CompiledForest

        estimator = self._make_estimator()
        estimator.fit(np.asarray(X, dtype=np.float32), np.asarray(y))
        self.estimator_ = estimator
        self.forest_ = CompiledForest.from_sklearn(estimator)
        self.classes_ = np.asarray(estimator.classes_)
        self.n_features_in_ = int(estimator.n_features_in_)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        if not self.is_fitted:
            raise RuntimeError(f"{self.name} scorer is not fitted; call fit() first")
        return self.forest_.predict_proba(X)

    def get_params(self) -> dict[str, Any]:
        return {k: v for k, v in self.params.items() if k not in _RUNTIME_PARAMS}

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta = {"classes": [int(c) for c in self.classes_], "n_features": self.n_features_in_}
        return meta, self.forest_.to_arrays()

    @classmethod
    def from_state(
        cls,
        params: dict[str, Any],
        meta: dict[str, Any],
        arrays: dict[str, np.ndarray],
    ) -> _SklearnForestScorer:
        from rorf_core.forest.compiled import CompiledForest

        scorer = cls(**params)
        try:
            classes = np.asarray(meta["classes"], dtype=np.int64)
            n_features = int(meta["n_features"])
        except (KeyError, TypeError, ValueError) as error:
            raise RouterFormatError(f"{cls.name} scorer state is invalid: {error!r}") from error
        forest = CompiledForest.from_arrays(arrays)
        if forest.n_classes != classes.size:
            raise RouterFormatError(
                f"{cls.name} scorer state lists {classes.size} classes but the forest "
                f"arrays hold {forest.n_classes}"
            )
        if forest.n_features != n_features:
            raise RouterFormatError(
                f"{cls.name} scorer state says {n_features} features but the forest "
                f"arrays use {forest.n_features}"
            )
        scorer.forest_ = forest
        scorer.classes_ = classes
        scorer.n_features_in_ = n_features
        return scorer

    @classmethod
    def from_estimator(cls, estimator: Any) -> _SklearnForestScorer:
        """Wrap an already fitted scikit-learn forest (for example a legacy pickle)."""
        from rorf_core.forest.compiled import CompiledForest

        known = {k: v for k, v in estimator.get_params().items() if k in RORF_FOREST_DEFAULTS}
        scorer = cls(**known)
        scorer.estimator_ = estimator
        scorer.forest_ = CompiledForest.from_sklearn(estimator)
        scorer.classes_ = np.asarray(estimator.classes_)
        scorer.n_features_in_ = int(estimator.n_features_in_)
        return scorer


class RandomForestScorer(_SklearnForestScorer):
    """scikit-learn's RandomForestClassifier with RoRF's defaults."""

    name = "random-forest"
    estimator_name = "RandomForestClassifier"


class ExtraTreesScorer(_SklearnForestScorer):
    """scikit-learn's ExtraTreesClassifier with RoRF's defaults."""

    name = "extra-trees"
    estimator_name = "ExtraTreesClassifier"
