"""The Python client: ChatCompletions routes, then calls an upstream through openai."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")

from conftest import synthetic_battles, write_table  # noqa: E402

from rorf_core.cache import EmbeddingCache  # noqa: E402
from rorf_core.chat import AsyncChat, Chat  # noqa: E402
from rorf_core.controller import Controller  # noqa: E402
from rorf_core.router import Router  # noqa: E402
from rorf_core.serving import InvalidRequestError, Upstream  # noqa: E402
from rorf_core.serving.testing import FakeUpstream, ServerThread  # noqa: E402
from rorf_core.training import TrainingConfig, train_router  # noqa: E402

MODEL_A = "big-model"
MODEL_B = "small-model"
KEY_A = "key-for-upstream-a"


@pytest.fixture(scope="module")
def router_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("chat-router")
    dataset = write_table(folder / "battles.parquet", synthetic_battles())
    config = TrainingConfig(
        dataset=str(dataset),
        embedder="hashing",
        scorer_params={"n_estimators": 10, "max_depth": 5},
    )
    train_router(
        config, cache=EmbeddingCache.disabled(), out=folder / "router", progress=False
    )
    return folder / "router"


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, Any]]:
    fake_a, fake_b = FakeUpstream(MODEL_A), FakeUpstream(MODEL_B)
    with ServerThread(fake_a.app) as server_a, ServerThread(fake_b.app) as server_b:
        yield {
            "fake_a": fake_a,
            "fake_b": fake_b,
            "url_a": server_a.url,
            "url_b": server_b.url,
        }


@pytest.fixture
def fakes(servers: dict[str, Any]) -> tuple[FakeUpstream, FakeUpstream]:
    for fake in (servers["fake_a"], servers["fake_b"]):
        fake.requests.clear()
        fake.fail_status = None
    return servers["fake_a"], servers["fake_b"]


@pytest.fixture
def controller(router_dir: Path) -> Controller:
    return Controller(
        Router.from_pretrained(router_dir), model_a=MODEL_A, model_b=MODEL_B
    )


@pytest.fixture
def upstreams(
    servers: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> dict[str, Upstream]:
    monkeypatch.setenv("TEST_CHAT_KEY_A", KEY_A)
    return {
        MODEL_A: Upstream(
            base_url=f"{servers['url_a']}/v1",
            api_key_env="TEST_CHAT_KEY_A",
            max_retries=0,
        ),
        MODEL_B: Upstream(base_url=f"{servers['url_b']}/v1", max_retries=0),
    }


def user(text: Any) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def test_create_routes_by_threshold(
    controller: Controller, upstreams: Any, fakes: Any
) -> None:
    fake_a, fake_b = fakes
    chat = Chat(controller, upstreams)
    # A threshold of 1 sends a prompt to A only when its win rate is exactly 1.
    assert controller.predict_proba("law question") < 1.0
    to_a = chat.completions.create(messages=user("law question"), threshold=0.0)
    to_b = chat.completions.create(messages=user("law question"), model="rorf-1")
    assert to_a.model == MODEL_A
    assert to_a.choices[0].message.content == f"answer from {MODEL_A}"
    assert to_b.model == MODEL_B
    assert to_b.choices[0].message.content == f"answer from {MODEL_B}"
    assert len(fake_a.requests) == 1
    assert len(fake_b.requests) == 1


def test_create_uses_controller_threshold(
    controller: Controller, upstreams: Any, fakes: Any
) -> None:
    prompts = ["math question 1", "law question", "history question", "code question 2"]
    rates = controller.batch_calculate_win_rate(prompts)
    controller.threshold = float(np.median(rates))
    chat = Chat(controller, upstreams)
    for prompt, rate in zip(prompts, rates, strict=True):
        expected = MODEL_A if rate >= controller.threshold else MODEL_B
        assert chat.completions.create(messages=user(prompt)).model == expected


def test_create_forwards_request_unchanged(
    controller: Controller, upstreams: Any, fakes: Any
) -> None:
    fake_a, _ = fakes
    messages = [
        {"role": "user", "content": "math question"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "f", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
        {"role": "user", "content": [{"type": "text", "text": "law question"}]},
    ]
    chat = Chat(controller, upstreams)
    chat.completions.create(messages=messages, threshold=0.0, temperature=0.5, seed=3)
    forwarded = fake_a.requests[-1].body
    assert forwarded["model"] == MODEL_A
    assert forwarded["messages"] == messages
    assert forwarded["temperature"] == 0.5
    assert forwarded["seed"] == 3


def test_upstream_keys_stay_with_their_upstream(
    controller: Controller, upstreams: Any, fakes: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_a, fake_b = fakes
    # A keyless upstream must not receive the key that openai reads by default.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-environment")
    chat = Chat(controller, upstreams)
    chat.completions.create(messages=user("math"), threshold=0.0)
    chat.completions.create(messages=user("math"), threshold=1.0)
    assert fake_a.requests[-1].headers["authorization"] == f"Bearer {KEY_A}"
    headers_b = json.dumps(fake_b.requests[-1].headers)
    assert "sk-from-the-environment" not in headers_b
    assert KEY_A not in headers_b


def test_stream_chunks_name_routed_model(
    controller: Controller, upstreams: Any, fakes: Any
) -> None:
    chat = Chat(controller, upstreams)
    with chat.completions.create(
        messages=user("math"), threshold=1.0, stream=True
    ) as stream:
        chunks = list(stream)
    assert [chunk.model for chunk in chunks] == [MODEL_B] * len(chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == f"answer from {MODEL_B}"


def test_async_create_and_stream(
    controller: Controller, upstreams: Any, fakes: Any
) -> None:
    chat = AsyncChat(controller, upstreams)

    async def run() -> tuple[Any, list[Any]]:
        response = await chat.completions.create(messages=user("law"), threshold=0.0)
        stream = await chat.completions.create(
            messages=user("law"), threshold=0.0, stream=True
        )
        chunks = [chunk async for chunk in stream]
        await stream.close()
        return response, chunks

    response, chunks = asyncio.run(run())
    assert response.model == MODEL_A
    assert response.choices[0].message.content == f"answer from {MODEL_A}"
    assert chunks
    assert all(chunk.model == MODEL_A for chunk in chunks)
    assert len(fakes[0].requests) == 2


def test_empty_prompt_raises_before_embedding(
    controller: Controller, upstreams: Any, fakes: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    monkeypatch.setattr(
        controller, "predict_proba", lambda prompt: calls.append(prompt)
    )
    chat = Chat(controller, upstreams)
    with pytest.raises(InvalidRequestError, match="empty or only whitespace"):
        chat.completions.create(messages=user("  \n "))
    assert calls == []
    assert fakes[0].requests == []
    assert fakes[1].requests == []


def test_model_and_threshold_together_rejected(
    controller: Controller, upstreams: Any
) -> None:
    chat = Chat(controller, upstreams)
    with pytest.raises(ValueError, match="either model"):
        chat.completions.create(messages=user("math"), model="rorf-0.2", threshold=0.3)
    with pytest.raises(InvalidRequestError, match="gpt-4o"):
        chat.completions.create(messages=user("math"), model="gpt-4o")


def test_missing_upstream_named(controller: Controller, upstreams: Any) -> None:
    chat = Chat(controller, {MODEL_A: upstreams[MODEL_A]})
    with pytest.raises(ValueError, match=MODEL_B):
        chat.completions.create(messages=user("math"))


def test_upstream_error_raises_openai_error(
    controller: Controller, upstreams: Any, fakes: Any
) -> None:
    fakes[0].fail_status = 500
    chat = Chat(controller, upstreams)
    with pytest.raises(openai.InternalServerError) as caught:
        chat.completions.create(messages=user("math"), threshold=0.0)
    assert caught.value.status_code == 500


def test_ready_openai_client_as_upstream(
    controller: Controller, upstreams: Any, servers: dict[str, Any], fakes: Any
) -> None:
    client_b = openai.OpenAI(
        base_url=f"{servers['url_b']}/v1", api_key="key-b", max_retries=0
    )
    chat = Chat(controller, {MODEL_A: upstreams[MODEL_A], MODEL_B: client_b})
    response = chat.completions.create(messages=user("law"), threshold=1.0)
    assert response.model == MODEL_B
    assert fakes[1].requests[-1].headers["authorization"] == "Bearer key-b"
