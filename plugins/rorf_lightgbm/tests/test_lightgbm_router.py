"""A router with the lightgbm-rf scorer saves to disk and loads back unchanged."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rorf_core import Embedder, Router, hookimpl, register_plugin, unregister_plugin
from rorf_core.format import METADATA_FILE
from rorf_core.labels import get_label_scheme
from rorf_lightgbm.scorer import LightGBMForestScorer


class CharacterCountEmbedder(Embedder):
    """Counts of letters, digits, spaces and other characters: small and offline."""

    name = "lightgbm-test-characters"

    def __init__(self, model: str = "counts-v1") -> None:
        super().__init__(model)

    @property
    def dimension(self) -> int:
        return 4

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        rows = [
            [
                sum(c.isalpha() for c in text),
                sum(c.isdigit() for c in text),
                text.count(" "),
                sum(not (c.isalnum() or c == " ") for c in text),
            ]
            for text in texts
        ]
        return np.asarray(rows, dtype=np.float32)


class CharacterCountPlugin:
    @staticmethod
    @hookimpl
    def register_embedders(register):
        register(CharacterCountEmbedder.name, CharacterCountEmbedder)


@pytest.fixture
def embedder_plugin():
    name = register_plugin(CharacterCountPlugin(), name="lightgbm-test-embedder")
    yield
    unregister_plugin(name)


def make_prompts(n: int, seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Prompts where digits make model A better and long words make B better."""
    rng = np.random.default_rng(seed)
    prompts, scores_a, scores_b = [], [], []
    for _ in range(n):
        digits, words = rng.integers(0, 6), rng.integers(1, 8)
        prompts.append(" ".join(["word"] * words) + " " + "7" * digits + "?")
        scores_a.append(float(digits > 2))
        scores_b.append(float(words > 4))
    return prompts, np.asarray(scores_a), np.asarray(scores_b)


def test_router_save_and_load_keeps_scores(tmp_path, embedder_plugin):
    prompts, scores_a, scores_b = make_prompts(300)
    embedder = CharacterCountEmbedder()
    labels = get_label_scheme("rorf")(scores_a, scores_b)
    scorer = LightGBMForestScorer(n_estimators=10, num_leaves=8, n_jobs=1)
    scorer.fit(embedder.embed(prompts), labels)
    router = Router(embedder=embedder, scorer=scorer, model_a="big", model_b="small")

    directory = router.save_pretrained(tmp_path / "router")
    loaded = Router.from_pretrained(directory)
    saved = json.loads((directory / METADATA_FILE).read_text())

    assert saved["scorer"]["name"] == "lightgbm-rf"
    assert isinstance(loaded.scorer, LightGBMForestScorer)
    np.testing.assert_array_equal(loaded.win_rate(prompts), router.win_rate(prompts))
    assert loaded.route("7777777 word?", threshold=0.5) == "big"
    assert loaded.route("word word word word word word word?", threshold=0.5) == "small"
