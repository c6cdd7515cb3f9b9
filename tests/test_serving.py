"""The routing server: real openai client, real server, fake upstreams on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx2")
openai = pytest.importorskip("openai")

from conftest import synthetic_battles, write_table  # noqa: E402

from rorf_core import Embedder  # noqa: E402
from rorf_core.cache import EmbeddingCache  # noqa: E402
from rorf_core.controller import Controller  # noqa: E402
from rorf_core.errors import EmbeddingError, InvalidInputError  # noqa: E402
from rorf_core.router import Router  # noqa: E402
from rorf_core.serving import (  # noqa: E402
    InvalidRequestError,
    routing_text,
    threshold_from_model,
)
from rorf_core.serving.app import ServeSettings, create_app  # noqa: E402
from rorf_core.serving.batching import (  # noqa: E402
    EmbeddingTimeoutError,
    MicroBatcher,
    QueueFullError,
)
from rorf_core.serving.testing import FakeUpstream, ServerThread  # noqa: E402
from rorf_core.serving.upstream import Upstream  # noqa: E402
from rorf_core.training import TrainingConfig, train_router  # noqa: E402

MODEL_A = "big-model"
MODEL_B = "small-model"
SERVER_KEY = "server-secret-key-123"
UPSTREAM_KEY_A = "upstream-key-for-a"
PROMPTS = [
    "math question number 7",
    "law question why",
    "history question",
    "code help",
]


@pytest.fixture(scope="module")
def router_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("serving-router")
    dataset = write_table(folder / "battles.parquet", synthetic_battles())
    config = TrainingConfig(
        dataset=str(dataset),
        embedder="hashing",
        scorer_params={"n_estimators": 10, "max_depth": 5},
    )
    out = folder / "router"
    train_router(config, cache=EmbeddingCache.disabled(), out=out, progress=False)
    return out


@pytest.fixture(scope="module")
def upstreams() -> Iterator[
    tuple[FakeUpstream, FakeUpstream, ServerThread, ServerThread]
]:
    fake_a, fake_b = FakeUpstream(MODEL_A), FakeUpstream(MODEL_B)
    with ServerThread(fake_a.app) as server_a, ServerThread(fake_b.app) as server_b:
        yield fake_a, fake_b, server_a, server_b


@pytest.fixture
def fakes(upstreams: Any) -> Iterator[tuple[FakeUpstream, FakeUpstream]]:
    fake_a, fake_b, _, _ = upstreams
    for fake in (fake_a, fake_b):
        fake.requests.clear()
        fake.fail_status = None
        fake.delay_s = 0.0
        fake.stream_stall_s = 0.0
    yield fake_a, fake_b


class CountingEmbedder(Embedder):
    """Wraps the router's embedder and counts calls; may fail or block instead."""

    name = "counting"

    def __init__(self, inner: Embedder, mode: str = "pass") -> None:
        super().__init__(inner.model)
        self.inner = inner
        self.mode = mode
        self.calls = 0
        self.release = threading.Event()

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        if self.mode == "fail":
            raise EmbeddingError("the embedding service is down")
        if self.mode == "block":
            self.release.wait(30)
        return self.inner.embed_batch(texts)


@pytest.fixture
def router(router_dir: Path) -> Router:
    loaded = Router.from_pretrained(router_dir)
    loaded.embedder = CountingEmbedder(loaded.embedder)
    return loaded


Serve = Callable[..., ServerThread]


@pytest.fixture
def serve(
    router: Router, upstreams: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Serve]:
    """Start routing servers on demand; all of them stop at teardown."""
    _, _, server_a, server_b = upstreams
    monkeypatch.setenv("TEST_UPSTREAM_KEY_A", UPSTREAM_KEY_A)
    started: list[ServerThread] = []

    def start(
        threshold: float = 0.5, upstream_timeout_s: float = 10.0, **settings: Any
    ) -> ServerThread:
        controller = Controller(
            router, model_a=MODEL_A, model_b=MODEL_B, threshold=threshold
        )
        upstream_map = {
            MODEL_A: Upstream(
                base_url=f"{server_a.url}/v1",
                api_key_env="TEST_UPSTREAM_KEY_A",
                timeout_s=upstream_timeout_s,
            ),
            MODEL_B: Upstream(
                base_url=f"{server_b.url}/v1", timeout_s=upstream_timeout_s
            ),
        }
        server = ServerThread(
            create_app(controller, upstream_map, ServeSettings(**settings))
        )
        started.append(server.start())
        return server

    yield start
    if isinstance(router.embedder, CountingEmbedder):
        router.embedder.release.set()
    for server in started:
        server.stop()


