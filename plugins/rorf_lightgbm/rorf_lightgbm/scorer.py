"""The ``lightgbm-rf`` scorer: LightGBM trained in random-forest mode.

LightGBM's ``rf`` boosting grows each tree on a bagged sample of the rows
(and, optionally, of the features). It averages the trees' outputs instead of
adding them up, so the model is a random forest built with LightGBM's
histogram-based tree learner. The objective is multiclass over the labels
present in the training rows.

The fitted state is LightGBM's text model stored as a ``uint8`` array, checked
by :mod:`rorf_lightgbm._model_text` before LightGBM reads it. Nothing is
pickled.
"""

from __future__ import annotations

import hashlib
import logging
import numbers
from typing import Any, ClassVar

import numpy as np

from rorf_core.errors import RouterFormatError
from rorf_core.forest.base import Scorer
from rorf_lightgbm._model_text import (
    MAX_LEAVES,
    check_model_text,
    model_text_for_state,
)

logger = logging.getLogger(__name__)

__all__ = ["LIGHTGBM_RF_DEFAULTS", "MODEL_ARRAY", "LightGBMForestScorer"]

#: Default hyper-parameters. ``max_depth``, ``n_estimators`` and
#: ``random_state`` follow RoRF's scikit-learn forest; the rest is explained in
#: docs/plugins/lightgbm.md.
LIGHTGBM_RF_DEFAULTS: dict[str, Any] = {
    "n_estimators": 100,
    "num_leaves": 63,
    "max_depth": 20,
    "min_child_samples": 10,
    # 1 - 1/e: the expected share of distinct rows in a bootstrap sample, as
    # drawn by scikit-learn's forests. LightGBM samples without replacement.
    "bagging_fraction": 0.632,
    # All features for every tree, like RoRF's max_features=1.0.
    "feature_fraction": 1.0,
    "random_state": 0,
    "n_jobs": -1,
}

#: Parameters that do not change the fitted model, so they are not saved.
_RUNTIME_PARAMS = ("n_jobs",)

#: Name of the array that contains the ASCII bytes of LightGBM's text model.
MODEL_ARRAY = "lightgbm_model"

# LightGBM's seeds are C ints.
_MAX_SEED = 2**31 - 1


