"""Cheap text features that a router may add beside the embedding.

Each feature is a function from one prompt to a float, computed in
microseconds at routing time. A router saves the names of the features it
uses, in order, and computes them again for every prompt it scores.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence

import numpy as np

from rorf_core.errors import RouterFormatError

__all__ = ["TEXT_FEATURES", "text_features_matrix", "with_text_features"]

_DIGIT = re.compile(r"\d")
_CODE_HINT = re.compile(r"[{};=<>]|def |return |print\(|\bint\b")


def _log_length(text: str) -> float:
    return math.log1p(len(text))


def _digit_share(text: str) -> float:
    return len(_DIGIT.findall(text)) / max(len(text), 1)


def _code_hint_share(text: str) -> float:
    return len(_CODE_HINT.findall(text)) / max(len(text.split()), 1)


def _line_count(text: str) -> float:
    return float(text.count("\n") + 1)


#: feature name -> function of one prompt.
TEXT_FEATURES: dict[str, Callable[[str], float]] = {
    "log_length": _log_length,
    "digit_share": _digit_share,
    "code_hint_share": _code_hint_share,
    "line_count": _line_count,
}


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
    """Return the scorer's input rows: ``embeddings`` plus the named text features."""
    if not names:
        return embeddings
    extra = text_features_matrix(names, prompts)
    return np.hstack([embeddings, extra]).astype(np.float32, copy=False)