def client_for(server: ServerThread, api_key: str = "unused") -> Any:
    return openai.OpenAI(
        base_url=f"{server.url}/v1", api_key=api_key, max_retries=0, timeout=20
    )


def user(text: Any) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


# Routing -------------------------------------------------------------------


def test_threshold_zero_sends_all_to_a(serve: Serve, fakes: Any) -> None:
    fake_a, fake_b = fakes
    client = client_for(serve(threshold=0.0))
    for prompt in PROMPTS:
        response = client.chat.completions.create(model="rorf", messages=user(prompt))
        assert response.model == MODEL_A
        assert response.choices[0].message.content == f"answer from {MODEL_A}"
    assert len(fake_a.requests) == len(PROMPTS)
    assert fake_b.requests == []


def test_threshold_one_sends_all_to_b(serve: Serve, fakes: Any, router: Router) -> None:
    fake_a, fake_b = fakes
    # A threshold of 1 sends a prompt to A only when its win rate is exactly 1.
    assert (router.win_rate(PROMPTS) < 1.0).all()
    client = client_for(serve(threshold=0.0))
    for prompt in PROMPTS:
        response = client.chat.completions.create(model="rorf-1", messages=user(prompt))
        assert response.model == MODEL_B
        assert response.choices[0].message.content == f"answer from {MODEL_B}"
    assert fake_a.requests == []
    assert len(fake_b.requests) == len(PROMPTS)


def test_routing_follows_win_rate(serve: Serve, fakes: Any, router: Router) -> None:
    rates = router.win_rate(PROMPTS)
    threshold = float(np.median(rates))
    client = client_for(serve(threshold=threshold))
    for prompt, rate in zip(PROMPTS, rates, strict=True):
        raw = client.chat.completions.with_raw_response.create(
            model="rorf", messages=user(prompt)
        )
        expected = MODEL_A if rate >= threshold else MODEL_B
        assert raw.parse().model == expected
        assert raw.headers["x-rorf-model"] == expected
        assert float(raw.headers["x-rorf-win-rate"]) == pytest.approx(rate, abs=1e-6)
        assert float(raw.headers["x-rorf-routing-ms"]) >= 0


@pytest.mark.parametrize("model", ["rorf-1.5", "rorf-abc", "gpt-4o", "rorf-"])
def test_invalid_model_name_is_400(serve: Serve, fakes: Any, model: str) -> None:
    client = client_for(serve())
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=model, messages=user("math question"))
    error = caught.value.body
    assert error["param"] == "model"
    assert model in error["message"]
    assert fakes[0].requests == []
    assert fakes[1].requests == []


def test_multi_turn_routes_on_last_user(
    serve: Serve, fakes: Any, router: Router
) -> None:
    fake_a, _ = fakes
    tool_call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "lookup", "arguments": '{"q": "statute"}'},
    }
    messages = [
        {"role": "system", "content": "You are a careful assistant."},
        {"role": "user", "content": "math question number 3"},
        {"role": "assistant", "content": None, "tool_calls": [tool_call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "result text"},
        {"role": "user", "content": "law question why why"},
    ]
    tools = [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "parameters": {"type": "object", "properties": {}},
            },
        }
    ]

    client = client_for(serve(threshold=0.0))
    raw = client.chat.completions.with_raw_response.create(
        model="rorf", messages=messages, tools=tools, temperature=0.25, user="u-1"
    )

    expected_rate = router.win_rate(["law question why why"])[0]
    assert float(raw.headers["x-rorf-win-rate"]) == pytest.approx(
        expected_rate, abs=1e-6
    )
    forwarded = fake_a.requests[-1].body
    assert forwarded["model"] == MODEL_A
    sent = {
        "model": "rorf",
        "messages": messages,
        "tools": tools,
        "temperature": 0.25,
        "user": "u-1",
    }
    assert {**forwarded, "model": "rorf"} == sent


def test_list_content_routes_on_text_parts(
    serve: Serve, fakes: Any, router: Router
) -> None:
    content = [
        {"type": "text", "text": "math question"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "text", "text": "number 9"},
    ]
    client = client_for(serve(threshold=0.0))
    raw = client.chat.completions.with_raw_response.create(
        model="rorf", messages=user(content)
    )
    expected_rate = router.win_rate(["math question\nnumber 9"])[0]
    assert float(raw.headers["x-rorf-win-rate"]) == pytest.approx(
        expected_rate, abs=1e-6
    )
    assert fakes[0].requests[-1].body["messages"][0]["content"] == content


