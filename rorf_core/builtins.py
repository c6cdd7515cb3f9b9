"""RoRF's own scorers, registered through the same hooks as any plugin."""

from __future__ import annotations

from collections.abc import Callable

from rorf_core.hookspecs import hookimpl


@hookimpl
def register_scorers(register: Callable[..., None]) -> None:
    from rorf_core.forest import sklearn_forest as forests

    register(forests.RandomForestScorer.name, forests.RandomForestScorer, aliases=("rf",))
    register(forests.ExtraTreesScorer.name, forests.ExtraTreesScorer)
    register(forests.RandomForestRegressorScorer.name, forests.RandomForestRegressorScorer)
    register(forests.ExtraTreesRegressorScorer.name, forests.ExtraTreesRegressorScorer)
