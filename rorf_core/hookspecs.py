"""Hook specifications that RoRF plugins implement.

A plugin is a module or object with functions marked ``@rorf_core.hookimpl``
and named after the hooks below. Plugins are found through the ``rorf``
entry-point group, and RoRF's own embedders and scorers are registered
through the same hooks.
"""

from __future__ import annotations

from collections.abc import Callable
import pluggy

PROJECT_NAME = "rorf"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def register_embedders(register: Callable[..., None]) -> None:
    """Register embedder factories.

    Called once per plugin when the plugin manager loads plugins.

    :param register: call ``register(name, factory, aliases=())`` once per
        embedder. ``factory(**options)`` must return an
        :class:`rorf_core.Embedder`; ``name`` is the registry name saved in
        router metadata (``"wordllama"``, ``"jina"``), and ``aliases`` are
        extra names that resolve to the same factory.
    :return: nothing; results are ignored.
    """


@hookspec
def register_scorers(register: Callable[..., None]) -> None:
    """Register forest backends (scorers).

    Called once per plugin when the plugin manager loads plugins.

    :param register: call ``register(name, scorer_class, aliases=())`` once
        per backend. ``scorer_class`` must subclass :class:`rorf_core.Scorer`;
        ``scorer_class(**params)`` builds an unfitted scorer and
        ``scorer_class.from_state(params, arrays)`` restores a fitted one.
    :return: nothing; results are ignored.
    """


def hook_names() -> list[str]:
    """Return the names of every hook specification in this module."""
    return [
        name
        for name, value in globals().items()
        if callable(value) and hasattr(value, f"{PROJECT_NAME}_spec")
    ]


__all__: list[str] = [
    "hookimpl",
    "hookspec",
    "register_embedders",
    "register_scorers",
    "hook_names",
]