def test_conversation_mode_routes_on_all_turns(
    serve: Serve, fakes: Any, router: Router
) -> None:
    messages = [
        {"role": "user", "content": "math question"},
        {"role": "assistant", "content": "an answer"},
        {"role": "user", "content": "law question"},
    ]
    client = client_for(serve(threshold=0.0, route_on="conversation"))
    raw = client.chat.completions.with_raw_response.create(
        model="rorf", messages=messages
    )
    expected_rate = router.win_rate(["math question\n\nan answer\n\nlaw question"])[0]
    assert float(raw.headers["x-rorf-win-rate"]) == pytest.approx(
        expected_rate, abs=1e-6
    )


def test_concurrent_requests_share_batches(
    serve: Serve, fakes: Any, router: Router
) -> None:
    server = serve(threshold=0.0, batch_wait_ms=200.0, max_batch=64)
    count = 16

    async def send_all() -> list[Any]:
        client = openai.AsyncOpenAI(
            base_url=f"{server.url}/v1", api_key="x", max_retries=0
        )
        try:
            calls = [
                client.chat.completions.create(model="rorf", messages=user(f"math {i}"))
                for i in range(count)
            ]
            return await asyncio.gather(*calls)
        finally:
            await client.close()

    responses = asyncio.run(send_all())
    assert [r.model for r in responses] == [MODEL_A] * count
    batcher = server.app.state.service.batcher
    assert batcher.prompts == count
    assert batcher.batches < count


# Streaming -----------------------------------------------------------------


