"""RoRF: train and serve LLM routers built on random forests.

Heavy modules (the router, training, the forest kernels) load on first use,
so ``import rorf_core`` stays cheap and never imports a provider library.
"""

from __future__ import annotations

import importlib
from typing import Any

from rorf_core.embedders.base import Embedder
from rorf_core.errors import (
    DatasetError,
    EmbeddingError,
    InvalidConfigError,
    InvalidInputError,
    MissingAPIKeyError,
    PluginLoadError,
    RorfError,
    RouterFormatError,
    RouterNotFoundError,
    UnknownNameError,
    UnsafeRouterError,
)
from rorf_core.forest.base import Scorer
from rorf_core.hookspecs import hookimpl
from rorf_core.plugins import (
    get_embedder,
    get_scorer_class,
    load_plugins,
    register_plugin,
    unregister_plugin,
)

__version__ = "0.1.0"

_LAZY = {
    "Controller": "rorf_core.controller",
    "Router": "rorf_core.router",
    "EmbeddingCache": "rorf_core.cache",
    "train_router": "rorf_core.training",
}

__all__ = [
    "Controller",
    "DatasetError",
    "Embedder",
    "EmbeddingCache",
    "EmbeddingError",
    "InvalidConfigError",
    "InvalidInputError",
    "MissingAPIKeyError",
    "PluginLoadError",
    "RorfError",
    "Router",
    "RouterFormatError",
    "RouterNotFoundError",
    "Scorer",
    "UnknownNameError",
    "UnsafeRouterError",
    "get_embedder",
    "get_scorer_class",
    "hookimpl",
    "load_plugins",
    "register_plugin",
    "train_router",
    "unregister_plugin",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rorf_core' has no attribute {name!r}")
