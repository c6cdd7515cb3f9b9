"""``Controller.chat.completions.create``: route a conversation, then call the model.

The call reads like the ``openai`` client's: the router scores the
conversation (the last user turn by default, see
:mod:`rorf_core.serving.conversation`), picks model A or model B by the
threshold, and sends the request unchanged through an ``openai`` client for
that model's upstream. The provider's response comes back with ``model``
set to the routed model's name; a stream is wrapped so that each chunk
carries it too.

``model`` may be ``"rorf"`` (the Controller's threshold) or
``"rorf-<threshold>"``, as with the server; ``threshold=`` is the same
choice as a number. The ``openai`` package is imported on the first call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from rorf_core.router import check_threshold
from rorf_core.serving.conversation import ROUTE_ON_CHOICES, routing_text
from rorf_core.serving.protocol import ROUTER_MODEL, threshold_from_model
from rorf_core.serving.upstream import Upstream, check_upstreams

if TYPE_CHECKING:
    from rorf_core.controller import Controller

logger = logging.getLogger(__name__)

__all__ = ["Chat", "AsyncChat", "ChatCompletions", "AsyncChatCompletions"]

# The openai client refuses to start without a key and would otherwise read
# OPENAI_API_KEY, sending it to a base URL that may not be OpenAI's.
_NO_KEY = "no-key"


class _Routing:
    """Shared part of the sync and async clients: upstreams and the routing rule."""

    def __init__(
        self,
        controller: Controller,
        upstreams: Mapping[str, Any],
        *,
        route_on: str = "last-user",
    ) -> None:
        if route_on not in ROUTE_ON_CHOICES:
            choices = ", ".join(ROUTE_ON_CHOICES)
            raise ValueError(f"route_on must be one of {choices}, got {route_on!r}")
        self.controller = controller
        self.upstreams = dict(upstreams)
        self.route_on = route_on
        self._clients: dict[str, Any] = {}

    def _prepare(
        self, messages: Any, model: str, threshold: float | None
    ) -> tuple[float, str]:
        """Return the threshold and the routing text, raising before any embedding."""
        check_upstreams(
            self.upstreams, self.controller.model_a, self.controller.model_b
        )
        return self._threshold(model, threshold), routing_text(messages, self.route_on)

    def _threshold(self, model: str, threshold: float | None) -> float:
        if threshold is None:
            return threshold_from_model(model, self.controller.threshold)
        if model != ROUTER_MODEL:
            raise ValueError(
                f"pass either model={model!r} or threshold={threshold!r}, not both"
            )
        return check_threshold(threshold)

    def _decide(self, win_rate: float, threshold: float, started: float) -> str:
        controller = self.controller
        routed = controller.model_a if win_rate >= threshold else controller.model_b
        logger.info(
            "routed to %s, win rate %.4f, threshold %g, routing %.2f ms",
            routed,
            win_rate,
            threshold,
            (time.perf_counter() - started) * 1000,
        )
        return routed

    def _client_for(self, model: str, factory_name: str) -> Any:
        client = self._clients.get(model)
        if client is not None:
            return client
        upstream = self.upstreams[model]
        if not isinstance(upstream, Upstream):
            # A ready openai client (OpenAI, AsyncOpenAI, AzureOpenAI, ...).
            self._clients[model] = upstream
            return upstream
        import openai

        factory = getattr(openai, factory_name)
        client = factory(
            base_url=upstream.base_url,
            api_key=upstream.resolve_api_key() or _NO_KEY,
            timeout=upstream.timeout_s,
            max_retries=upstream.max_retries,
        )
        self._clients[model] = client
        return client


class ChatCompletions(_Routing):
    """Route chat completions between the Controller's two models.

    :param controller: scores the prompt and stores the models and threshold.
    :param upstreams: for each of ``controller.model_a`` and
        ``controller.model_b``, an :class:`~rorf_core.serving.Upstream` or a
        ready ``openai.OpenAI`` client.
    :param route_on: ``last-user`` or ``conversation``.
    """

    def create(
        self,
        *,
        messages: Any,
        model: str = ROUTER_MODEL,
        threshold: float | None = None,
        **kwargs: Any,
    ) -> Any:
        """Route ``messages`` and return the chosen model's chat completion.

        Other keyword arguments go to ``client.chat.completions.create``
        unchanged. With ``stream=True`` the result iterates chunks.

        :raises InvalidRequestError: the messages contain no text to route on,
            or ``model`` is neither ``rorf`` nor ``rorf-<threshold>``.
        :raises openai.APIError: the upstream failed, as the ``openai``
            client raises it.
        """
        started = time.perf_counter()
        limit, prompt = self._prepare(messages, model, threshold)
        win_rate = self.controller.predict_proba(prompt)
        routed = self._decide(win_rate, limit, started)
        client = self._client_for(routed, "OpenAI")
        response = client.chat.completions.create(
            model=routed, messages=messages, **kwargs
        )
        if kwargs.get("stream"):
            return RoutedStream(response, routed)
        response.model = routed
        return response


class AsyncChatCompletions(_Routing):
    """The async form of :class:`ChatCompletions`, over ``openai.AsyncOpenAI``.

    Scoring runs in a worker thread, so the event loop keeps running while
    the prompt is embedded.
    """

    async def create(
        self,
        *,
        messages: Any,
        model: str = ROUTER_MODEL,
        threshold: float | None = None,
        **kwargs: Any,
    ) -> Any:
        """Route ``messages`` and return the chosen model's chat completion.

        See :meth:`ChatCompletions.create`; a stream iterates with ``async for``.
        """
        started = time.perf_counter()
        limit, prompt = self._prepare(messages, model, threshold)
        win_rate = await asyncio.to_thread(self.controller.predict_proba, prompt)
        routed = self._decide(win_rate, limit, started)
        client = self._client_for(routed, "AsyncOpenAI")
        response = await client.chat.completions.create(
            model=routed, messages=messages, **kwargs
        )
        if kwargs.get("stream"):
            return AsyncRoutedStream(response, routed)
        response.model = routed
        return response


class RoutedStream:
    """An ``openai`` stream whose chunks name the routed model."""

    def __init__(self, stream: Any, model: str) -> None:
        self.stream = stream
        self.model = model

    def __iter__(self) -> Iterator[Any]:
        for chunk in self.stream:
            chunk.model = self.model
            yield chunk

    def close(self) -> None:
        self.stream.close()

    def __enter__(self) -> RoutedStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncRoutedStream:
    """An ``openai`` async stream whose chunks name the routed model."""

    def __init__(self, stream: Any, model: str) -> None:
        self.stream = stream
        self.model = model

    async def __aiter__(self) -> AsyncIterator[Any]:
        async for chunk in self.stream:
            chunk.model = self.model
            yield chunk

    async def close(self) -> None:
        await self.stream.close()

    async def __aenter__(self) -> AsyncRoutedStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class Chat:
    """The ``controller.chat`` namespace, as in ``openai.OpenAI().chat``."""

    def __init__(
        self, controller: Controller, upstreams: Mapping[str, Any], **options: Any
    ):
        self.completions = ChatCompletions(controller, upstreams, **options)


class AsyncChat:
    """The ``controller.async_chat`` namespace, over ``openai.AsyncOpenAI``."""

    def __init__(
        self, controller: Controller, upstreams: Mapping[str, Any], **options: Any
    ):
        self.completions = AsyncChatCompletions(controller, upstreams, **options)
