"""RoRF's own scorers, registered through the same hooks as any plugin."""

from __future__ import annotations

from collections.abc import Callable

from rorf_core.hookspecs import hookimpl


@hookimpl
def register_scorers(register: Callable[..., None]) -> None:
    from rorf_core.forest.sklearn_forest import ExtraTreesScorer, RandomForestScorer

    register(RandomForestScorer.name, RandomForestScorer, aliases=("rf",))
    register(ExtraTreesScorer.name, ExtraTreesScorer)
