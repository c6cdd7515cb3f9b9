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

__all__ = [
    "RandomForestScorer",
    "ExtraTreesScorer",
    "RandomForestRegressorScorer",
    "ExtraTreesRegressorScorer",
]

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

#: Regressor defaults: the forest settings of RoRF's default recipe, chosen
#: by cross-validation on the shared MMLU data (docs/quality.md).
REGRESSOR_DEFAULTS: dict[str, Any] = {
    "n_estimators": 300,
    "max_depth": None,
    "max_features": 0.5,
    "min_samples_leaf": 10,
    "random_state": 0,
    "n_jobs": -1,
}

#: Parameters that do not change the fitted forest, so they are not saved.
_RUNTIME_PARAMS = ("n_jobs",)


def _read_forest(
    name: str,
    meta: dict[str, Any],
    arrays: dict[str, np.ndarray],
    columns: int,
    column_kind: str = "classes",
) -> tuple[Any, int]:
    """Rebuild the compiled forest and check it against the saved metadata."""
    from rorf_core.forest.compiled import CompiledForest

    try:
        n_features = int(meta["n_features"])
    except (KeyError, TypeError, ValueError) as error:
        raise RouterFormatError(f"{name} scorer state is invalid: {error!r}") from error
    forest = CompiledForest.from_arrays(arrays)
    if forest.n_classes != columns:
        raise RouterFormatError(
            f"{name} scorer state lists {columns} {column_kind} but the forest "
            f"arrays hold {forest.n_classes}"
        )
    if forest.n_features != n_features:
        raise RouterFormatError(
            f"{name} scorer state says {n_features} features but the forest "
            f"arrays use {forest.n_features}"
        )
    return forest, n_features


class _SklearnForestScorer(Scorer):
    estimator_name: ClassVar[str]
    defaults: ClassVar[dict[str, Any]] = RORF_FOREST_DEFAULTS

    def __init__(self, **params: Any) -> None:
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            known = ", ".join(sorted(self.defaults))
            raise TypeError(f"{self.name} scorer got unknown parameters {unknown}; known: {known}")
        super().__init__(**{**self.defaults, **params})

    def _make_estimator(self) -> Any:
        from sklearn import ensemble

        estimator_class = getattr(ensemble, self.estimator_name)
        return estimator_class(**self.params)

    def fit(self, X: np.ndarray, y: np.ndarray) -> _SklearnForestScorer:
        from rorf_core.forest.compiled import CompiledForest

        estimator = self._make_estimator()
        estimator.fit(np.asarray(X, dtype=np.float32), np.asarray(y))
        self._adopt(estimator)
        return self

    def _adopt(self, estimator: Any) -> None:
        from rorf_core.forest.compiled import CompiledForest

        self.estimator_ = estimator
        self.forest_ = CompiledForest.from_sklearn(estimator)
        # A regressor has one output column and no classes; classes_ = [0]
        # keeps the state format the same for both kinds.
        self.classes_ = np.asarray(getattr(estimator, "classes_", [0]))
        self.n_features_in_ = int(estimator.n_features_in_)

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
        scorer = cls(**params)
        try:
            classes = np.asarray(meta["classes"], dtype=np.int64)
        except (KeyError, TypeError, ValueError) as error:
            raise RouterFormatError(f"{cls.name} scorer state is invalid: {error!r}") from error
        forest, n_features = _read_forest(cls.name, meta, arrays, classes.size)
        scorer.forest_ = forest
        scorer.classes_ = classes
        scorer.n_features_in_ = n_features
        return scorer

    @classmethod
    def from_estimator(cls, estimator: Any) -> _SklearnForestScorer:
        """Wrap an already fitted scikit-learn forest (for example a legacy pickle)."""
        known = {k: v for k, v in estimator.get_params().items() if k in cls.defaults}
        scorer = cls(**known)
        scorer._adopt(estimator)
        return scorer


class RandomForestScorer(_SklearnForestScorer):
    """scikit-learn's RandomForestClassifier with RoRF's defaults."""

    name = "random-forest"
    estimator_name = "RandomForestClassifier"


class ExtraTreesScorer(_SklearnForestScorer):
    """scikit-learn's ExtraTreesClassifier with RoRF's defaults."""

    name = "extra-trees"
    estimator_name = "ExtraTreesClassifier"


class _SklearnRegressorScorer(_SklearnForestScorer):
    is_regressor = True
    defaults = REGRESSOR_DEFAULTS

    def _adopt(self, estimator: Any) -> None:
        from rorf_core.forest.compiled import compile_regressor

        self.estimator_ = estimator
        self.forest_, self.target_low_, self.target_high_ = compile_regressor(estimator)
        self.classes_ = np.array([0])
        self.n_features_in_ = int(estimator.n_features_in_)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Return the forest's mean prediction for each row, as float64."""
        share = self.forest_.predict_proba(X)[:, 0]
        return self.target_low_ + (self.target_high_ - self.target_low_) * share

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        raise TypeError(f"{self.name} is a regressor: use predict")

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta = {
            "classes": [0],
            "n_features": self.n_features_in_,
            "target_range": [self.target_low_, self.target_high_],
        }
        return meta, self.forest_.to_arrays()

    @classmethod
    def from_state(
        cls,
        params: dict[str, Any],
        meta: dict[str, Any],
        arrays: dict[str, np.ndarray],
    ) -> _SklearnRegressorScorer:
        scorer = cls(**params)
        try:
            low, high = (float(value) for value in meta["target_range"])
        except (KeyError, TypeError, ValueError) as error:
            raise RouterFormatError(f"{cls.name} scorer state is invalid: {error!r}") from error
        # compile_regressor stores each leaf as two probability columns.
        forest, n_features = _read_forest(cls.name, meta, arrays, 2, "encoded columns")
        scorer.forest_ = forest
        scorer.target_low_, scorer.target_high_ = low, high
        scorer.classes_ = np.array([0])
        scorer.n_features_in_ = n_features
        return scorer


class RandomForestRegressorScorer(_SklearnRegressorScorer):
    """scikit-learn's RandomForestRegressor, for numeric targets."""

    name = "random-forest-regressor"
    estimator_name = "RandomForestRegressor"


class ExtraTreesRegressorScorer(_SklearnRegressorScorer):
    """scikit-learn's ExtraTreesRegressor, the forest of RoRF's default recipe."""

    name = "extra-trees-regressor"
    estimator_name = "ExtraTreesRegressor"
