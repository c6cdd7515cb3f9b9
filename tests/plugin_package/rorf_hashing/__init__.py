"""A third-party RoRF plugin for tests: a bag-of-words hashing embedder."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np

from rorf_core import Embedder, hookimpl


class HashingEmbedder(Embedder):
    """Each word adds 1 to the dimension chosen by its hash."""

    name = "hashing"

    def __init__(self, model: str = "md5", *, dim: int = 64) -> None:
        super().__init__(model)
        self.dim = dim

    @property
    def dimension(self) -> int:
        return self.dim

    def options(self) -> dict[str, Any]:
        return {"dim": self.dim}

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                digest = hashlib.new(self.model, word.encode()).digest()
                vectors[row, int.from_bytes(digest[:4], "little") % self.dim] += 1.0
        return vectors


@hookimpl
def register_embedders(register: Callable[..., None]) -> None:
    register(HashingEmbedder.name, HashingEmbedder, aliases=("hash",))
