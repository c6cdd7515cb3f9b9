"""RoRF plugin: OpenAI embeddings, and any OpenAI-compatible embeddings server.

Importing this module is cheap: the ``openai`` and ``tiktoken`` packages load
when the first text is embedded.
"""

from __future__ import annotations

from collections.abc import Callable

from rorf_core import hookimpl

__all__ = ["OpenAIEmbedder", "register_embedders"]


@hookimpl
def register_embedders(register: Callable[..., None]) -> None:
    from rorf_openai.embedder import OpenAIEmbedder

    register(OpenAIEmbedder.name, OpenAIEmbedder)


def __getattr__(name: str) -> object:
    if name == "OpenAIEmbedder":
        from rorf_openai.embedder import OpenAIEmbedder

        return OpenAIEmbedder
    raise AttributeError(f"module 'rorf_openai' has no attribute {name!r}")
