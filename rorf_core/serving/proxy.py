"""Forward a routed chat completion request to its upstream with httpx.

The request body goes out as the client sent it, with only ``model``
replaced by the routed model's name. No header of the client's request is
forwarded. The upstream receives its own key (if any) and a JSON content
type, so the server's key and anything else the client sent stay here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx2 as httpx

from rorf_core.serving.protocol import APIError, error_body
from rorf_core.serving.upstream import Upstream

logger = logging.getLogger(__name__)

__all__ = ["UpstreamClient", "UpstreamReply", "UpstreamStream"]

#: How much of a non-JSON upstream error body is quoted back to the client.
_MAX_QUOTED_CHARS = 500
#: Upstream response headers passed back to the client on errors.
_PASSED_ERROR_HEADERS = ("retry-after",)


class UpstreamReply:
    """A complete (non-streaming) upstream response, already checked."""

    def __init__(self, body: dict[str, Any], elapsed_ms: float) -> None:
        self.body = body
        self.elapsed_ms = elapsed_ms


class UpstreamStream:
    """An open streaming upstream response; iterate :meth:`events` once."""

    def __init__(
        self, model: str, response: httpx.Response, elapsed_ms: float, request_id: str
    ) -> None:
        self.model = model
        self.request_id = request_id
        self.response = response
        self.elapsed_ms = elapsed_ms

    async def events(self) -> AsyncIterator[bytes]:
        """Yield the server-sent events with ``model`` renamed, then one ``[DONE]``.

        Chunks with an empty ``choices`` list pass through like any other.
        The upstream's own ``[DONE]`` is dropped and exactly one is sent at
        the end, also after an upstream failure mid-stream, which becomes an
        ``error`` event first.
        """
        try:
            async for event in _read_events(self.response):
                if event.get("data") == "[DONE]":
                    break
                yield _encode_event(event, self.model)
        except httpx.TimeoutException:
            logger.warning(
                "request %s: upstream model %r timed out mid-stream",
                self.request_id,
                self.model,
            )
            yield _error_event(
                f"upstream model {self.model!r} timed out during the stream",
                "upstream_timeout",
            )
        except httpx.HTTPError as error:
            logger.warning(
                "request %s: upstream model %r failed mid-stream: %s",
                self.request_id,
                self.model,
                error,
            )
            yield _error_event(
                f"upstream model {self.model!r} failed during the stream: "
                f"{type(error).__name__}",
                "upstream_error",
            )
        finally:
            await self.response.aclose()
        yield b"data: [DONE]\n\n"


class UpstreamClient:
    """One pooled httpx client per upstream, keyed by model name.

    :param max_connections: the most open connections to each upstream.
        Requests beyond it wait for a free connection, within the upstream's
        timeout.
    """

    def __init__(
        self, upstreams: Mapping[str, Upstream], *, max_connections: int = 100
    ) -> None:
        self.upstreams = dict(upstreams)
        self.max_connections = max_connections
        # The upstream keys are read once, at start-up, so a missing variable
        # fails the server's start instead of its first request.
        self._keys = {name: up.resolve_api_key() for name, up in self.upstreams.items()}
        self._clients: dict[str, httpx.AsyncClient] = {}

    def _client(self, model: str) -> httpx.AsyncClient:
        client = self._clients.get(model)
        if client is None:
            upstream = self.upstreams[model]
            # Idle connections are all kept, so a burst reuses them instead of
            # opening new ones: httpcore's pool bookkeeping costs time per
            # pooled connection on every request.
            limits = httpx.Limits(
                max_connections=self.max_connections,
                max_keepalive_connections=self.max_connections,
            )
            client = httpx.AsyncClient(
                timeout=httpx.Timeout(upstream.timeout_s),
                limits=limits,
                follow_redirects=False,
                trust_env=False,
            )
            self._clients[model] = client
        return client

    def _headers(self, model: str) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = self._keys[model]
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    async def aclose(self) -> None:
        """Close every pooled connection."""
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()

    async def complete(
        self, model: str, body: dict[str, Any], request_id: str = "-"
    ) -> UpstreamReply:
        """Send a non-streaming request and return the upstream's JSON body.

        :raises APIError: the upstream returned an error status (same
            status), timed out (504), could not be reached (502) or sent a
            body that is not a JSON object (502).
        """
        upstream = self.upstreams[model]
        started = time.perf_counter()
        try:
            response = await asyncio.wait_for(
                self._client(model).post(
                    upstream.chat_completions_url,
                    content=json.dumps(body).encode(),
                    headers=self._headers(model),
                ),
                upstream.timeout_s,
            )
        except (asyncio.TimeoutError, httpx.TimeoutException):
            raise _timeout_error(model, upstream, request_id) from None
        except httpx.HTTPError as error:
            raise _unreachable_error(model, error, request_id) from None
        elapsed_ms = (time.perf_counter() - started) * 1000
        if response.status_code >= 400:
            raise _status_error(model, response, response.content, request_id)
        try:
            parsed = response.json()
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise APIError(
                502,
                f"upstream model {model!r} returned a body that is not a JSON object",
                type="upstream_error",
                code="invalid_upstream_response",
            )
        return UpstreamReply(parsed, elapsed_ms)

    async def open_stream(
        self, model: str, body: dict[str, Any], request_id: str = "-"
    ) -> UpstreamStream:
        """Send a streaming request and return it once the headers arrived.

        :raises APIError: as :meth:`complete`, for failures before the first
            event.
        """
        upstream = self.upstreams[model]
        client = self._client(model)
        request = client.build_request(
            "POST",
            upstream.chat_completions_url,
            content=json.dumps(body).encode(),
            headers={**self._headers(model), "Accept": "text/event-stream"},
        )
        started = time.perf_counter()
        try:
            response = await asyncio.wait_for(
                client.send(request, stream=True), upstream.timeout_s
            )
        except (asyncio.TimeoutError, httpx.TimeoutException):
            raise _timeout_error(model, upstream, request_id) from None
        except httpx.HTTPError as error:
            raise _unreachable_error(model, error, request_id) from None
        elapsed_ms = (time.perf_counter() - started) * 1000
        if response.status_code >= 400:
            try:
                content = await asyncio.wait_for(response.aread(), upstream.timeout_s)
            except (asyncio.TimeoutError, httpx.HTTPError):
                content = b""
            finally:
                await response.aclose()
            raise _status_error(model, response, content, request_id)
        content_type = response.headers.get("content-type", "")
        if not content_type.startswith("text/event-stream"):
            await response.aclose()
            raise APIError(
                502,
                f"upstream model {model!r} answered a streaming request with "
                f"content type {content_type!r} instead of text/event-stream",
                type="upstream_error",
                code="invalid_upstream_response",
            )
        return UpstreamStream(model, response, elapsed_ms, request_id)


async def _read_events(response: httpx.Response) -> AsyncIterator[dict[str, str]]:
    """Parse server-sent events into ``{"event": ..., "data": ...}`` dicts."""
    event: dict[str, str] = {}
    data_lines: list[str] = []
    async for line in response.aiter_lines():
        if not line:
            if data_lines:
                event["data"] = "\n".join(data_lines)
                yield event
            event, data_lines = {}, []
            continue
        if line.startswith(":"):
            continue  # An SSE comment, often a keep-alive.
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "data":
            data_lines.append(value)
        elif field == "event":
            event["event"] = value
    if data_lines:
        event["data"] = "\n".join(data_lines)
        yield event


def _encode_event(event: dict[str, str], model: str) -> bytes:
    data = event["data"]
    try:
        chunk = json.loads(data)
    except ValueError:
        chunk = None
    if isinstance(chunk, dict) and "error" not in chunk:
        chunk["model"] = model
        data = json.dumps(chunk, separators=(",", ":"))
    prefix = f"event: {event['event']}\n" if "event" in event else ""
    lines = "".join(f"data: {line}\n" for line in data.split("\n"))
    return f"{prefix}{lines}\n".encode()


def _error_event(message: str, code: str) -> bytes:
    body = error_body(message, "upstream_error", None, code)
    return f"data: {json.dumps(body)}\n\n".encode()


def _timeout_error(model: str, upstream: Upstream, request_id: str) -> APIError:
    logger.warning(
        "request %s: upstream model %r did not respond within %g s",
        request_id,
        model,
        upstream.timeout_s,
    )
    return APIError(
        504,
        f"upstream model {model!r} did not respond within {upstream.timeout_s:g} s",
        type="upstream_error",
        code="upstream_timeout",
    )


def _unreachable_error(model: str, error: httpx.HTTPError, request_id: str) -> APIError:
    logger.warning(
        "request %s: upstream model %r is unreachable: %s", request_id, model, error
    )
    return APIError(
        502,
        f"upstream model {model!r} could not be reached: {type(error).__name__}",
        type="upstream_error",
        code="upstream_unavailable",
    )


def _status_error(
    model: str, response: httpx.Response, content: bytes, request_id: str
) -> APIError:
    status = response.status_code
    detail = _upstream_error_fields(content)
    message = detail.get("message") or _quote(content) or response.reason_phrase
    logger.warning(
        "request %s: upstream model %r returned HTTP %d", request_id, model, status
    )
    headers = {
        name: response.headers[name]
        for name in _PASSED_ERROR_HEADERS
        if name in response.headers
    }
    return APIError(
        status,
        f"upstream model {model!r} returned HTTP {status}: {message}",
        type=detail.get("type") or "upstream_error",
        param=detail.get("param"),
        code=detail.get("code") or "upstream_error",
        headers=headers,
    )


def _upstream_error_fields(content: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(content)
    except ValueError:
        return {}
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if not isinstance(error, dict):
        return {}
    return {
        key: error[key]
        for key in ("message", "type", "param", "code")
        if isinstance(error.get(key), str)
    }


def _quote(content: bytes) -> str:
    text = content.decode("utf-8", errors="replace").strip()
    if len(text) > _MAX_QUOTED_CHARS:
        return text[:_MAX_QUOTED_CHARS] + "..."
    return text
