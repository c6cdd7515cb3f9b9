"""A ridge model on hashed word n-grams: a lexical view of the prompt.

The embedding averages word vectors, so it loses which exact words a prompt
uses. This model keeps them. Each prompt becomes a TF-IDF vector over its
lowercase words (two or more word characters) and word pairs, and a ridge
regression maps that vector to the training target. A router blends its
prediction with the forest's (see ``Router.lexical_weight``).

Words and pairs are identified by the CRC-32 of their UTF-8 bytes, so a
router stores three arrays (known hashes, IDF weights, ridge weights) and
no vocabulary strings. Two n-grams that share a hash share a weight. For
the 94,100 n-grams kept from the MMLU training rows, the expected number of
such pairs is about one (n² / 2³³).

Scoring follows scikit-learn's ``TfidfVectorizer(sublinear_tf=True)``:
term frequency ``1 + ln(count)``, smoothed IDF ``ln((1 + n) / (1 + df)) + 1``,
and rows scaled to unit length after unknown n-grams are dropped.
"""

from __future__ import annotations

import itertools
import math
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import attrs
import numpy as np
from scipy import sparse

from rorf_core.errors import InvalidConfigError, RouterFormatError

__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_MIN_DF",
    "LexicalModel",
    "check_lexical_weight",
    "fit_lexical",
    "load_lexical",
    "prompt_ngrams",
    "requested_lexical_weight",
    "split_arrays",
]

#: Ridge penalty; 3-fold CV on MMLU training rows preferred 3 over 1 and 10.
DEFAULT_ALPHA = 3.0
#: An n-gram is kept when at least this many training prompts contain it.
DEFAULT_MIN_DF = 2
ARRAY_PREFIX = "lexical."
_WORD = re.compile(r"\b\w\w+\b")


def check_lexical_weight(weight: float) -> float:
    """Return ``weight`` as a float, raising InvalidConfigError unless it lies in [0, 1]."""
    value = float(weight)
    if not 0.0 <= value <= 1.0:
        raise InvalidConfigError(
            f"lexical_weight must be in [0, 1], got {weight!r}; 0 turns the n-gram model off"
        )
    return value


def requested_lexical_weight(weight: float | None, *, label_scheme: Any, named: bool) -> float:
    """Return the n-gram weight a training run applies.

    A weight the caller set (``named``) that cannot apply, because the label
    scheme is a classification, is an error; a recipe's weight is skipped.
    """
    value = check_lexical_weight(weight or 0.0)
    if value > 0.0 and not label_scheme.is_regression:
        if named:
            raise InvalidConfigError(
                "the n-gram model predicts a score gap, so lexical_weight needs a "
                f"regression label scheme such as 'score_gap', got {label_scheme.name!r}; "
                "drop --lexical-weight or use --recipe default"
            )
        return 0.0
    return value


def _hashes(prompt: str) -> list[int]:
    words = _WORD.findall(prompt.lower())
    grams = words + [f"{first} {second}" for first, second in itertools.pairwise(words)]
    return [zlib.crc32(gram.encode("utf-8")) for gram in grams]


def prompt_ngrams(prompt: str) -> np.ndarray:
    """Return the sorted unique n-gram hashes of ``prompt`` and their counts, as (2, k)."""
    keys, counts = np.unique(np.array(_hashes(prompt), dtype=np.int64), return_counts=True)
    return np.vstack([keys, counts])