def test_stream_chunks_arrive_in_order(serve: Serve, fakes: Any) -> None:
    client = client_for(serve(threshold=0.0))
    stream = client.chat.completions.create(
        model="rorf",
        messages=user("math question"),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert all(chunk.model == MODEL_A for chunk in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == f"answer from {MODEL_A}"
    assert chunks[0].choices == []
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert fakes[0].requests[-1].body["stream_options"] == {"include_usage": True}


def test_stream_ends_with_one_done(serve: Serve, fakes: Any) -> None:
    server = serve(threshold=1.0)
    body = {"model": "rorf-0", "messages": user("law question"), "stream": True}
    with httpx.stream(
        "POST", f"{server.url}/v1/chat/completions", json=body, timeout=20
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        data = [
            line[len("data: ") :]
            for line in response.iter_lines()
            if line.startswith("data: ")
        ]
    assert data.count("[DONE]") == 1
    assert data[-1] == "[DONE]"
    chunks = [json.loads(item) for item in data[:-1]]
    assert [chunk["model"] for chunk in chunks] == [MODEL_A] * len(chunks)
    assert sum(1 for chunk in chunks if chunk["choices"] == []) == 2


def test_stream_upstream_error_before_first_chunk(serve: Serve, fakes: Any) -> None:
    fakes[0].fail_status = 500
    client = client_for(serve(threshold=0.0))
    with pytest.raises(openai.InternalServerError) as caught:
        list(
            client.chat.completions.create(
                model="rorf", messages=user("math"), stream=True
            )
        )
    assert caught.value.status_code == 500
    assert MODEL_A in caught.value.body["message"]


def test_stream_stall_ends_with_error_event(serve: Serve, fakes: Any) -> None:
    fakes[0].stream_stall_s = 2.0
    server = serve(threshold=0.0, upstream_timeout_s=0.2)
    body = {"model": "rorf", "messages": user("math"), "stream": True}
    with httpx.stream(
        "POST", f"{server.url}/v1/chat/completions", json=body, timeout=20
    ) as response:
        assert response.status_code == 200
        data = [
            line[len("data: ") :]
            for line in response.iter_lines()
            if line.startswith("data: ")
        ]
    assert data[-1] == "[DONE]"
    assert data.count("[DONE]") == 1
    error = json.loads(data[-2])["error"]
    assert error["code"] == "upstream_timeout"
    assert MODEL_A in error["message"]
    assert json.loads(data[1])["choices"][0]["delta"]["content"] == "answer"


# Authentication and headers ------------------------------------------------


def test_missing_or_wrong_key_is_401(serve: Serve, fakes: Any) -> None:
    server = serve(threshold=0.0, api_key=SERVER_KEY)
    with pytest.raises(openai.AuthenticationError) as caught:
        client_for(server, api_key="wrong-key").chat.completions.create(
            model="rorf", messages=user("math")
        )
    assert caught.value.status_code == 401
    assert caught.value.body["code"] == "invalid_api_key"
    response = httpx.post(
        f"{server.url}/v1/chat/completions",
        json={"model": "rorf", "messages": user("math")},
        timeout=20,
    )
    assert response.status_code == 401
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    models = httpx.get(f"{server.url}/v1/models", timeout=20)
    assert models.status_code == 401
    assert fakes[0].requests == []


def test_server_key_never_reaches_upstream(serve: Serve, fakes: Any) -> None:
    fake_a, fake_b = fakes
    server = serve(threshold=0.0, api_key=SERVER_KEY)
    client = client_for(server, api_key=SERVER_KEY)
    client.chat.completions.create(
        model="rorf",
        messages=user("math"),
        extra_headers={"X-Client-Secret": "private"},
    )
    client.chat.completions.create(model="rorf-1", messages=user("law question"))
    assert len(fake_a.requests) == 1
    assert len(fake_b.requests) == 1
    for recorded in fake_a.requests + fake_b.requests:
        header_text = json.dumps(recorded.headers).lower()
        assert SERVER_KEY.lower() not in header_text
        assert "private" not in header_text
    assert fake_a.requests[0].headers["authorization"] == f"Bearer {UPSTREAM_KEY_A}"
    assert "authorization" not in fake_b.requests[0].headers


def test_health_and_models(serve: Serve, fakes: Any) -> None:
    server = serve(api_key=SERVER_KEY)
    health = httpx.get(f"{server.url}/health", timeout=20)
    assert health.status_code == 200
    assert health.json() == {"status": "ok"}
    models = client_for(server, api_key=SERVER_KEY).models.list()
    assert [model.id for model in models.data] == ["rorf"]


@pytest.mark.parametrize("log_prompts", [False, True])
def test_decision_log_hides_prompt_by_default(
    serve: Serve, fakes: Any, caplog: pytest.LogCaptureFixture, log_prompts: bool
) -> None:
    caplog.set_level(logging.INFO, logger="rorf_core.serving")
    client = client_for(serve(threshold=0.0, log_prompts=log_prompts))
    client.chat.completions.create(
        model="rorf", messages=user("math secret-word-okapi")
    )
    decisions = [
        r.getMessage() for r in caplog.records if "routed to" in r.getMessage()
    ]
    assert any(f"routed to {MODEL_A} (A), win rate" in line for line in decisions)
    assert ("okapi" in caplog.text) is log_prompts


# Errors --------------------------------------------------------------------


def test_upstream_500_returns_status_and_model(serve: Serve, fakes: Any) -> None:
    fakes[1].fail_status = 500
    client = client_for(serve(threshold=1.0))
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="rorf", messages=user("law question"))
    assert caught.value.status_code == 500
    assert MODEL_B in caught.value.body["message"]
    assert "failed on purpose" in caught.value.body["message"]


def test_upstream_429_keeps_status(serve: Serve, fakes: Any) -> None:
    fakes[0].fail_status = 429
    client = client_for(serve(threshold=0.0))
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="rorf", messages=user("math"))
    assert caught.value.status_code == 429


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_timeout_is_504(serve: Serve, fakes: Any, stream: bool) -> None:
    fakes[0].delay_s = 2.0
    server = serve(threshold=0.0, upstream_timeout_s=0.2)
    body = {"model": "rorf", "messages": user("math"), "stream": stream}
    response = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=20)
    assert response.status_code == 504
    error = response.json()["error"]
    assert error["code"] == "upstream_timeout"
    assert MODEL_A in error["message"]


@pytest.mark.parametrize(
    "content",
    ["", "   \n\t", [{"type": "image_url", "image_url": {"url": "data:,"}}], None],
)
def test_empty_prompt_is_400_without_embedding(
    serve: Serve, fakes: Any, router: Router, content: Any
) -> None:
    server = serve()
    response = httpx.post(
        f"{server.url}/v1/chat/completions",
        json={"model": "rorf", "messages": user(content)},
        timeout=20,
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "messages"
    assert router.embedder.calls == 0
    assert fakes[0].requests == []
    assert fakes[1].requests == []


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        b'{"model": "rorf"}',
        b'{"model": "rorf", "messages": []}',
    ],
)
def test_malformed_request_is_400(serve: Serve, fakes: Any, body: bytes) -> None:
    server = serve()
    response = httpx.post(f"{server.url}/v1/chat/completions", content=body, timeout=20)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_body_over_limit_is_413(serve: Serve, fakes: Any, router: Router) -> None:
    server = serve(max_body_bytes=2000)
    body = {"model": "rorf", "messages": user("math " * 1000)}
    response = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=20)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert router.embedder.calls == 0


