"""LightGBM random-forest backend for RoRF, registered as the ``lightgbm-rf`` scorer.

Installing the ``rorf-lightgbm`` distribution adds this module to the ``rorf``
entry-point group, so ``rorf_core.get_scorer_class("lightgbm-rf")`` finds it.
LightGBM itself is imported only when a scorer is fitted or loaded.
"""

from __future__ import annotations

from collections.abc import Callable

from rorf_core import hookimpl

__version__ = "0.1.0"

__all__ = ["__version__", "register_scorers"]


@hookimpl
def register_scorers(register: Callable[..., None]) -> None:
    """Register :class:`rorf_lightgbm.scorer.LightGBMForestScorer`."""
    from rorf_lightgbm.scorer import LightGBMForestScorer

    register(LightGBMForestScorer.name, LightGBMForestScorer)
