"""Cheap text features that a router may add beside the embedding.

Each feature is a function from one prompt to a float, computed in
microseconds at routing time. A router saves the names of the features it
uses, in order, and computes them again for every prompt it scores.

Several features read multiple-choice structure: options are lines that
start with ``A. ``, ``B. ``, ``C. `` or ``D. `` (the layout of MMLU-style
prompts). On prompts without options those features are 0.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence

import numpy as np

from rorf_core.errors import RouterFormatError

__all__ = [
    "TEXT_FEATURES",
    "DEFAULT_TEXT_FEATURES",
    "text_features_matrix",
    "with_text_features",
    "model_inputs",
]

_OPTION_SPLIT = re.compile(r"\n([A-D])\. ")
_MATH_CHARACTERS = frozenset("=+*/^<>()$\\")


def _options(text: str) -> list[str]:
    # re.split with one group returns [stem, letter, option, letter, option, ...].
    return _OPTION_SPLIT.split(text)[2::2]


def _share(text: str, predicate: Callable[[str], bool]) -> float:
    return sum(1 for character in text if predicate(character)) / max(len(text), 1)


def _mean_option_length(text: str) -> float:
    lengths = [len(option) for option in _options(text)]
    return sum(lengths) / len(lengths) if lengths else 0.0


#: feature name -> function of one prompt.
TEXT_FEATURES: dict[str, Callable[[str], float]] = {
    "log_chars": lambda text: math.log1p(len(text)),
    "log_stem_chars": lambda text: math.log1p(len(text.split("\nA. ")[0])),
    "digit_share": lambda text: _share(text, str.isdigit),
    "math_symbol_share": lambda text: _share(text, _MATH_CHARACTERS.__contains__),
    "upper_share": lambda text: _share(text, str.isupper),
    "newlines": lambda text: float(text.count("\n")),
    "mean_option_chars": _mean_option_length,
    "options": lambda text: float(len(_options(text))),
    "has_statement_1": lambda text: float("Statement 1" in text),
    "has_which_of_the_following": lambda text: float("which of the following" in text.lower()),
    "digits_in_options": lambda text: float(any(c.isdigit() for c in "".join(_options(text)))),
    "words": lambda text: float(len(text.split())),
}

#: The features of RoRF's default recipe, in order.
DEFAULT_TEXT_FEATURES: tuple[str, ...] = tuple(TEXT_FEATURES)


def text_features_matrix(names: Sequence[str], prompts: Sequence[str]) -> np.ndarray:
    """Return a float32 array ``(len(prompts), len(names))`` of the named features."""
    unknown = [name for name in names if name not in TEXT_FEATURES]
    if unknown:
        known = ", ".join(sorted(TEXT_FEATURES))
        raise RouterFormatError(f"unknown text features {unknown}; known: {known}")
    functions = [TEXT_FEATURES[name] for name in names]
    rows = [[function(prompt) for function in functions] for prompt in prompts]
    return np.asarray(rows, dtype=np.float32).reshape(len(prompts), len(names))


def with_text_features(
    names: Sequence[str], prompts: Sequence[str], embeddings: np.ndarray
) -> np.ndarray:
    """Return ``embeddings`` with the named text features appended as columns."""
    if not names:
        return embeddings
    extra = text_features_matrix(names, prompts)
    return np.hstack([embeddings, extra]).astype(np.float32, copy=False)


def model_inputs(
    embeddings: np.ndarray,
    prompts: Sequence[str],
    *,
    embedding_columns: int | None,
    text_features: Sequence[str],
) -> np.ndarray:
    """Return the scorer's input rows: leading embedding columns plus text features.

    ``embedding_columns`` keeps only the first columns of each embedding
    (None keeps all), which suits embeddings whose leading dimensions carry
    the most information, as Matryoshka-trained ones do.
    """
    if embedding_columns is not None:
        embeddings = embeddings[:, :embedding_columns]
    return with_text_features(text_features, prompts, embeddings)
