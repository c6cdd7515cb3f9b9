"""The Scorer interface: a forest backend over embeddings."""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import numpy as np

__all__ = ["Scorer"]


class Scorer(abc.ABC):
    """A classifier over embeddings with estimator manners.

    The constructor only stores hyper-parameters (JSON-ready values), ``fit``
    returns ``self``, learned state has a trailing underscore and
    ``predict_proba`` works on a whole batch. Columns of ``predict_proba``
    follow :attr:`classes_`, which holds the labels seen in training in
    increasing order: a label absent from the training rows has no column.

    Saving goes through :meth:`to_state` and :meth:`from_state`, which must
    use plain JSON values and numpy arrays only, so that loading a router
    never unpickles anything.
    """

    #: Registry name saved in router metadata, for example ``"random-forest"``.
    name: ClassVar[str]
    #: True for a regressor: it fits a numeric target and implements
    #: :meth:`predict`; ``classes_`` is then ``[0]``.
    is_regressor: ClassVar[bool] = False

    classes_: np.ndarray
    n_features_in_: int

    def __init__(self, **params: Any) -> None:
        self.params = dict(params)

    def get_params(self) -> dict[str, Any]:
        """Return the hyper-parameters given to the constructor."""
        return dict(self.params)

    @abc.abstractmethod
    def fit(self, X: np.ndarray, y: np.ndarray) -> Scorer:
        """Fit on embeddings ``X`` ``(n, d)`` and integer labels ``y`` ``(n,)``."""

    @abc.abstractmethod
    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Return class probabilities ``(n, len(classes_))`` for embeddings ``X``."""

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Return the predicted number for each row; regressors only."""
        raise TypeError(f"{self.name} is a classifier: use predict_proba")

    @abc.abstractmethod
    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Return the fitted state as JSON-ready metadata and named arrays."""

    @classmethod
    @abc.abstractmethod
    def from_state(
        cls,
        params: dict[str, Any],
        meta: dict[str, Any],
        arrays: dict[str, np.ndarray],
    ) -> Scorer:
        """Rebuild a fitted scorer from :meth:`get_params` and :meth:`to_state` output.

        Raise :class:`rorf_core.errors.RouterFormatError` when the arrays or
        metadata are inconsistent (missing key, wrong shape or dtype).
        """

    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`fit` or :meth:`from_state` has run."""
        return hasattr(self, "classes_")