class LightGBMForestScorer(Scorer):
    """A LightGBM random forest (``boosting_type="rf"``) over embeddings.

    :param n_estimators: number of trees per class.
    :param num_leaves: maximum leaves per tree (LightGBM grows trees best-first).
    :param max_depth: maximum tree depth; ``None`` or a value ``<= 0`` means
        no limit.
    :param min_child_samples: minimum number of training rows in a leaf.
    :param bagging_fraction: share of rows, drawn without replacement, that
        each tree is trained on, in (0, 1].
    :param feature_fraction: share of features each tree may split on, in
        (0, 1]. At least one of the two fractions must be below 1.
    :param random_state: seed for row and feature sampling.
    :param n_jobs: threads for training and prediction; ``-1`` uses
        OpenMP's default, normally one per core. A single row is always
        predicted on one thread.
    """

    name: ClassVar[str] = "lightgbm-rf"

    booster_: Any

    def __init__(self, **params: Any) -> None:
        unknown = sorted(set(params) - set(LIGHTGBM_RF_DEFAULTS))
        if unknown:
            known = ", ".join(sorted(LIGHTGBM_RF_DEFAULTS))
            raise TypeError(
                f"{self.name} scorer got unknown parameters {unknown}; known: {known}"
            )
        super().__init__(**{**LIGHTGBM_RF_DEFAULTS, **params})

    def get_params(self) -> dict[str, Any]:
        return {k: v for k, v in self.params.items() if k not in _RUNTIME_PARAMS}

    def fit(self, X: np.ndarray, y: np.ndarray) -> LightGBMForestScorer:
        """Fit one forest per class on embeddings ``X`` and integer labels ``y``."""
        import lightgbm

        features = _check_features(X, scorer=self.name)
        labels = _check_labels(y, len(features), scorer=self.name)
        training_params = self._lightgbm_params()
        classes, encoded = np.unique(labels, return_inverse=True)
        booster = None
        if classes.size == 1:
            # LightGBM's multiclass objective needs two classes; a single
            # label needs no model, since its probability is always 1.
            logger.warning(
                "%s: every training label is %d, so the scorer will always "
                "return probability 1 for it",
                self.name,
                int(classes[0]),
            )
        else:
            training_params["num_class"] = int(classes.size)
            dataset = lightgbm.Dataset(features, label=encoded, free_raw_data=True)
            booster = lightgbm.train(
                training_params,
                dataset,
                num_boost_round=int(self.params["n_estimators"]),
            )
        self.booster_ = booster
        self.n_features_in_ = int(features.shape[1])
        self.classes_ = classes.astype(np.int64)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Return class probabilities ``(n, len(classes_))``; columns follow ``classes_``."""
        if not self.is_fitted:
            raise RuntimeError(f"{self.name} scorer is not fitted; call fit() first")
        features = _check_features(
            X, scorer=self.name, n_features=self.n_features_in_, allow_empty=True
        )
        n_rows, n_classes = len(features), int(self.classes_.size)
        if self.booster_ is None:
            return np.ones((n_rows, 1), dtype=np.float64)
        if n_rows == 0:
            return np.zeros((0, n_classes), dtype=np.float64)
        # One row has nothing to split between threads, and waking OpenMP
        # threads on a busy machine made one-row latency's 90th percentile
        # 12 ms instead of 0.13 ms (see docs/plugins/lightgbm.md).
        threads = 1 if n_rows == 1 else self._num_threads()
        proba = self.booster_.predict(features, num_threads=threads)
        return np.asarray(proba, dtype=np.float64).reshape(n_rows, n_classes)

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Return JSON metadata and the text model as one ``uint8`` array."""
        import lightgbm

        if not self.is_fitted:
            raise RuntimeError(f"{self.name} scorer is not fitted; call fit() first")
        text = ""
        if self.booster_ is not None:
            text = model_text_for_state(self.booster_.model_to_string())
        data = text.encode("ascii")
        meta = {
            "classes": [int(label) for label in self.classes_],
            "n_features": self.n_features_in_,
            "model_sha256": hashlib.sha256(data).hexdigest(),
            "lightgbm_version": lightgbm.__version__,
        }
        return meta, {MODEL_ARRAY: np.frombuffer(data, dtype=np.uint8).copy()}

    @classmethod
    def from_state(
        cls,
        params: dict[str, Any],
        meta: dict[str, Any],
        arrays: dict[str, np.ndarray],
    ) -> LightGBMForestScorer:
        """Rebuild a fitted scorer; raise RouterFormatError on an invalid state."""
        scorer = _scorer_from_params(cls, params)
        classes, n_features, digest = _read_meta(meta)
        data = _read_model_bytes(arrays, digest)
        if classes.size == 1:
            if data:
                raise RouterFormatError(
                    f"{cls.name} scorer state has one class but a non-empty "
                    f"{MODEL_ARRAY!r} array; save the router again"
                )
            scorer.booster_ = None
        else:
            scorer.booster_ = _load_booster(data, classes.size, n_features)
        _log_version_difference(meta)
        scorer.n_features_in_ = n_features
        scorer.classes_ = classes
        return scorer

    def _num_threads(self) -> int:
        n_jobs = self.params["n_jobs"]
        # LightGBM reads num_threads <= 0 as "OpenMP's default".
        return 0 if n_jobs == -1 else int(n_jobs)

    def _lightgbm_params(self) -> dict[str, Any]:
        """Check the hyper-parameters and return LightGBM's training parameters."""
        p = self.params
        _check_int(p, "n_estimators", low=1)
        _check_int(p, "num_leaves", low=2, high=MAX_LEAVES)
        if p["max_depth"] is not None:
            _check_int(p, "max_depth")
        _check_int(p, "min_child_samples", low=1)
        _check_int(p, "random_state", low=0, high=_MAX_SEED)
        for key in ("bagging_fraction", "feature_fraction"):
            _check_fraction(p, key)
        if p["bagging_fraction"] == 1.0 and p["feature_fraction"] == 1.0:
            raise ValueError(
                f"{self.name} scorer needs bagging_fraction or feature_fraction "
                "below 1: LightGBM's random-forest mode samples rows or features "
                "for each tree. Use the default bagging_fraction=0.632."
            )
        if p["n_jobs"] != -1:
            _check_int(p, "n_jobs", low=1)
        return {
            "objective": "multiclass",
            "boosting": "rf",
            "num_leaves": int(p["num_leaves"]),
            "max_depth": -1 if p["max_depth"] is None else int(p["max_depth"]),
            "min_data_in_leaf": int(p["min_child_samples"]),
            "bagging_fraction": float(p["bagging_fraction"]),
            "bagging_freq": 1,
            "feature_fraction": float(p["feature_fraction"]),
            "seed": int(p["random_state"]),
            "num_threads": self._num_threads(),
            # Same model for the same seed whatever the thread count.
            "deterministic": True,
            "force_col_wise": True,
            "verbosity": -1,
        }