@attrs.frozen(kw_only=True, eq=False)
class LexicalModel:
    """Fitted n-gram ridge regression; ``predict`` maps prompts to the target."""

    keys: np.ndarray  # sorted uint32 hashes of the known n-grams
    idf: np.ndarray  # float32, one weight per key
    coef: np.ndarray  # float32 ridge weights, one per key
    intercept: float
    alpha: float
    min_df: int
    _table: dict[int, tuple[float, float]] | None = attrs.field(default=None, init=False, repr=False)

    def _row(self, row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return the known columns of one prompt and its unit-length TF-IDF values."""
        positions = np.searchsorted(self.keys, row[0])
        inside = positions < self.keys.size
        known = inside.copy()
        known[inside] = self.keys[positions[inside]] == row[0][inside]
        columns = positions[known]
        weights = (1.0 + np.log(row[1][known])) * self.idf[columns]
        norm = math.sqrt(float(weights @ weights))
        return columns, (weights / norm if norm > 0 else weights)

    def matrix(self, ngrams: Sequence[np.ndarray]) -> sparse.csr_matrix:
        """Return the unit-length TF-IDF rows of prompts given as :func:`prompt_ngrams`."""
        indptr, indices, values = [0], [], []
        for row in ngrams:
            columns, weights = self._row(row)
            indices.append(columns)
            values.append(weights)
            indptr.append(indptr[-1] + columns.size)
        return sparse.csr_matrix(
            (_concat(values, np.float64), _concat(indices, np.int64), indptr),
            shape=(len(ngrams), self.keys.size),
        )

    def predict_ngrams(self, ngrams: Sequence[np.ndarray]) -> np.ndarray:
        """Return predictions for prompts given as :func:`prompt_ngrams`."""
        return np.array([self._score(zip(row[0].tolist(), row[1].tolist())) for row in ngrams], dtype=np.float64)

    def predict(self, prompts: Sequence[str]) -> np.ndarray:
        """Return the predicted target of each prompt, as float64."""
        return np.array([self._score(Counter(_hashes(prompt)).items()) for prompt in prompts], dtype=np.float64)

    def _score(self, counts: Iterable[tuple[int, int]]) -> float:
        # A dict lookup per n-gram, in plain Python floats: predict() on one
        # MMLU prompt took 40 µs this way and 94 µs with numpy array calls.
        table = self._lookup_table()
        dot = squared_norm = 0.0
        for key, count in counts:
            entry = table.get(key)
            if entry is not None:
                term = 1.0 + math.log(count)
                dot += term * entry[1]
                squared_norm += (term * entry[0]) ** 2
        return self.intercept + (dot / math.sqrt(squared_norm) if squared_norm > 0 else 0.0)

    def _lookup_table(self) -> dict[int, tuple[float, float]]:
        """Return key -> (IDF, IDF * ridge weight), built on first use."""
        if self._table is None:
            idf = self.idf.astype(np.float64)
            entries = zip(idf.tolist(), (idf * self.coef.astype(np.float64)).tolist())
            object.__setattr__(self, "_table", dict(zip(self.keys.tolist(), entries)))
        return self._table

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Return JSON metadata and named arrays that :meth:`from_state` restores."""
        meta = {"intercept": self.intercept, "alpha": self.alpha, "min_df": self.min_df, "ngrams": int(self.keys.size)}
        arrays = {
            f"{ARRAY_PREFIX}keys": self.keys,
            f"{ARRAY_PREFIX}idf": self.idf,
            f"{ARRAY_PREFIX}coef": self.coef,
        }
        return meta, arrays

    @classmethod
    def from_state(
        cls, meta: dict[str, Any], arrays: dict[str, np.ndarray], source: str = "router"
    ) -> LexicalModel:
        """Rebuild a model from :meth:`to_state` output, checking every value.

        ``source`` names the router in error messages.
        """
        keys = _stored_array(arrays, "keys", np.uint32, source)
        idf = _stored_array(arrays, "idf", np.float32, source)
        coef = _stored_array(arrays, "coef", np.float32, source)
        if not keys.size == idf.size == coef.size:
            raise RouterFormatError(
                f"{source}: the n-gram arrays disagree in length: {keys.size} keys, "
                f"{idf.size} IDF weights and {coef.size} ridge weights"
            )
        if keys.size > 1 and not np.all(keys[1:] > keys[:-1]):
            raise RouterFormatError(f"{source}: 'lexical.keys' must be sorted and unique")
        try:
            intercept = float(meta["intercept"])
            alpha, min_df = float(meta["alpha"]), int(meta["min_df"])
        except (KeyError, TypeError, ValueError) as error:
            raise RouterFormatError(f"{source}: the 'lexical' entry has a missing or invalid {error}") from None
        if not math.isfinite(intercept):
            raise RouterFormatError(f"{source}: 'lexical.intercept' must be finite, got {intercept!r}")
        model = cls(keys=keys, idf=idf, coef=coef, intercept=intercept, alpha=alpha, min_df=min_df)
        # Built now (about 36 ms for 94,100 n-grams), so the first routed
        # prompt does not pay for it.
        model._lookup_table()
        return model


def split_arrays(arrays: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Split a router's arrays into the scorer's and the n-gram model's (``lexical.*``)."""
    lexical = {name: array for name, array in arrays.items() if name.startswith(ARRAY_PREFIX)}
    scorer = {name: array for name, array in arrays.items() if name not in lexical}
    return scorer, lexical


def load_lexical(
    entry: Any, arrays: dict[str, np.ndarray], source: str
) -> tuple[LexicalModel | None, float]:
    """Return the n-gram model and weight that a router file stores, or (None, 0.0).

    ``entry`` is the file's ``lexical`` value and ``arrays`` its ``lexical.*``
    arrays. Arrays without an entry are an error, because the router's
    calibration was measured with the model that they hold.
    """
    if entry is None:
        if arrays:
            raise RouterFormatError(
                f"{source} has n-gram arrays ({', '.join(sorted(arrays))}) but its "
                "'lexical' entry is null; restore the entry or save the router again"
            )
        return None, 0.0
    if not isinstance(entry, dict):
        raise RouterFormatError(f"{source}: 'lexical' must be null or an object, got {entry!r}")
    weight = entry.get("weight")
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0.0 < weight <= 1.0:
        raise RouterFormatError(
            f"{source}: 'lexical.weight' must be a number in (0, 1], got {weight!r}"
        )
    return LexicalModel.from_state(entry, arrays, source), float(weight)


def _stored_array(arrays: dict[str, np.ndarray], name: str, dtype: type, source: str) -> np.ndarray:
    """Return the array ``lexical.<name>``, raising unless it is 1-D, of ``dtype`` and finite."""
    full_name = f"{ARRAY_PREFIX}{name}"
    if full_name not in arrays:
        raise RouterFormatError(f"{source}: the n-gram array {full_name!r} is missing")
    array = arrays[full_name]
    if array.dtype != dtype or array.ndim != 1:
        raise RouterFormatError(
            f"{source}: {full_name!r} must be a 1-D {np.dtype(dtype).name} array, "
            f"got {array.dtype} with shape {array.shape}"
        )
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise RouterFormatError(f"{source}: {full_name!r} contains NaN or infinity")
    return array


def _concat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)


def fit_lexical(
    ngrams: Sequence[np.ndarray],
    target: np.ndarray,
    *,
    alpha: float = DEFAULT_ALPHA,
    min_df: int = DEFAULT_MIN_DF,
) -> LexicalModel:
    """Fit the n-gram ridge model on prompts given as :func:`prompt_ngrams`.

    Only the rows passed in are read, so a caller that passes training rows
    keeps held-out rows out of the vocabulary, the IDF and the weights.
    """
    from sklearn.linear_model import Ridge

    if len(ngrams) != len(target):
        raise ValueError(f"{len(ngrams)} prompts but {len(target)} targets")
    present = _concat([row[0] for row in ngrams], np.int64)
    keys, document_counts = np.unique(present, return_counts=True)
    meets_min_df = document_counts >= min_df
    keys, document_counts = keys[meets_min_df].astype(np.uint32), document_counts[meets_min_df]
    idf = (np.log((1.0 + len(ngrams)) / (1.0 + document_counts)) + 1.0).astype(np.float32)
    unfitted = LexicalModel(
        keys=keys, idf=idf, coef=np.zeros(keys.size, np.float32), intercept=0.0, alpha=alpha, min_df=min_df
    )
    target = np.asarray(target, dtype=np.float64)
    if keys.size == 0:
        # No n-gram is shared by min_df prompts: the model predicts the mean.
        return attrs.evolve(unfitted, intercept=float(target.mean()))
    ridge = Ridge(alpha=alpha).fit(unfitted.matrix(ngrams), target)
    return attrs.evolve(unfitted, coef=ridge.coef_.astype(np.float32), intercept=float(ridge.intercept_))
