"""The Embedder interface: text to float32 vectors, one row per text."""

from __future__ import annotations

import abc
import logging
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import numpy as np

from rorf_core.errors import EmbeddingError, InvalidInputError

logger = logging.getLogger(__name__)

__all__ = ["Embedder", "check_texts", "iter_batches"]


def check_texts(texts: Sequence[str]) -> list[str]:
    """Return ``texts`` as a list, raising on the first text that is not embeddable.

    A text must be a ``str`` with at least one non-whitespace character. The
    error carries the index of the bad text so a caller can report it.
    """
    if isinstance(texts, str):
        raise TypeError("embed() takes a sequence of texts, not a single str")
    checked = list(texts)
    for index, text in enumerate(checked):
        if not isinstance(text, str):
            raise InvalidInputError(index, f"expected str, got {type(text).__name__}")
        if not text.strip():
            raise InvalidInputError(index, "the text is empty or only whitespace")
    return checked


def iter_batches(items: Sequence[Any], batch_size: int) -> Iterator[Sequence[Any]]:
    """Yield consecutive slices of ``items`` holding at most ``batch_size`` items."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    for start in range(0, len(items), batch_size):
        yield items[start : start + batch_size]


class Embedder(abc.ABC):
    """Turn texts into vectors of a fixed dimension.

    Subclasses set :attr:`name` and implement :meth:`embed_batch` and
    :attr:`dimension`. Callers use :meth:`embed`, which checks the texts,
    splits them into batches of :attr:`batch_size`, shows a progress bar on
    request and checks what the subclass returned.

    The constructor must only store its arguments: load models and build
    clients lazily, on the first call that needs them, so that listing
    plugins or loading a router with another embedder costs nothing.
    """

    #: Registry name saved in router metadata, for example ``"wordllama"``.
    name: ClassVar[str]
    #: Default number of texts sent to :meth:`embed_batch` at once.
    batch_size: int = 256

    def __init__(self, model: str) -> None:
        self.model = model

    @property
    @abc.abstractmethod
    def dimension(self) -> int:
        """Length of each embedding vector."""

    @abc.abstractmethod
    def embed_batch(self, texts: list[str]) -> np.ndarray:
        """Embed one batch of already checked texts, returning ``(len(texts), dimension)``."""

    def options(self) -> dict[str, Any]:
        """Return the options that change the vectors, as JSON-ready values.

        They are saved in router metadata, passed back to the factory when a
        router is loaded, and are part of the embedding cache key. Leave out
        anything secret (API keys) and anything that does not change the
        vectors (batch size, device).
        """
        return {}

    def embed(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """Embed ``texts`` in order, returning a float32 array ``(n, dimension)``.

        :param texts: the texts; each must contain a non-whitespace character.
        :param progress: show a tqdm progress bar over batches.
        :raises InvalidInputError: a text is empty or not a ``str``; the
            error names its index.
        :raises EmbeddingError: the backend failed or returned a wrong shape.
        """
        checked = check_texts(texts)
        if not checked:
            return np.zeros((0, self.dimension), dtype=np.float32)
        batches = iter_batches(checked, self.batch_size)
        if progress:
            from tqdm.auto import tqdm

            total = -(-len(checked) // self.batch_size)
            batches = tqdm(batches, total=total, desc=f"embedding ({self.name})", unit="batch")
        parts = []
        start = 0
        for batch in batches:
            vectors = self._checked_batch(list(batch), start)
            parts.append(vectors)
            start += len(batch)
        return np.concatenate(parts, axis=0)

    def _checked_batch(self, batch: list[str], start: int) -> np.ndarray:
        try:
            raw = self.embed_batch(batch)
        except InvalidInputError as error:
            # embed_batch counts from the start of its batch; callers count
            # from the start of the whole list.
            raise InvalidInputError(start + error.index, error.reason) from error
        vectors = np.asarray(raw, dtype=np.float32)
        expected = (len(batch), self.dimension)
        if vectors.shape != expected:
            raise EmbeddingError(
                f"{self.name} embedder returned shape {vectors.shape} for texts "
                f"{start}..{start + len(batch) - 1}, expected {expected}"
            )
        bad_rows = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
        if bad_rows.size:
            raise EmbeddingError(
                f"{self.name} embedder returned NaN or infinite values for the "
                f"text at index {start + int(bad_rows[0])}"
            )
        return vectors

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r}, options={self.options()!r})"
