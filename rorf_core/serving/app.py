"""The OpenAI-compatible routing server, as a Starlette application.

``POST /v1/chat/completions`` reads the request, routes it with the
Controller's router and forwards it to model A's or model B's upstream,
streaming or not. ``GET /v1/models`` lists the ``rorf`` model and
``GET /health`` returns ``{"status": "ok"}`` without authentication, for
load balancers. Every error is an OpenAI-style JSON body.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

import attrs
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from rorf_core.errors import InvalidInputError
from rorf_core.serving.batching import (
    EmbeddingTimeoutError,
    MicroBatcher,
    QueueFullError,
    ScoringError,
)
from rorf_core.serving.conversation import ROUTE_ON_CHOICES, routing_text
from rorf_core.serving.protocol import (
    ROUTER_MODEL,
    APIError,
    InvalidRequestError,
    error_body,
    threshold_from_model,
)
from rorf_core.serving.proxy import UpstreamClient
from rorf_core.serving.upstream import Upstream, check_upstreams

if TYPE_CHECKING:
    from rorf_core.controller import Controller

logger = logging.getLogger(__name__)

__all__ = ["ServeSettings", "create_app"]


def _positive(instance: Any, attribute: Any, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be positive, got {value!r}")


def _not_negative(instance: Any, attribute: Any, value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be at least 0, got {value!r}")


@attrs.frozen(kw_only=True)
class ServeSettings:
    """Settings for admitting, routing and batching requests.

    :param api_key: the key clients must send as ``Authorization: Bearer``;
        ``None`` admits every request. It is never forwarded or logged.
    :param route_on: ``last-user`` or ``conversation``, see
        :mod:`rorf_core.serving.conversation`.
    :param log_prompts: also log the text each request was routed on.
    :param max_body_bytes: larger request bodies get HTTP 413.
    :param max_batch: the most prompts scored in one embedding call.
    :param batch_wait_ms: how long the first prompt of a batch waits for
        others, in milliseconds.
    :param embed_timeout_s: the most seconds a request waits for its
        routing score before it gets HTTP 503.
    :param max_queue: the most prompts waiting for a score; more get 503.
    :param max_upstream_connections: the most open connections to each
        upstream; more concurrent requests wait for one to be free.
    """

    api_key: str | None = attrs.field(default=None, repr=False)
    route_on: str = attrs.field(
        default="last-user", validator=attrs.validators.in_(ROUTE_ON_CHOICES)
    )
    log_prompts: bool = False
    max_body_bytes: int = attrs.field(default=1_048_576, validator=_positive)
    max_batch: int = attrs.field(default=64, validator=_positive)
    batch_wait_ms: float = attrs.field(default=1.0, validator=_not_negative)
    embed_timeout_s: float = attrs.field(default=10.0, validator=_positive)
    max_queue: int = attrs.field(default=4096, validator=_positive)
    max_upstream_connections: int = attrs.field(default=100, validator=_positive)


class RoutingService:
    """The request handlers, with the batcher and upstream pool they share."""

    def __init__(
        self,
        controller: Controller,
        upstreams: Mapping[str, Upstream],
        settings: ServeSettings,
    ) -> None:
        self.controller = controller
        self.settings = settings
        checked = check_upstreams(upstreams, controller.model_a, controller.model_b)
        self.upstream = UpstreamClient(
            checked, max_connections=settings.max_upstream_connections
        )
        self.batcher = MicroBatcher(
            controller.router.win_rate,
            max_batch=settings.max_batch,
            max_wait_s=settings.batch_wait_ms / 1000,
            timeout_s=settings.embed_timeout_s,
            max_queue=settings.max_queue,
        )
        self.created = int(time.time())

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        """Start the batcher and close the upstream connections at shutdown."""
        await self.batcher.start()
        logger.info(
            "routing between %s (A) and %s (B) at threshold %g, on %s",
            self.controller.model_a,
            self.controller.model_b,
            self.controller.threshold,
            self.settings.route_on,
        )
        try:
            yield
        finally:
            await self.batcher.stop()
            await self.upstream.aclose()

    # Handlers --------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def models(self, request: Request) -> Response:
        self._check_api_key(request)
        model = {
            "id": ROUTER_MODEL,
            "object": "model",
            "created": self.created,
            "owned_by": "rorf",
        }
        return JSONResponse({"object": "list", "data": [model]})

    async def chat_completions(self, request: Request) -> Response:
        started = time.perf_counter()
        request_id = uuid.uuid4().hex[:16]
        self._check_api_key(request)
        body = await self._read_body(request)
        threshold, stream, prompt = self._parse(body)

        win_rate = await self._score(prompt)
        controller = self.controller
        routed = controller.model_a if win_rate >= threshold else controller.model_b
        routing_ms = (time.perf_counter() - started) * 1000
        self._log_decision(request_id, routed, win_rate, threshold, routing_ms, prompt)

        headers = {
            "x-rorf-request-id": request_id,
            "x-rorf-model": routed,
            "x-rorf-win-rate": f"{win_rate:.6f}",
            "x-rorf-threshold": f"{threshold:g}",
            "x-rorf-routing-ms": f"{routing_ms:.3f}",
        }
        forwarded = {**body, "model": routed}
        if stream:
            return await self._stream(request_id, routed, forwarded, headers)
        return await self._complete(request_id, routed, forwarded, headers, started)

    def _parse(self, body: dict[str, Any]) -> tuple[float, bool, str]:
        """Return the threshold, the stream flag and the routing text, or raise 400."""
        try:
            threshold = threshold_from_model(
                body.get("model"), self.controller.threshold
            )
            stream = _stream_flag(body)
            prompt = routing_text(body.get("messages"), self.settings.route_on)
        except InvalidRequestError as error:
            raise APIError.invalid_request(error) from None
        return threshold, stream, prompt

    async def _complete(
        self,
        request_id: str,
        routed: str,
        forwarded: dict[str, Any],
        headers: dict[str, str],
        started: float,
    ) -> Response:
        reply = await self.upstream.complete(routed, forwarded, request_id)
        reply.body["model"] = routed
        server_ms = (time.perf_counter() - started) * 1000
        headers["x-rorf-upstream-ms"] = f"{reply.elapsed_ms:.3f}"
        headers["x-rorf-server-ms"] = f"{server_ms:.3f}"
        logger.info(
            "request %s: %s responded in %.1f ms (server total %.1f ms)",
            request_id,
            routed,
            reply.elapsed_ms,
            server_ms,
        )
        return JSONResponse(reply.body, headers=headers)

    async def _stream(
        self,
        request_id: str,
        routed: str,
        forwarded: dict[str, Any],
        headers: dict[str, str],
    ) -> Response:
        upstream_stream = await self.upstream.open_stream(routed, forwarded, request_id)
        headers["x-rorf-upstream-ms"] = f"{upstream_stream.elapsed_ms:.3f}"
        headers["cache-control"] = "no-cache"
        logger.info(
            "request %s: %s started streaming after %.1f ms",
            request_id,
            routed,
            upstream_stream.elapsed_ms,
        )
        return StreamingResponse(
            upstream_stream.events(), media_type="text/event-stream", headers=headers
        )

    # Steps -----------------------------------------------------------------

    def _check_api_key(self, request: Request) -> None:
        expected = self.settings.api_key
        if expected is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise APIError(
                401,
                "missing API key: send it in the header 'Authorization: Bearer KEY'",
                type="invalid_request_error",
                code="invalid_api_key",
                headers={"www-authenticate": "Bearer"},
            )
        # compare_digest takes the same time wherever the strings differ.
        if not hmac.compare_digest(token.strip().encode(), expected.encode()):
            raise APIError(
                401,
                "invalid API key",
                type="invalid_request_error",
                code="invalid_api_key",
                headers={"www-authenticate": "Bearer"},
            )

    async def _read_body(self, request: Request) -> dict[str, Any]:
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _too_large(limit)
        chunks, size = [], 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                chunks.append(chunk)
        except ClientDisconnect:
            raise APIError(
                400,
                "the client disconnected while sending the body",
                type="invalid_request_error",
            ) from None
        try:
            body = json.loads(b"".join(chunks))
        except ValueError as error:
            raise APIError(
                400,
                f"the request body is not valid JSON: {error}",
                type="invalid_request_error",
                code="invalid_json",
            ) from None
        if not isinstance(body, dict):
            raise APIError(
                400,
                f"the request body must be a JSON object, got {type(body).__name__}",
                type="invalid_request_error",
                code="invalid_json",
            )
        return body

    async def _score(self, prompt: str) -> float:
        try:
            return await self.batcher.score(prompt)
        except InvalidInputError as error:
            raise APIError(
                400,
                f"the embedder rejected the prompt: {error.reason}",
                type="invalid_request_error",
                param="messages",
                code="invalid_value",
            ) from None
        except EmbeddingTimeoutError as error:
            logger.warning("routing timed out: %s", error)
            raise APIError(
                503,
                f"routing timed out: {error}; the embedder is slow or unavailable",
                type="server_error",
                code="router_timeout",
            ) from None
        except QueueFullError as error:
            logger.warning("routing queue is full: %s", error)
            raise APIError(
                503,
                f"the router is overloaded: {error}; retry later",
                type="server_error",
                code="router_overloaded",
                headers={"retry-after": "1"},
            ) from None
        except ScoringError as error:
            # The full error is logged by the batcher; clients get its type.
            cause = type(error.__cause__ or error).__name__
            raise APIError(
                502,
                f"routing failed: the embedder or forest raised {cause}",
                type="server_error",
                code="router_error",
            ) from None

    def _log_decision(
        self,
        request_id: str,
        routed: str,
        win_rate: float,
        threshold: float,
        routing_ms: float,
        prompt: str,
    ) -> None:
        side = "A" if routed == self.controller.model_a else "B"
        logger.info(
            "request %s: routed to %s (%s), win rate %.4f, threshold %g, "
            "routing %.2f ms",
            request_id,
            routed,
            side,
            win_rate,
            threshold,
            routing_ms,
        )
        if self.settings.log_prompts:
            logger.info("request %s: routed on prompt %r", request_id, prompt)


def _stream_flag(body: dict[str, Any]) -> bool:
    stream = body.get("stream")
    if stream is None or isinstance(stream, bool):
        return bool(stream)
    raise InvalidRequestError(
        f"stream must be true, false or null, got {stream!r}", param="stream"
    )


def _too_large(limit: int) -> APIError:
    return APIError(
        413,
        f"the request body is larger than the server's limit of {limit} bytes",
        type="invalid_request_error",
        code="request_too_large",
    )


# Error handlers ------------------------------------------------------------


async def _api_error_response(request: Request, error: Exception) -> Response:
    assert isinstance(error, APIError)
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


async def _http_error_response(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    body = error_body(str(error.detail), "invalid_request_error", None, None)
    return JSONResponse(body, status_code=error.status_code, headers=error.headers)


async def _unexpected_error_response(request: Request, error: Exception) -> Response:
    logger.error(
        "unexpected error on %s %s", request.method, request.url.path, exc_info=error
    )
    body = error_body("internal server error", "server_error", None, None)
    return JSONResponse(body, status_code=500)


def create_app(
    controller: Controller,
    upstreams: Mapping[str, Upstream],
    settings: ServeSettings | None = None,
) -> Starlette:
    """Return the routing server for ``controller`` as an ASGI application.

    :param upstreams: an :class:`Upstream` for ``controller.model_a`` and one
        for ``controller.model_b``, keyed by those names.
    :raises ValueError: an upstream is missing or an upstream key variable
        is unset.
    """
    service = RoutingService(controller, upstreams, settings or ServeSettings())
    routes = [
        Route("/v1/chat/completions", service.chat_completions, methods=["POST"]),
        Route("/v1/models", service.models, methods=["GET"]),
        Route("/health", service.health, methods=["GET"]),
    ]
    handlers = {
        APIError: _api_error_response,
        HTTPException: _http_error_response,
        Exception: _unexpected_error_response,
    }
    app = Starlette(
        routes=routes, exception_handlers=handlers, lifespan=service.lifespan
    )
    app.state.service = service
    return app