def _check_int(
    params: dict[str, Any], key: str, *, low: int | None = None, high: int | None = None
) -> None:
    value = params[key]
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{key} must be an integer, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        lowest = "-inf" if low is None else low
        highest = "inf" if high is None else high
        bounds = f"{lowest}..{highest}"
        raise ValueError(f"{key} must be in {bounds}, got {value!r}")


def _check_fraction(params: dict[str, Any], key: str) -> None:
    value = params[key]
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{key} must be a number in (0, 1], got {value!r}")
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{key} must be in (0, 1], got {value!r}")


def _check_features(
    X: Any, *, scorer: str, n_features: int | None = None, allow_empty: bool = False
) -> np.ndarray:
    features = np.asarray(X)
    if features.ndim != 2:
        raise ValueError(
            f"{scorer} scorer expects a 2-D array of embeddings, got shape "
            f"{features.shape}; use X.reshape(1, -1) for a single embedding"
        )
    if not np.issubdtype(features.dtype, np.number) or np.iscomplexobj(features):
        raise ValueError(
            f"{scorer} scorer expects real numbers, got dtype {features.dtype}"
        )
    if len(features) == 0 and not allow_empty:
        raise ValueError(f"{scorer} scorer cannot fit on zero rows")
    if n_features is not None and features.shape[1] != n_features:
        raise ValueError(
            f"{scorer} scorer was fitted on {n_features} features but X has "
            f"{features.shape[1]}; embed with the router's own embedder"
        )
    features = features.astype(np.float32, copy=False)
    if not np.isfinite(features).all():
        row = int(np.flatnonzero(~np.isfinite(features).all(axis=1))[0])
        raise ValueError(f"{scorer} scorer got NaN or infinite values in row {row}")
    return features


def _check_labels(y: Any, n_rows: int, *, scorer: str) -> np.ndarray:
    labels = np.asarray(y)
    if labels.shape != (n_rows,):
        raise ValueError(
            f"{scorer} scorer expects one label per row: y has shape "
            f"{labels.shape}, X has {n_rows} rows"
        )
    whole_floats = np.issubdtype(labels.dtype, np.floating) and bool(
        np.all(np.isfinite(labels) & (labels == np.round(labels)))
    )
    if not (np.issubdtype(labels.dtype, np.integer) or whole_floats):
        raise ValueError(
            f"{scorer} scorer expects integer class labels, got dtype {labels.dtype}"
        )
    return labels.astype(np.int64)


