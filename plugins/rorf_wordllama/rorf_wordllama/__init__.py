"""RoRF plugin: wordllama static embeddings, which work offline.

The embedding weights and tokenizer ship inside the ``wordllama`` wheel, so
this embedder never touches the network. It is RoRF's default embedder.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rorf_core import hookimpl

__all__ = ["WordLlamaEmbedder", "EXAMPLE_ROUTER", "register_embedders"]

#: Directory of the example router that ships with this package.
EXAMPLE_ROUTER = Path(__file__).parent / "example_router"


@hookimpl
def register_embedders(register: Callable[..., None]) -> None:
    from rorf_wordllama.embedder import WordLlamaEmbedder

    register(WordLlamaEmbedder.name, WordLlamaEmbedder)


def __getattr__(name: str) -> object:
    if name == "WordLlamaEmbedder":
        from rorf_wordllama.embedder import WordLlamaEmbedder

        return WordLlamaEmbedder
    raise AttributeError(f"module 'rorf_wordllama' has no attribute {name!r}")
