"""A forest backend stand-in: a nearest-centroid classifier with soft votes."""

from __future__ import annotations

from typing import Any

import numpy as np

from rorf_core import Scorer
from rorf_core.errors import RouterFormatError


class NearestCentroidScorer(Scorer):
    name = "example-nearest-centroid"

    def __init__(self, *, temperature: float = 1.0) -> None:
        super().__init__(temperature=temperature)

    def fit(self, X: np.ndarray, y: np.ndarray) -> NearestCentroidScorer:
        self.classes_ = np.unique(y)
        self.centroids_ = np.stack([X[y == label].mean(axis=0) for label in self.classes_])
        self.n_features_in_ = X.shape[1]
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        distances = ((X[:, None, :] - self.centroids_[None]) ** 2).sum(axis=2)
        logits = -distances / self.params["temperature"]
        logits -= logits.max(axis=1, keepdims=True)
        weights = np.exp(logits)
        return weights / weights.sum(axis=1, keepdims=True)

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta = {"classes": self.classes_.tolist(), "n_features": self.n_features_in_}
        return meta, {"centroids": self.centroids_.astype(np.float32)}

    @classmethod
    def from_state(
        cls, params: dict[str, Any], meta: dict[str, Any], arrays: dict[str, np.ndarray]
    ) -> NearestCentroidScorer:
        scorer = cls(**params)
        if "centroids" not in arrays:
            raise RouterFormatError("example-nearest-centroid state has no 'centroids' array")
        scorer.centroids_ = arrays["centroids"].astype(np.float64)
        scorer.classes_ = np.asarray(meta["classes"])
        scorer.n_features_in_ = int(meta["n_features"])
        if scorer.centroids_.shape != (scorer.classes_.size, scorer.n_features_in_):
            raise RouterFormatError(
                f"centroids have shape {scorer.centroids_.shape}, expected "
                f"({scorer.classes_.size}, {scorer.n_features_in_})"
            )
        return scorer