def test_failing_embedder_is_502(serve: Serve, fakes: Any, router: Router) -> None:
    router.embedder.mode = "fail"
    server = serve()
    response = httpx.post(
        f"{server.url}/v1/chat/completions",
        json={"model": "rorf", "messages": user("math")},
        timeout=20,
    )
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "router_error"
    assert "EmbeddingError" in response.json()["error"]["message"]
    assert fakes[0].requests == []
    assert fakes[1].requests == []


def test_blocked_embedder_is_503(serve: Serve, fakes: Any, router: Router) -> None:
    router.embedder.mode = "block"
    server = serve(embed_timeout_s=0.2)
    for _ in range(2):
        response = httpx.post(
            f"{server.url}/v1/chat/completions",
            json={"model": "rorf", "messages": user("math")},
            timeout=20,
        )
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "router_timeout"


def test_unknown_path_is_openai_style_404(serve: Serve, fakes: Any) -> None:
    server = serve()
    response = httpx.get(f"{server.url}/v1/nothing", timeout=20)
    assert response.status_code == 404
    assert "message" in response.json()["error"]


# The micro-batcher, without a server --------------------------------------


def test_batcher_scores_concurrent_prompts_together() -> None:
    calls: list[list[str]] = []

    def score(prompts: list[str]) -> np.ndarray:
        calls.append(prompts)
        return np.arange(len(prompts), dtype=np.float64) / 10

    async def run() -> list[float]:
        batcher = MicroBatcher(score, max_batch=4, max_wait_s=0.05)
        await batcher.start()
        try:
            return await asyncio.gather(*(batcher.score(f"p{i}") for i in range(6)))
        finally:
            await batcher.stop()

    scores = asyncio.run(run())
    assert calls == [["p0", "p1", "p2", "p3"], ["p4", "p5"]]
    assert scores == [0.0, 0.1, 0.2, 0.3, 0.0, 0.1]


def test_batcher_invalid_prompt_fails_alone() -> None:
    def score(prompts: list[str]) -> np.ndarray:
        if "bad" in prompts:
            raise InvalidInputError(prompts.index("bad"), "too long for the embedder")
        return np.full(len(prompts), 0.5)

    async def run() -> list[Any]:
        batcher = MicroBatcher(score, max_wait_s=0.05)
        await batcher.start()
        try:
            prompts = ["good", "bad", "fine"]
            calls = (batcher.score(p) for p in prompts)
            return await asyncio.gather(*calls, return_exceptions=True)
        finally:
            await batcher.stop()

    good, bad, fine = asyncio.run(run())
    assert good == 0.5
    assert fine == 0.5
    assert isinstance(bad, InvalidInputError)


def test_batcher_times_out_and_rejects_when_full() -> None:
    release = threading.Event()

    def score(prompts: list[str]) -> np.ndarray:
        release.wait(30)
        return np.zeros(len(prompts))

    async def run() -> tuple[Any, Any]:
        batcher = MicroBatcher(score, max_wait_s=0.0, timeout_s=0.1, max_queue=1)
        await batcher.start()
        try:
            stuck = asyncio.ensure_future(batcher.score("first"))
            await asyncio.sleep(0.05)
            # "first" occupies the worker; "second" waits in the queue.
            queued = asyncio.ensure_future(batcher.score("second"))
            await asyncio.sleep(0)
            with pytest.raises(QueueFullError):
                await batcher.score("third")
            results = await asyncio.gather(stuck, queued, return_exceptions=True)
            return tuple(results)
        finally:
            release.set()
            await batcher.stop()

    first, second = asyncio.run(run())
    assert isinstance(first, EmbeddingTimeoutError)
    assert isinstance(second, EmbeddingTimeoutError)


# The routing rule and model names, without a server ------------------------


def test_routing_text_rules() -> None:
    messages = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": None, "tool_calls": []},
        {
            "role": "user",
            "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
        },
        {"role": "tool", "content": "tool output"},
    ]
    assert routing_text(messages) == "a\nb"
    assert routing_text(messages, "conversation") == "first\n\na\nb\n\ntool output"


