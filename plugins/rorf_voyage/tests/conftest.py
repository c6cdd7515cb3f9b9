"""A local server that speaks Voyage AI's embeddings wire format, and fixtures.

The tests run the real ``voyageai`` client against :class:`FakeVoyage` on
127.0.0.1. Nothing may leave the machine: the proxy variables point at a
closed local port (so a stray download fails at once), ``NO_PROXY`` exempts
the fake server and the Hugging Face hub is switched to offline mode.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import random
import socket
import threading
from collections import deque
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

#: The environment before the proxy guard below, for subprocesses that must
#: reach the package index.
ORIGINAL_ENVIRON = dict(os.environ)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


_DEAD_PROXY = f"http://127.0.0.1:{_closed_port()}"
for _name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
    os.environ[_name] = _DEAD_PROXY
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
os.environ["HF_HUB_OFFLINE"] = "1"

API_KEY = "pa-test-0123456789abcdef-secret"


def expected_vector(text: str, dimension: int) -> np.ndarray:
    """Return the vector that the fake server gives ``text``."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    repeated = (digest * (dimension // len(digest) + 1))[:dimension]
    return np.frombuffer(repeated, dtype=np.uint8).astype(np.float32) / 255.0


class FakeVoyage:
    """Records each request and answers from a script, then with vectors.

    The fake counts one token per whitespace-separated word. An input over
    ``context_length`` words is cut to that many words when the request
    asks for truncation, and rejected with HTTP 400 otherwise, as the real
    API does with its own tokenizer.
    """

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.script: deque[tuple[int, dict[str, Any], dict[str, str]]] = deque()
        self.always: tuple[int, dict[str, Any], dict[str, str]] | None = None
        self.shuffle = False
        self.dimension = 12
        self.context_length = 16000
        self.lock = threading.Lock()
        self._server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), self._handler()
        )
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def inputs(self) -> list[list[str]]:
        """Return the input list of each recorded request, in arrival order."""
        return [request["body"]["input"] for request in self.requests]

    def fail_next(self, status: int, detail: str, **headers: str) -> None:
        self.script.append((status, {"detail": detail}, headers))

    def answer(
        self, body: dict[str, Any]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self.lock:
            if self.script:
                return self.script.popleft()
            if self.always is not None:
                return self.always
        texts = body["input"]
        for index, text in enumerate(texts):
            words = len(text.split())
            if words > self.context_length and not body.get("truncation", True):
                detail = (
                    f"Input {index} has {words} tokens, more than the context "
                    f"length of {self.context_length}."
                )
                return 400, {"detail": detail}, {}
        return 200, self._embeddings(body), {}

    def truncated(self, text: str) -> str:
        """Return ``text`` as the fake embeds it when truncation is on."""
        words = text.split()
        if len(words) <= self.context_length:
            return text
        return " ".join(words[: self.context_length])

    def _embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        dimension = body.get("output_dimension") or self.dimension
        items = []
        for index, text in enumerate(body["input"]):
            vector = expected_vector(self.truncated(text), dimension)
            if body.get("encoding_format") == "base64":
                encoded: Any = base64.b64encode(vector.astype("<f4").tobytes()).decode()
            else:
                encoded = vector.tolist()
            items.append({"object": "embedding", "embedding": encoded, "index": index})
        if self.shuffle:
            random.Random(len(self.requests)).shuffle(items)
        tokens = sum(len(text.split()) for text in body["input"])
        return {
            "object": "list",
            "data": items,
            "model": body["model"],
            "usage": {"total_tokens": tokens},
        }

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                with fake.lock:
                    fake.requests.append(
                        {
                            "path": self.path,
                            "authorization": self.headers.get("Authorization"),
                            "body": body,
                        }
                    )
                if self.path != "/v1/embeddings":
                    self._send(404, {"detail": f"no route {self.path}"}, {})
                    return
                self._send(*fake.answer(body))

            def _send(
                self, status: int, payload: dict[str, Any], headers: dict[str, str]
            ) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name.replace("_", "-"), value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                # Keep pytest's output clean; requests are recorded instead.
                pass

        return Handler


@pytest.fixture
def server() -> Iterator[FakeVoyage]:
    fake = FakeVoyage()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep a developer's real key out of every test."""
    for name in ("VOYAGE_API_KEY", "VOYAGE_API_KEY_PATH"):
        monkeypatch.delenv(name, raising=False)
