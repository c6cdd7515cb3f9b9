"""Shared fixtures: small battle tables, the shared MMLU data, a test embedder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rorf_core import Embedder
from rorf_core.training import TrainingConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(
    os.environ.get("RORF_SHARED_DATA", REPO_ROOT.parent / "shared" / "data")
)
MMLU = SHARED_DATA / "mmlu_gpt4_mixtral.parquet"
MODEL_A = "gpt-4-1106-preview"
MODEL_B = "mixtral-8x7b-instruct-v0.1"


class KeywordEmbedder(Embedder):
    """Deterministic embedder for tests: counts of a few keywords plus length."""

    name = "keyword-test"
    KEYWORDS = ("math", "law", "code", "history", "why", "what")

    def __init__(self, model: str = "v1") -> None:
        super().__init__(model)
        self.calls = 0

    @property
    def dimension(self) -> int:
        return len(self.KEYWORDS) + 1

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        rows = [[text.lower().count(word) for word in self.KEYWORDS] + [len(text)] for text in texts]
        return np.asarray(rows, dtype=np.float32)


def write_table(path: Path, rows: dict[str, list[Any]]) -> Path:
    """Write ``rows`` (column -> values) as parquet, CSV or JSON Lines by suffix."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    table = pa.table(rows)
    if path.suffix == ".parquet":
        pq.write_table(table, path)
    elif path.suffix == ".csv":
        pa_csv.write_csv(table, path)
    else:
        import json

        with path.open("w", encoding="utf-8") as handle:
            for record in table.to_pylist():
                handle.write(json.dumps(record) + "\n")
    return path


SMALL_FOREST = {"n_estimators": 20, "max_depth": 6}


def config_for(path: Path, **overrides: object) -> TrainingConfig:
    """Return a training config for the keyword embedder and a small forest."""
    settings = {
        "dataset": str(path),
        "model_a": "strong/model",
        "model_b": "weak-model",
        "embedder": "keyword-test",
        "scorer_params": SMALL_FOREST,
        **overrides,
    }
    return TrainingConfig(**settings)  # type: ignore[arg-type]


def synthetic_battles(count: int = 300, seed: int = 0) -> dict[str, list[Any]]:
    """Prompts whose topic decides which model wins, so a router can learn it."""
    rng = np.random.default_rng(seed)
    topics = ["math", "law", "history", "code"]
    prompts, score_a, score_b = [], [], []
    for index in range(count):
        topic = topics[index % len(topics)]
        prompts.append(f"{topic} question number {index} {'why' * int(rng.integers(0, 3))}")
        hard = topic in ("math", "code")
        score_a.append(float(rng.random() < (0.9 if hard else 0.7)))
        score_b.append(float(rng.random() < (0.3 if hard else 0.7)))
    return {"Input": prompts, "strong/model/score": score_a, "weak-model/score": score_b}


@pytest.fixture
def battles_file(tmp_path: Path) -> Path:
    return write_table(tmp_path / "battles.parquet", synthetic_battles())


@pytest.fixture
def keyword_plugin() -> Iterator[type[KeywordEmbedder]]:
    """Register the keyword embedder at run time, and remove it afterwards."""
    from rorf_core import hookimpl, register_plugin, unregister_plugin

    class Plugin:
        @hookimpl
        def register_embedders(self, register: Any) -> None:
            register(KeywordEmbedder.name, KeywordEmbedder)

    name = register_plugin(Plugin(), name="keyword-test-plugin")
    yield KeywordEmbedder
    unregister_plugin(name)


@pytest.fixture
def cache(tmp_path: Path) -> Any:
    from rorf_core.cache import EmbeddingCache

    return EmbeddingCache(tmp_path / "cache" / "embeddings.sqlite")


@pytest.fixture(autouse=True)
def _isolated_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The default cache of commands run in tests goes to a temporary folder.
    monkeypatch.setenv("RORF_CACHE_DIR", str(tmp_path / "default-cache"))
