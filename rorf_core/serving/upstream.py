"""Upstream endpoints: the OpenAI-compatible base URL and key of each model."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs

__all__ = ["Upstream", "check_upstreams"]

DEFAULT_TIMEOUT_S = 60.0


def _check_base_url(instance: Any, attribute: Any, value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(
            f"base_url must be an http:// or https:// URL such as "
            f"'https://api.openai.com/v1', got {value!r}"
        )


def _check_timeout(instance: Any, attribute: Any, value: float) -> None:
    if not value > 0:
        raise ValueError(
            f"timeout_s must be a positive number of seconds, got {value!r}"
        )


@attrs.frozen(kw_only=True)
class Upstream:
    """An OpenAI-compatible chat completions endpoint that serves one model.

    :param base_url: the API root, ending before ``/chat/completions``, for
        example ``https://api.openai.com/v1``.
    :param api_key: the key sent as ``Authorization: Bearer``. It is left out
        of ``repr`` and never logged.
    :param api_key_env: an environment variable to read the key from when
        ``api_key`` is not given; it is read on each :meth:`resolve_api_key`
        call.
    :param timeout_s: the most seconds to wait for a complete response, or
        for a streaming response's headers and then each chunk.
    :param max_retries: retries made by the ``openai`` client of
        ``Controller.chat``. The server makes one attempt and returns the
        upstream's error, so that the caller's own retry policy applies once.
    """

    base_url: str = attrs.field(validator=_check_base_url)
    api_key: str | None = attrs.field(default=None, repr=False)
    api_key_env: str | None = None
    timeout_s: float = attrs.field(default=DEFAULT_TIMEOUT_S, validator=_check_timeout)
    max_retries: int = 2

    def resolve_api_key(self) -> str | None:
        """Return ``api_key``, else the value of ``api_key_env``, else ``None``.

        :raises ValueError: ``api_key_env`` names a variable that is unset
            or empty.
        """
        if self.api_key:
            return self.api_key
        if self.api_key_env is None:
            return None
        value = os.environ.get(self.api_key_env, "")
        if not value:
            raise ValueError(
                f"the upstream at {self.base_url} reads its API key from "
                f"${self.api_key_env}, which is unset or empty; export it first"
            )
        return value

    @property
    def chat_completions_url(self) -> str:
        """The URL that chat completion requests are sent to."""
        return self.base_url.rstrip("/") + "/chat/completions"


def check_upstreams(
    upstreams: Mapping[str, Any], model_a: str, model_b: str
) -> dict[str, Any]:
    """Return ``upstreams`` as a dict, raising unless it covers both models.

    The two model names must differ, because the name decides the upstream.
    """
    if model_a == model_b:
        raise ValueError(
            f"model A and model B are both named {model_a!r}; give them distinct "
            "names so that each name selects one upstream"
        )
    missing = [name for name in (model_a, model_b) if name not in upstreams]
    if missing:
        raise ValueError(
            f"no upstream for model(s) {', '.join(map(repr, missing))}; pass "
            f"upstreams={{{model_a!r}: Upstream(base_url=...), {model_b!r}: "
            "Upstream(base_url=...)}"
        )
    return dict(upstreams)
