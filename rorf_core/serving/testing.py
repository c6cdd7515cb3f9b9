"""A fake OpenAI-compatible upstream and a helper that runs a server in a thread.

For tests, benchmarks and trying ``rorf serve`` without a real provider. The
fake upstream serves ``POST /v1/chat/completions`` in the chat completions
wire format, with SSE streaming, and records every request it receives.
Run one from a shell with
``python -m rorf_core.serving.testing --name NAME --port PORT``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import attrs
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

__all__ = ["FakeUpstream", "RecordedRequest", "ServerThread"]


@attrs.frozen
class RecordedRequest:
    """One request as the fake upstream received it."""

    headers: dict[str, str]
    body: dict[str, Any]


class FakeUpstream:
    """An OpenAI-compatible chat completions server that records its requests.

    The reply text names the upstream (``"answer from NAME"``), so a test can
    tell which upstream responded. Set :attr:`fail_status` to fail every
    request with that HTTP status, :attr:`delay_s` to wait before answering,
    or :attr:`stream_stall_s` to pause a stream after its first text chunk
    (both to provoke timeouts).

    A stream is a leading chunk with an empty ``choices`` list (as a
    content-filter result is), one chunk per word of the reply, a finishing
    chunk, a usage chunk with empty ``choices`` and ``data: [DONE]``.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.requests: list[RecordedRequest] = []
        self.fail_status: int | None = None
        self.delay_s = 0.0
        self.stream_stall_s = 0.0
        self.record = True
        self._lock = threading.Lock()
        self.app = Starlette(
            routes=[Route("/v1/chat/completions", self._complete, methods=["POST"])]
        )

    def reply_text(self) -> str:
        return f"answer from {self.name}"

    async def _complete(self, request: Request) -> Response:
        body = await request.json()
        if self.record:
            with self._lock:
                self.requests.append(RecordedRequest(dict(request.headers), body))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail_status is not None:
            error = {
                "message": f"{self.name} failed on purpose",
                "type": "server_error",
                "param": None,
                "code": "fake_failure",
            }
            return JSONResponse({"error": error}, status_code=self.fail_status)
        if body.get("stream"):
            return StreamingResponse(self._chunks(body), media_type="text/event-stream")
        return JSONResponse(self._completion(body))

    def _completion(self, body: dict[str, Any]) -> dict[str, Any]:
        message = {"role": "assistant", "content": self.reply_text()}
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": f"{body.get('model')}-upstream",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6},
        }

    async def _chunks(self, body: dict[str, Any]) -> AsyncIterator[bytes]:
        base = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": f"{body.get('model')}-upstream",
        }
        chunks: list[dict[str, Any]] = [
            {**base, "choices": [], "prompt_filter_results": []}
        ]
        for index, word in enumerate(self.reply_text().split(" ")):
            text = word if index == 0 else " " + word
            delta = (
                {"role": "assistant", "content": text}
                if index == 0
                else {"content": text}
            )
            chunks.append({**base, "choices": [{"index": 0, "delta": delta}]})
        chunks.append(
            {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        )
        usage = {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}
        chunks.append({**base, "choices": [], "usage": usage})
        for index, chunk in enumerate(chunks):
            yield f"data: {json.dumps(chunk)}\n\n".encode()
            if index == 1 and self.stream_stall_s:
                await asyncio.sleep(self.stream_stall_s)
        yield b"data: [DONE]\n\n"


class ServerThread:
    """Run an ASGI app with uvicorn on 127.0.0.1 in a daemon thread.

    Use it as a context manager: the server is up when ``__enter__``
    returns and stopped when ``__exit__`` returns or its timeout ran out.
    """

    def __init__(
        self,
        app: Any,
        *,
        port: int = 0,
        start_timeout_s: float = 30.0,
        stop_timeout_s: float = 10.0,
    ) -> None:
        self.app = app
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        # asyncio sets TCP_NODELAY on accepted connections only when the
        # protocol is IPPROTO_TCP. Without it, each keep-alive response
        # waited about 40 ms for the client's delayed ACK.
        self._socket = socket.socket(
            socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP
        )
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", port))
        self.port = self._socket.getsockname()[1]
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerThread:
        import uvicorn

        config = uvicorn.Config(
            self.app, log_level="warning", access_log=False, lifespan="on"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + self.start_timeout_s
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"the server on port {self.port} failed to start")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(
                    f"the server on port {self.port} did not start within "
                    f"{self.start_timeout_s:g} s"
                )
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(self.stop_timeout_s)
        if self._thread.is_alive():
            # Open streams or a slow lifespan keep it running, so cut them off.
            self._server.force_exit = True
            self._thread.join(self.stop_timeout_s)
        self._socket.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    """Serve a fake upstream until interrupted; print its base URL first."""
    parser = argparse.ArgumentParser(
        description="Run a fake OpenAI-compatible upstream."
    )
    parser.add_argument("--name", required=True, help="the name the replies carry")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args(argv)
    upstream = FakeUpstream(args.name)
    # A long-running fake would otherwise keep every request in memory.
    upstream.record = False
    server = ServerThread(upstream.app, port=args.port).start()
    print(f"{server.url}/v1", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
