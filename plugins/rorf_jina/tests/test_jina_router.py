"""A router trained on the jina embedder's vectors routes, and survives a reload."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import TOKEN_LIMIT, WORDS
from rorf_core import Router
from rorf_core.cache import EmbeddingCache
from rorf_core.training import TrainingConfig, train_router

MODEL_A = "strong-model"
MODEL_B = "weak-model"
# Model A wins prompts built from the first half of the vocabulary, model B
# those built from the second half, so the two groups' vectors differ.
A_WORDS = WORDS[: len(WORDS) // 2]
B_WORDS = WORDS[len(WORDS) // 2 :]


def prompt(words: list[str], index: int) -> str:
    length = 3 + index % 5
    return " ".join(
        words[(index * 7 + step * 3) % len(words)] for step in range(length)
    )


def write_battles(path: Path, rows_per_side: int) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for index in range(rows_per_side):
            for words, score_a, score_b in ((A_WORDS, 1.0, 0.0), (B_WORDS, 0.0, 1.0)):
                record = {
                    "Input": prompt(words, index),
                    f"{MODEL_A}/score": score_a,
                    f"{MODEL_B}/score": score_b,
                }
                handle.write(json.dumps(record) + "\n")
    return path


@pytest.fixture(scope="module")
def trained(bert_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    tmp_path = tmp_path_factory.mktemp("jina_router")
    config = TrainingConfig(
        dataset=str(write_battles(tmp_path / "battles.jsonl", rows_per_side=30)),
        model_a=MODEL_A,
        model_b=MODEL_B,
        embedder="jina",
        embedder_options={"model": str(bert_dir), "max_length": TOKEN_LIMIT},
        scorer_params={"n_estimators": 20, "max_depth": 6},
    )
    out = tmp_path / "router"
    result = train_router(
        config, cache=EmbeddingCache(":memory:"), out=out, progress=False
    )
    return result, out


def test_router_on_jina_vectors_routes(trained) -> None:
    result, _ = trained
    a_prompts = [prompt(A_WORDS, index) for index in range(100, 105)]
    b_prompts = [prompt(B_WORDS, index) for index in range(100, 105)]

    routed_a = [result.router.route(text, threshold=0.5) for text in a_prompts]
    routed_b = [result.router.route(text, threshold=0.5) for text in b_prompts]

    assert routed_a == [MODEL_A] * 5
    assert routed_b == [MODEL_B] * 5


def test_saved_router_reloads_jina_embedder(trained, bert_dir: Path) -> None:
    result, out = trained
    prompts = [prompt(A_WORDS, 200), prompt(B_WORDS, 201)]

    loaded = Router.from_pretrained(out)

    saved = json.loads((out / "router.json").read_text())["embedder"]
    assert saved["name"] == "jina"
    assert saved["model"] == str(bert_dir)
    assert saved["options"]["max_length"] == TOKEN_LIMIT
    np.testing.assert_allclose(
        loaded.win_rate(prompts), result.router.win_rate(prompts), atol=1e-6
    )