def _scorer_from_params(
    cls: type[LightGBMForestScorer], params: dict[str, Any]
) -> LightGBMForestScorer:
    try:
        scorer = cls(**params)
        scorer._lightgbm_params()
    except (TypeError, ValueError) as error:
        raise RouterFormatError(
            f"{cls.name} scorer parameters are invalid: {error}"
        ) from error
    return scorer


def _read_meta(meta: dict[str, Any]) -> tuple[np.ndarray, int, str]:
    name = LightGBMForestScorer.name
    try:
        classes = np.asarray(meta["classes"], dtype=np.int64)
        n_features = meta["n_features"]
        digest = meta["model_sha256"]
    except (KeyError, TypeError, ValueError, OverflowError) as error:
        raise RouterFormatError(
            f"{name} scorer metadata is invalid ({error!r}); it needs 'classes', "
            "'n_features' and 'model_sha256'"
        ) from error
    if classes.ndim != 1 or classes.size == 0 or (np.diff(classes) <= 0).any():
        raise RouterFormatError(
            f"{name} scorer metadata 'classes' must be a non-empty increasing "
            f"list of integers, got {meta['classes']!r}"
        )
    if (
        isinstance(n_features, bool)
        or not isinstance(n_features, int)
        or n_features < 1
    ):
        raise RouterFormatError(
            f"{name} scorer metadata 'n_features' must be a positive integer, "
            f"got {n_features!r}"
        )
    if not isinstance(digest, str):
        raise RouterFormatError(
            f"{name} scorer metadata 'model_sha256' must be a hex string, got {digest!r}"
        )
    return classes, n_features, digest


def _read_model_bytes(arrays: dict[str, np.ndarray], digest: str) -> bytes:
    name = LightGBMForestScorer.name
    unexpected = sorted(set(arrays) - {MODEL_ARRAY})
    if MODEL_ARRAY not in arrays or unexpected:
        raise RouterFormatError(
            f"{name} scorer state must contain exactly the array {MODEL_ARRAY!r}, "
            f"got {sorted(arrays)}"
        )
    model = arrays[MODEL_ARRAY]
    if not isinstance(model, np.ndarray) or model.dtype != np.uint8 or model.ndim != 1:
        shape = getattr(model, "shape", None)
        dtype = getattr(model, "dtype", type(model).__name__)
        raise RouterFormatError(
            f"{name} scorer array {MODEL_ARRAY!r} must be 1-D uint8, got "
            f"dtype {dtype} and shape {shape}"
        )
    data = model.tobytes()
    if hashlib.sha256(data).hexdigest() != digest:
        raise RouterFormatError(
            f"{name} scorer array {MODEL_ARRAY!r} does not match its SHA-256 "
            "digest in the metadata; the router file is damaged: save it again"
        )
    return data


def _load_booster(data: bytes, n_classes: int, n_features: int) -> Any:
    import lightgbm

    name = LightGBMForestScorer.name
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as error:
        raise RouterFormatError(
            f"{name} scorer array {MODEL_ARRAY!r} is not ASCII text: {error}"
        ) from error
    check_model_text(text, n_classes=n_classes, n_features=n_features)
    try:
        booster = lightgbm.Booster(model_str=text)
    except lightgbm.basic.LightGBMError as error:
        raise RouterFormatError(
            f"LightGBM rejected the saved {name} model: {error}"
        ) from error
    if (
        booster.num_feature() != n_features
        or booster.num_model_per_iteration() != n_classes
    ):
        raise RouterFormatError(
            f"the saved {name} model has {booster.num_feature()} features and "
            f"{booster.num_model_per_iteration()} classes, but the metadata says "
            f"{n_features} and {n_classes}"
        )
    return booster


def _log_version_difference(meta: dict[str, Any]) -> None:
    import lightgbm

    saved = meta.get("lightgbm_version")
    if saved != lightgbm.__version__:
        logger.info(
            "loading a %s model saved with LightGBM %s into LightGBM %s",
            LightGBMForestScorer.name,
            saved,
            lightgbm.__version__,
        )
