"""The Controller: RoRF's user-facing routing front."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from rorf_core.chat import AsyncChat, Chat
from rorf_core.router import Router, check_threshold

if TYPE_CHECKING:
    from rorf_core.cache import EmbeddingCache

logger = logging.getLogger(__name__)

__all__ = ["Controller"]


class Controller:
    """Route prompts between two models with a trained router.

    :param router: a :class:`Router`, a local router directory, or a Hugging
        Face hub repo id.
    :param model_a: the name returned when a prompt goes to model A
        (default: the router's model A).
    :param model_b: the name returned when a prompt goes to model B.
    :param threshold: in [0, 1]; a prompt goes to model A when its win rate
        is at least this. Find one with ``rorf calibrate``.
    :param revision: hub revision to pin when ``router`` is a repo id.
    :param allow_pickle: allow a legacy RoRF router (``classifier.pkl``),
        which runs code from the file when unpickled.
    :param embedder_options: embedder options that override the saved ones
        (device, batch size, API key).
    :param cache: an embedding cache for batch calls; single prompts skip it,
        because a lookup costs more than embedding one prompt offline.
    :param upstreams: for ``chat.completions.create``, an ``Upstream`` or
        ``openai`` client per model name (see ``docs/serving.md``).
    """

    def __init__(
        self,
        router: str | os.PathLike[str] | Router,
        model_a: str | None = None,
        model_b: str | None = None,
        threshold: float = 0.5,
        *,
        revision: str | None = None,
        allow_pickle: bool = False,
        embedder_options: dict[str, Any] | None = None,
        cache: EmbeddingCache | None = None,
        upstreams: Mapping[str, Any] | None = None,
    ) -> None:
        self.threshold = check_threshold(threshold)
        if isinstance(router, Router):
            self.router = router
        else:
            self.router = Router.from_pretrained(
                router,
                revision=revision,
                allow_pickle=allow_pickle,
                embedder_options=embedder_options,
            )
        self.model_a = model_a or self.router.model_a
        self.model_b = model_b or self.router.model_b
        if (self.model_a, self.model_b) != (self.router.model_a, self.router.model_b):
            logger.warning(
                "router was trained on %s (A) vs %s (B); routing to %s and %s",
                self.router.model_a, self.router.model_b, self.model_a, self.model_b,
            )
        self.cache = cache
        self.chat = Chat(self, upstreams or {})
        self.async_chat = AsyncChat(self, upstreams or {})

    def batch_calculate_win_rate(self, prompts: Sequence[str]) -> np.ndarray:
        """Return each prompt's win rate (probability that model A is needed)."""
        return self.router.win_rate(list(prompts), cache=self.cache)

    def predict_proba(self, prompt: str) -> float:
        """Return the win rate of one prompt."""
        return float(self.router.win_rate([prompt])[0])

    def route(self, prompt: str, threshold: float | None = None) -> str:
        """Return the name of the model that should answer ``prompt``."""
        limit = self.threshold if threshold is None else check_threshold(threshold)
        return self.model_a if self.predict_proba(prompt) >= limit else self.model_b

    def batch_route(self, prompts: Sequence[str], threshold: float | None = None) -> list[str]:
        """Return the chosen model for each prompt, scoring the batch at once."""
        limit = self.threshold if threshold is None else check_threshold(threshold)
        rates = self.batch_calculate_win_rate(prompts)
        return [self.model_a if rate >= limit else self.model_b for rate in rates]

    def __repr__(self) -> str:
        return (
            f"Controller(model_a={self.model_a!r}, model_b={self.model_b!r}, "
            f"threshold={self.threshold}, router={self.router!r})"
        )