@pytest.mark.parametrize(
    "messages, param",
    [
        ([], "messages"),
        ("hello", "messages"),
        ([{"role": "system", "content": "only a system prompt"}], "messages"),
        ([{"role": "user", "content": 42}], "messages[0].content"),
        ([{"role": "user", "content": ["text"]}], "messages[0].content[0]"),
    ],
)
def test_routing_text_rejects(messages: Any, param: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        routing_text(messages)
    assert caught.value.param == param


@pytest.mark.parametrize(
    "model, expected",
    [
        ("rorf", 0.4),
        ("rorf-0.3", 0.3),
        ("rorf-1", 1.0),
        ("rorf-0", 0.0),
        ("rorf-.25", 0.25),
    ],
)
def test_threshold_from_model(model: str, expected: float) -> None:
    assert threshold_from_model(model, 0.4) == expected


@pytest.mark.parametrize(
    "model", ["rorf-2", "rorf-nan", "rorf- 0.3", "RORF", None, "rorf-0.3x"]
)
def test_threshold_from_model_rejects(model: Any) -> None:
    with pytest.raises(InvalidRequestError):
        threshold_from_model(model, 0.5)


# The rorf serve command ----------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--model-a", "no-url", "--model-b", "b=http://127.0.0.1:1/v1"],
            "NAME=BASE_URL",
        ),
        (
            ["--model-a", "a=ftp://host/v1", "--model-b", "b=http://127.0.0.1:1/v1"],
            "base_url",
        ),
        (
            [
                "--model-a",
                "a=http://127.0.0.1:1/v1",
                "--model-b",
                "a=http://127.0.0.1:2/v1",
            ],
            "distinct",
        ),
        (
            [
                "--model-a",
                "a=http://127.0.0.1:1/v1",
                "--model-b",
                "b=http://127.0.0.1:2/v1",
                "--api-key-env",
                "RORF_TEST_UNSET_KEY",
            ],
            "RORF_TEST_UNSET_KEY",
        ),
        (
            [
                "--model-a",
                "a=http://127.0.0.1:1/v1",
                "--model-b",
                "b=http://127.0.0.1:2/v1",
                "--upstream-key-b-env",
                "RORF_TEST_UNSET_KEY",
            ],
            "RORF_TEST_UNSET_KEY",
        ),
        (
            [
                "--model-a",
                "a=http://127.0.0.1:1/v1",
                "--model-b",
                "b=http://127.0.0.1:2/v1",
                "--threshold",
                "1.5",
            ],
            "threshold",
        ),
    ],
)
def test_serve_command_rejects_bad_options(
    router_dir: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    from click.testing import CliRunner

    from rorf_core.cli.serve import serve

    monkeypatch.delenv("RORF_TEST_UNSET_KEY", raising=False)
    result = CliRunner().invoke(serve, ["--router", str(router_dir), *args])
    assert result.exit_code != 0
    assert message in result.output or message in str(result.exception)


def test_serve_command_end_to_end(router_dir: Path, upstreams: Any, fakes: Any) -> None:
    _, _, server_a, server_b = upstreams
    port = _free_port()
    env = {**os.environ, "RORF_TEST_SERVER_KEY": SERVER_KEY}
    command = [
        sys.executable,
        "-c",
        "from rorf_core.cli import main; main()",
        "serve",
        "--router",
        str(router_dir),
        "--threshold",
        "0",
        "--model-a",
        f"{MODEL_A}={server_a.url}/v1",
        "--model-b",
        f"{MODEL_B}={server_b.url}/v1",
        "--port",
        str(port),
        "--api-key-env",
        "RORF_TEST_SERVER_KEY",
    ]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        _wait_for_health(f"http://127.0.0.1:{port}", process)
        client = openai.OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1",
            api_key=SERVER_KEY,
            max_retries=0,
            timeout=20,
        )
        secret_prompt = "math question with a private detail zebra"
        response = client.chat.completions.create(
            model="rorf", messages=user(secret_prompt)
        )
        assert response.model == MODEL_A
    finally:
        process.terminate()
        try:
            output, _ = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate(timeout=20)
    assert f"routed to {MODEL_A} (A)" in output
    assert "zebra" not in output
    assert SERVER_KEY not in output


def _wait_for_health(url: str, process: subprocess.Popen[str]) -> None:
    # A bound on start-up, so a server that never comes up fails the test
    # instead of hanging it.
    for _ in range(600):
        if process.poll() is not None:
            raise AssertionError(f"rorf serve exited early:\n{process.stdout.read()}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("rorf serve did not respond on /health within 60 s")
