"""Forest backends (scorers) and the compiled forest evaluator."""

from rorf_core.forest.base import Scorer

__all__ = ["Scorer"]
