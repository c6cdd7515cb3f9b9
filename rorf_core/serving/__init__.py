"""An OpenAI-compatible server that routes chat completions between two models.

Install the ``serve`` extra (``pip install 'rorf-core[serve]'``) for the
server. :class:`Upstream`, :func:`routing_text` and
:func:`threshold_from_model` need none of its packages, so
``rorf_core.chat`` uses them with only ``openai`` installed. The server
names (:func:`create_app`, :class:`ServeSettings`) import Starlette and
httpx2 on first use.
"""

from __future__ import annotations

from typing import Any

from rorf_core.serving.conversation import ROUTE_ON_CHOICES, routing_text
from rorf_core.serving.protocol import InvalidRequestError, threshold_from_model
from rorf_core.serving.upstream import Upstream

__all__ = [
    "ROUTE_ON_CHOICES",
    "InvalidRequestError",
    "ServeSettings",
    "Upstream",
    "create_app",
    "routing_text",
    "threshold_from_model",
]

_SERVER_NAMES = ("ServeSettings", "create_app")


def __getattr__(name: str) -> Any:
    if name in _SERVER_NAMES:
        from rorf_core.serving import app

        return getattr(app, name)
    raise AttributeError(f"module 'rorf_core.serving' has no attribute {name!r}")
