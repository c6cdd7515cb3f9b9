"""An embedder: counts of each lower-case letter, scaled by text length."""

from __future__ import annotations

from typing import Any

import numpy as np

from rorf_core import Embedder

ALPHABET = "abcdefghijklmnopqrstuvwxyz"


class CharCountEmbedder(Embedder):
    name = "example-chars"

    def __init__(self, model: str = "letters-v1", *, scale: bool = True) -> None:
        # Store options only; load models and build clients on first use.
        super().__init__(model)
        self.scale = scale

    @property
    def dimension(self) -> int:
        return len(ALPHABET)

    def options(self) -> dict[str, Any]:
        # Options that change the vectors: saved in the router, part of the
        # embedding cache key. Never return secrets here.
        return {"scale": self.scale}

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        rows = []
        for text in texts:
            lower = text.lower()
            counts = [lower.count(letter) for letter in ALPHABET]
            size = max(len(text), 1) if self.scale else 1
            rows.append([count / size for count in counts])
        return np.asarray(rows, dtype=np.float32)
