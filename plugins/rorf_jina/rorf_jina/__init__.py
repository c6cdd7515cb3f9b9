"""RoRF plugin: jina-embeddings-v3, run locally through transformers and torch.

Importing this package is cheap: torch and transformers load on the first
call that embeds a text or reads the vector dimension.
"""

from __future__ import annotations

from collections.abc import Callable

from rorf_core import hookimpl

from rorf_jina.embedder import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_LENGTH,
    DEFAULT_MODEL,
    DEFAULT_TASK,
    DTYPES,
    JinaEmbedder,
)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_MAX_LENGTH",
    "DEFAULT_MODEL",
    "DEFAULT_TASK",
    "DTYPES",
    "JinaEmbedder",
    "register_embedders",
]


@hookimpl
def register_embedders(register: Callable[..., None]) -> None:
    register(JinaEmbedder.name, JinaEmbedder)
