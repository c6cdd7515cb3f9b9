"""RoRF plugin: Voyage AI embeddings through the ``voyageai`` package.

Importing this module is cheap: ``voyageai`` loads when the first text is
embedded.
"""

from __future__ import annotations

from collections.abc import Callable

from rorf_core import hookimpl

__all__ = ["VoyageEmbedder", "register_embedders"]


@hookimpl
def register_embedders(register: Callable[..., None]) -> None:
    from rorf_voyage.embedder import VoyageEmbedder

    register(VoyageEmbedder.name, VoyageEmbedder)


def __getattr__(name: str) -> object:
    if name == "VoyageEmbedder":
        from rorf_voyage.embedder import VoyageEmbedder

        return VoyageEmbedder
    raise AttributeError(f"module 'rorf_voyage' has no attribute {name!r}")
