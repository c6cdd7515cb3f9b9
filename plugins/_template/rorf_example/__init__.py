"""Example RoRF plugin: hook implementations only.

Keep this module light: RoRF imports it to list plugins, so heavy libraries
are imported inside the factories, on first use.
"""

from __future__ import annotations

from collections.abc import Callable

from rorf_core import hookimpl


@hookimpl
def register_embedders(register: Callable[..., None]) -> None:
    from rorf_example.embedder import CharCountEmbedder

    register(CharCountEmbedder.name, CharCountEmbedder)


@hookimpl
def register_scorers(register: Callable[..., None]) -> None:
    from rorf_example.scorer import NearestCentroidScorer

    register(NearestCentroidScorer.name, NearestCentroidScorer)
