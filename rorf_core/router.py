"""The Router: a trained, saved unit that scores prompts for routing."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rorf_core import format as router_format
from rorf_core import plugins
from rorf_core.embedders.base import Embedder
from rorf_core.errors import InvalidThresholdError, RouterFormatError
from rorf_core.features import model_inputs
from rorf_core.forest.base import Scorer
from rorf_core.labels import (
    check_rule_fits_scheme,
    gain_to_score,
    get_decision_rule,
    get_label_scheme,
)
from rorf_core.lexical import (
    LexicalModel,
    check_lexical_weight,
    load_lexical,
    split_arrays,
)

if TYPE_CHECKING:
    from rorf_core.cache import EmbeddingCache

logger = logging.getLogger(__name__)

__all__ = ["Router", "check_threshold"]

DEFAULT_LABEL_SCHEME = "rorf"
DEFAULT_DECISION_RULE = "p_a_needed"


def check_threshold(threshold: float) -> float:
    """Return ``threshold`` as a float, raising unless it lies in [0, 1]."""
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise InvalidThresholdError(
            f"threshold must be a number in [0, 1], got {threshold!r}"
        ) from None
    if not 0.0 <= value <= 1.0:
        raise InvalidThresholdError(
            f"threshold must be in [0, 1], got {threshold!r}; use `rorf calibrate` "
            "to find the threshold for a share of calls to model A"
        )
    return value


class Router:
    """Embedder plus fitted scorer, with the routing rule and its metadata.

    :meth:`win_rate` returns, for each prompt, the routing score: the higher,
    the more the prompt needs model A. A prompt goes to model A when its
    score is at least the threshold. With RoRF's label scheme and decision
    rule the score is the probability that A is needed, ``p0 + p1``.

    A regression router may also hold an n-gram model (``lexical``). Its
    predicted gain is then ``(1 - lexical_weight) * forest + lexical_weight *
    n-gram model``, before it is mapped to a score.
    """

    def __init__(
        self,
        *,
        embedder: Embedder,
        scorer: Scorer,
        model_a: str,
        model_b: str,
        label_scheme: str = DEFAULT_LABEL_SCHEME,
        decision_rule: str = DEFAULT_DECISION_RULE,
        text_features: Sequence[str] = (),
        embedding_columns: int | None = None,
        gain_scale: float = 1.0,
        calibration: dict[str, Any] | None = None,
        training: dict[str, Any] | None = None,
        embedder_dimension: int | None = None,
        lexical: LexicalModel | None = None,
        lexical_weight: float = 0.0,
    ) -> None:
        self.embedder = embedder
        self.scorer = scorer
        self.model_a = model_a
        self.model_b = model_b
        self.label_scheme = get_label_scheme(label_scheme)
        self.decision_rule = get_decision_rule(decision_rule)
        check_rule_fits_scheme(self.label_scheme, self.decision_rule)
        self.text_features = tuple(text_features)
        self.embedding_columns = embedding_columns
        if not gain_scale > 0:
            raise ValueError(f"gain_scale must be positive, got {gain_scale!r}")
        self.gain_scale = float(gain_scale)
        self.calibration = calibration
        self.training = training or {}
        self.embedder_dimension = embedder_dimension
        self._weights = None if self.label_scheme.is_regression else self._rule_weights()
        self.lexical_weight = check_lexical_weight(lexical_weight)
        if self.lexical_weight > 0 and lexical is None:
            raise ValueError("lexical_weight is above 0 but no n-gram model (lexical) was given")
        if lexical is not None and not self.label_scheme.is_regression:
            raise ValueError(
                f"an n-gram model predicts a score gap, but label scheme "
                f"{self.label_scheme.name!r} is a classification"
            )
        self.lexical = lexical if self.lexical_weight > 0 else None

    def _rule_weights(self) -> np.ndarray:
        # A class decision rule is a weighted sum of class probabilities, so
        # it is folded into one vector aligned with the scorer's classes_.
        classes = np.asarray(self.scorer.classes_)
        identity = np.eye(classes.size)
        return self.decision_rule(identity, classes, self.label_scheme.labels) - self.decision_rule.offset

    # Scoring ---------------------------------------------------------------

    def features(self, prompts: Sequence[str], embeddings: np.ndarray) -> np.ndarray:
        """Return the scorer's input rows for embedded prompts."""
        return model_inputs(
            embeddings,
            prompts,
            embedding_columns=self.embedding_columns,
            text_features=self.text_features,
        )

    def scores_from_output(self, X: np.ndarray, prompts: Sequence[str] = ()) -> np.ndarray:
        """Run the scorer on model inputs ``X`` and apply the decision rule.

        ``prompts`` (the rows of ``X``) are read only by the n-gram model.
        """
        if self.label_scheme.is_regression:
            gain = self.scorer.predict(X)
            if self.lexical is not None:
                lexical_gain = self.lexical.predict(prompts)
                gain = (1.0 - self.lexical_weight) * gain + self.lexical_weight * lexical_gain
            return gain_to_score(gain, self.gain_scale)
        return self.scorer.predict_proba(X) @ self._weights + self.decision_rule.offset

    def win_rate_from_embeddings(
        self, embeddings: np.ndarray, prompts: Sequence[str] | None = None
    ) -> np.ndarray:
        """Return routing scores for already embedded prompts."""
        if (self.text_features or self.lexical is not None) and prompts is None:
            raise ValueError("this router reads the prompt text: pass the prompts too")
        prompts = list(prompts or [])
        return self.scores_from_output(self.features(prompts, embeddings), prompts)

    def embed(
        self,
        prompts: Sequence[str],
        *,
        cache: EmbeddingCache | None = None,
        progress: bool = False,
    ) -> np.ndarray:
        """Embed ``prompts`` with the router's embedder, through ``cache`` if given."""
        if cache is not None:
            return cache.embed(self.embedder, prompts, progress=progress)
        return self.embedder.embed(prompts, progress=progress)

    def win_rate(
        self,
        prompts: Sequence[str],
        *,
        cache: EmbeddingCache | None = None,
        progress: bool = False,
    ) -> np.ndarray:
        """Return the routing score of each prompt, as a float64 array."""
        prompts = list(prompts)
        embeddings = self.embed(prompts, cache=cache, progress=progress)
        self._check_dimension(embeddings)
        return self.win_rate_from_embeddings(embeddings, prompts)

    def _check_dimension(self, embeddings: np.ndarray) -> None:
        expected = self.embedder_dimension
        if expected is None:
            expected = self.embedding_columns or (
                self.scorer.n_features_in_ - len(self.text_features)
            )
        if embeddings.shape[1] != expected:
            raise RouterFormatError(
                f"embedder {self.embedder.name!r} ({self.embedder.model}) returns "
                f"{embeddings.shape[1]} dimensions but the router's forest was trained "
                f"on {expected}; load the router with the embedder it was trained with"
            )

    def route(self, prompt: str, threshold: float) -> str:
        """Return the name of the model that should answer ``prompt``."""
        threshold = check_threshold(threshold)
        score = float(self.win_rate([prompt])[0])
        return self.model_a if score >= threshold else self.model_b

    # Persistence -----------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """Return the JSON metadata written to ``router.json``."""
        state_meta, _ = self.scorer.to_state()
        return {
            "model_a": self.model_a,
            "model_b": self.model_b,
            "embedder": {
                "name": self.embedder.name,
                "model": self.embedder.model,
                "options": self.embedder.options(),
                "dimension": self.embedder_dimension
                or self.scorer.n_features_in_ - len(self.text_features),
            },
            "scorer": {
                "name": self.scorer.name,
                "params": self.scorer.get_params(),
                "state": state_meta,
            },
            "label_scheme": self.label_scheme.name,
            "labels": self.label_scheme.labels,
            "decision_rule": self.decision_rule.name,
            "text_features": list(self.text_features),
            "embedding_columns": self.embedding_columns,
            "gain_scale": self.gain_scale,
            "lexical": self._lexical_metadata(),
            "calibration": self.calibration,
            "training": self.training,
        }

    def _lexical_metadata(self) -> dict[str, Any] | None:
        if self.lexical is None:
            return None
        meta, _ = self.lexical.to_state()
        return {"weight": self.lexical_weight, **meta}

    def save_pretrained(self, path: str | os.PathLike[str]) -> Path:
        """Write the router in the safe format to directory ``path``, atomically."""
        _, arrays = self.scorer.to_state()
        if self.lexical is not None:
            arrays = {**arrays, **self.lexical.to_state()[1]}
        return router_format.write_router_dir(path, self.metadata(), arrays)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike[str],
        *,
        revision: str | None = None,
        allow_pickle: bool = False,
        embedder_options: dict[str, Any] | None = None,
    ) -> Router:
        """Load a router from a local directory or a Hugging Face hub repo id.

        :param revision: hub revision (branch, tag or commit) to pin.
        :param allow_pickle: allow a legacy RoRF router (``classifier.pkl``);
            unpickling runs code from the file, so only opt in for files you
            trust.
        :param embedder_options: options that override the saved ones, for
            options that do not change vectors (device, batch size, API key).
        """
        from rorf_core.hub import resolve_router

        directory = resolve_router(name_or_path, revision=revision)
        if not (directory / router_format.METADATA_FILE).is_file():
            from rorf_core.legacy import load_legacy_router

            legacy = load_legacy_router(
                directory,
                name=str(name_or_path),
                allow_pickle=allow_pickle,
                embedder_options=embedder_options,
            )
            if legacy is not None:
                return legacy
        metadata, arrays = router_format.read_router_dir(directory)
        return cls.from_metadata(metadata, arrays, directory, embedder_options)

    @classmethod
    def from_metadata(
        cls,
        metadata: dict[str, Any],
        arrays: dict[str, np.ndarray],
        directory: Path,
        embedder_options: dict[str, Any] | None = None,
    ) -> Router:
        """Build a router from parsed ``router.json`` content and arrays."""
        try:
            embedder_meta = metadata["embedder"]
            scorer_meta = metadata["scorer"]
            embedder_name = embedder_meta["name"]
            options = {**embedder_meta.get("options", {}), **(embedder_options or {})}
            model = embedder_meta["model"]
            scorer_class = plugins.get_scorer_class(scorer_meta["name"])
            scorer_arrays, lexical_arrays = split_arrays(arrays)
            scorer = scorer_class.from_state(
                scorer_meta.get("params", {}), scorer_meta["state"], scorer_arrays
            )
            dimension = int(embedder_meta["dimension"])
        except (KeyError, TypeError) as error:
            raise RouterFormatError(
                f"router {str(directory)!r} has invalid metadata: missing or bad {error}"
            ) from error
        text_features = tuple(metadata.get("text_features", ()))
        embedding_columns = metadata.get("embedding_columns")
        used_columns = dimension if embedding_columns is None else int(embedding_columns)
        if used_columns > dimension or scorer.n_features_in_ != used_columns + len(text_features):
            raise RouterFormatError(
                f"router {str(directory)!r}: the forest takes {scorer.n_features_in_} "
                f"features but the embedder dimension is {dimension} (using "
                f"{used_columns} columns) plus {len(text_features)} text features"
            )
        lexical, lexical_weight = load_lexical(
            metadata.get("lexical"), lexical_arrays, f"router {str(directory)!r}"
        )
        embedder = plugins.get_embedder(embedder_name, model=model, **options)
        return cls(
            embedder=embedder,
            scorer=scorer,
            model_a=metadata["model_a"],
            model_b=metadata["model_b"],
            label_scheme=metadata.get("label_scheme", DEFAULT_LABEL_SCHEME),
            decision_rule=metadata.get("decision_rule", DEFAULT_DECISION_RULE),
            text_features=text_features,
            embedding_columns=None if embedding_columns is None else int(embedding_columns),
            gain_scale=float(metadata.get("gain_scale", 1.0)),
            calibration=metadata.get("calibration"),
            training=metadata.get("training"),
            embedder_dimension=dimension,
            lexical=lexical,
            lexical_weight=lexical_weight,
        )

    def __repr__(self) -> str:
        return (
            f"Router(model_a={self.model_a!r}, model_b={self.model_b!r}, "
            f"embedder={self.embedder.name!r}, scorer={self.scorer.name!r})"
        )
