"""Tests of the on-disk embedding cache, with a small counting embedder."""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rorf_core import Embedder
from rorf_core.cache import (
    CACHE_DIR_ENV,
    DEFAULT_MAX_BYTES,
    DISABLE_ENV,
    MAX_BYTES_ENV,
    CacheStats,
    EmbeddingCache,
    EmbeddingCacheError,
    default_cache_path,
    parse_size,
)
from rorf_core.errors import EmbeddingError, InvalidInputError


def expected_vector(model: str, task: str, text: str, dimension: int) -> np.ndarray:
    """Derive a vector from model, task and text, as a real model would."""
    seed_bytes = hashlib.sha256(f"{model}|{task}|{text}".encode()).digest()[:8]
    rng = np.random.default_rng(int.from_bytes(seed_bytes, "little"))
    return rng.standard_normal(dimension).astype(np.float32)


class CountingEmbedder(Embedder):
    """Deterministic embedder that records every text it is asked to embed."""

    name = "counting"

    def __init__(
        self,
        model: str = "tiny",
        *,
        dimension: int = 4,
        task: str = "query",
        batch_size: int = 3,
    ) -> None:
        super().__init__(model)
        self._dimension = dimension
        self.task = task
        self.batch_size = batch_size
        self.batches: list[list[str]] = []
        self.embed_calls: list[bool] = []

    @property
    def dimension(self) -> int:
        return self._dimension

    def options(self) -> dict[str, Any]:
        return {"task": self.task}

    def embed(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        self.embed_calls.append(progress)
        return super().embed(texts, progress=progress)

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        self.batches.append(list(texts))
        rows = [
            expected_vector(self.model, self.task, text, self._dimension)
            for text in texts
        ]
        return np.stack(rows)

    @property
    def embedded(self) -> list[str]:
        return [text for batch in self.batches for text in batch]


class OtherNameEmbedder(CountingEmbedder):
    name = "other"


class RejectingEmbedder(CountingEmbedder):
    """Rejects one text the way a provider does, with an index into its input."""

    def __init__(self, rejected: str) -> None:
        super().__init__(batch_size=256)
        self.rejected = rejected

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        if self.rejected in texts:
            raise InvalidInputError(texts.index(self.rejected), "too many tokens")
        return super().embed_batch(texts)


class FailingEmbedder(CountingEmbedder):
    """Fails on its second batch, after the first one succeeded."""

    def __init__(self) -> None:
        super().__init__(batch_size=2)
        self.error = EmbeddingError("provider returned HTTP 503")

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        if self.batches:
            raise self.error
        return super().embed_batch(texts)


def expected_rows(embedder: CountingEmbedder, texts: Sequence[str]) -> np.ndarray:
    return np.stack(
        [
            expected_vector(embedder.model, embedder.task, text, embedder.dimension)
            for text in texts
        ]
    )


def texts_named(prefix: str, count: int) -> list[str]:
    return [f"{prefix} text {index}" for index in range(count)]


@pytest.fixture
def cache_path(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "embeddings.sqlite"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in (CACHE_DIR_ENV, MAX_BYTES_ENV, DISABLE_ENV, "XDG_CACHE_HOME"):
        monkeypatch.delenv(variable, raising=False)


# --- hits and misses -------------------------------------------------------


def test_second_call_embeds_nothing(cache_path: Path) -> None:
    texts = texts_named("a", 7)
    embedder = CountingEmbedder()
    with EmbeddingCache(cache_path) as cache:
        first = cache.embed(embedder, texts)
        assert embedder.embedded == texts
        assert cache.last_stats == CacheStats(hits=0, misses=7, total=7)

        embedder.batches.clear()
        second = cache.embed(embedder, texts)
        assert embedder.embedded == []
        assert embedder.embed_calls == [False]
        assert cache.last_stats == CacheStats(hits=7, misses=0, total=7)
    np.testing.assert_array_equal(first, expected_rows(embedder, texts))
    np.testing.assert_array_equal(second, first)


def test_result_matches_embedder_output(cache_path: Path) -> None:
    texts = ["alpha", "beta", "gamma", "beta"]
    embedder = CountingEmbedder(dimension=5)
    with EmbeddingCache(cache_path) as cache:
        cache.embed(embedder, ["beta"])
        result = cache.embed(embedder, texts)
    direct = CountingEmbedder(dimension=5).embed(texts)
    assert result.dtype == np.float32
    assert result.shape == (4, 5)
    assert result.flags.c_contiguous
    assert result.flags.writeable
    np.testing.assert_array_equal(result, direct)


def test_duplicates_embedded_once(cache_path: Path) -> None:
    texts = ["x", "y", "x", "z", "y", "x"]
    embedder = CountingEmbedder()
    with EmbeddingCache(cache_path) as cache:
        result = cache.embed(embedder, texts)
        assert sorted(embedder.embedded) == ["x", "y", "z"]
        assert cache.last_stats == CacheStats(hits=0, misses=3, total=6)
    np.testing.assert_array_equal(result, expected_rows(embedder, texts))


def test_partial_hits_keep_order(cache_path: Path) -> None:
    embedder = CountingEmbedder()
    with EmbeddingCache(cache_path) as cache:
        cache.embed(embedder, ["b", "d"])
        embedder.batches.clear()
        texts = ["a", "b", "c", "d", "b", "e"]
        result = cache.embed(embedder, texts)
        assert embedder.embedded == ["a", "c", "e"]
        assert cache.last_stats == CacheStats(hits=3, misses=3, total=6)
    np.testing.assert_array_equal(result, expected_rows(embedder, texts))


def test_entries_persist_across_instances(cache_path: Path) -> None:
    texts = texts_named("persist", 5)
    with EmbeddingCache(cache_path) as cache:
        cache.embed(CountingEmbedder(), texts)
    embedder = CountingEmbedder()
    with EmbeddingCache(cache_path) as reopened:
        result = reopened.embed(embedder, texts)
    assert embedder.embedded == []
    np.testing.assert_array_equal(result, expected_rows(embedder, texts))


def test_empty_input_embeds_nothing(cache_path: Path) -> None:
    embedder = CountingEmbedder(dimension=6)
    cache = EmbeddingCache(cache_path)
    result = cache.embed(embedder, [])
    assert result.shape == (0, 6)
    assert result.dtype == np.float32
    assert embedder.embed_calls == []
    assert cache.last_stats == CacheStats(hits=0, misses=0, total=0)


@pytest.mark.parametrize(
    "changed",
    [
        CountingEmbedder(model="tiny-v2"),
        CountingEmbedder(task="document"),
        OtherNameEmbedder(),
    ],
    ids=["model", "options", "registry-name"],
)
def test_key_covers_name_model_options(
    cache_path: Path, changed: CountingEmbedder
) -> None:
    texts = texts_named("key", 3)
    with EmbeddingCache(cache_path) as cache:
        cache.embed(CountingEmbedder(), texts)
        result = cache.embed(changed, texts)
    assert changed.embedded == texts
    np.testing.assert_array_equal(result, expected_rows(changed, texts))


def test_progress_flag_reaches_embedder(cache_path: Path) -> None:
    embedder = CountingEmbedder()
    with EmbeddingCache(cache_path) as cache:
        cache.embed(embedder, ["one", "two"], progress=True)
    assert embedder.embed_calls == [True]


def test_logs_counts_at_info(
    cache_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    embedder = CountingEmbedder()
    with EmbeddingCache(cache_path) as cache:
        cache.embed(embedder, ["cached"])
        with caplog.at_level(logging.INFO, logger="rorf_core.cache"):
            cache.embed(embedder, ["cached", "new", "new"])
    messages = [record.getMessage() for record in caplog.records]
    assert "embedded 1 of 3 texts (1 from cache)" in messages


def test_dimension_change_reembeds(
    cache_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    texts = texts_named("dim", 3)
    with EmbeddingCache(cache_path) as cache:
        cache.embed(CountingEmbedder(dimension=4), texts)
        wider = CountingEmbedder(dimension=6)
        with caplog.at_level(logging.WARNING, logger="rorf_core.cache"):
            result = cache.embed(wider, texts)
        assert wider.embedded == texts
        assert result.shape == (3, 6)
        assert "do not have dimension 6" in caplog.text

        again = CountingEmbedder(dimension=6)
        cache.embed(again, texts)
        assert again.embedded == []
    np.testing.assert_array_equal(result, expected_rows(wider, texts))


def test_shared_between_threads(cache_path: Path) -> None:
    embedder = CountingEmbedder()
    chunks = [texts_named("thread", 40)[start : start + 20] for start in (0, 10, 20)]
    with EmbeddingCache(cache_path) as cache:
        with ThreadPoolExecutor(max_workers=3) as pool:
            results = list(pool.map(lambda chunk: cache.embed(embedder, chunk), chunks))
    for chunk, result in zip(chunks, results, strict=True):
        np.testing.assert_array_equal(result, expected_rows(embedder, chunk))


# --- errors from the embedder ----------------------------------------------


def test_invalid_text_names_caller_index(cache_path: Path) -> None:
    embedder = CountingEmbedder()
    with EmbeddingCache(cache_path) as cache:
        cache.embed(embedder, ["a"])
        with pytest.raises(InvalidInputError) as excinfo:
            cache.embed(embedder, ["a", "a", "b", "   "])
    assert excinfo.value.index == 3
    assert embedder.embedded == ["a"]


def test_rejected_text_index_maps_back(cache_path: Path) -> None:
    embedder = RejectingEmbedder(rejected="too long")
    texts = ["cached 1", "new 1", "new 1", "cached 2", "too long", "new 2", "too long"]
    with EmbeddingCache(cache_path) as cache:
        cache.embed(embedder, ["cached 1", "cached 2"])
        with pytest.raises(InvalidInputError) as excinfo:
            cache.embed(embedder, texts)
        # The embedder saw ["new 1", "too long", "new 2"] and rejected index 1.
        assert excinfo.value.index == 4
        assert excinfo.value.reason == "too many tokens"
        assert isinstance(excinfo.value.__cause__, InvalidInputError)
        assert excinfo.value.__cause__.index == 1

        counter = CountingEmbedder()
        cache.embed(counter, ["new 1", "new 2"])
    assert counter.embedded == ["new 1", "new 2"]


def test_failed_call_stores_nothing(cache_path: Path) -> None:
    failing = FailingEmbedder()
    texts = texts_named("fail", 5)
    with EmbeddingCache(cache_path) as cache:
        with pytest.raises(EmbeddingError) as excinfo:
            cache.embed(failing, texts)
        assert excinfo.value is failing.error
        # The first batch succeeded inside the embedder, but is not stored.
        assert failing.embedded == texts[:2]

        counter = CountingEmbedder()
        cache.embed(counter, texts)
    assert counter.embedded == texts


# --- eviction ----------------------------------------------------------------


def test_eviction_keeps_size_bounded(cache_path: Path) -> None:
    max_bytes = 96 * 1024
    embedder = CountingEmbedder(dimension=64, batch_size=64)
    with EmbeddingCache(cache_path, max_bytes=max_bytes) as cache:
        for round_number in range(30):
            cache.embed(embedder, texts_named(f"round {round_number}", 40))
            assert cache.size_bytes() <= max_bytes
    connection = sqlite3.connect(cache_path)
    entries = connection.execute("SELECT count(*) FROM embeddings").fetchone()[0]
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    assert 0 < entries < 30 * 40
    assert cache_path.stat().st_size <= max_bytes


def test_eviction_drops_least_recently_used(cache_path: Path) -> None:
    embedder = CountingEmbedder(dimension=64, batch_size=64)
    group_a = texts_named("a", 120)
    group_b = texts_named("b", 120)
    group_c = texts_named("c", 30)
    with EmbeddingCache(cache_path, max_bytes=10**9) as unbounded:
        unbounded.embed(embedder, group_a)
        unbounded.embed(embedder, group_b)
        unbounded.embed(embedder, group_a)  # A is now used more recently than B.
        filled = unbounded.size_bytes()

    with EmbeddingCache(cache_path, max_bytes=filled) as bounded:
        bounded.embed(embedder, group_c)
        assert bounded.size_bytes() <= int(filled * 0.9)

        probe = CountingEmbedder(dimension=64, batch_size=64)
        least_recent_first = group_b + group_a + group_c
        bounded.embed(probe, least_recent_first)
    evicted = probe.embedded
    assert len(evicted) > 0
    assert evicted == least_recent_first[: len(evicted)]
    assert len(evicted) < len(group_b) + len(group_a)


def test_clear_empties_cache(tmp_path: Path, cache_path: Path) -> None:
    embedder = CountingEmbedder(dimension=64, batch_size=64)
    texts = texts_named("clear", 300)
    with EmbeddingCache(tmp_path / "baseline.sqlite") as baseline:
        baseline.embed(embedder, ["one entry fits in the schema's pages"])
        schema_only = baseline.size_bytes()
    with EmbeddingCache(cache_path) as cache:
        cache.embed(embedder, texts)
        assert cache.size_bytes() > schema_only
        cache.clear()
        assert cache.size_bytes() == schema_only
        embedder.batches.clear()
        cache.embed(embedder, texts)
    assert embedder.embedded == texts


def test_size_without_file_is_zero(cache_path: Path) -> None:
    cache = EmbeddingCache(cache_path)
    assert cache.size_bytes() == 0
    cache.clear()
    assert not cache_path.exists()
    assert not cache_path.parent.exists()


# --- configuration -----------------------------------------------------------


def test_constructor_creates_no_file(cache_path: Path) -> None:
    cache = EmbeddingCache(cache_path)
    assert cache.path == cache_path
    assert not cache_path.parent.exists()
    cache.embed(CountingEmbedder(), ["x"])
    assert cache_path.exists()
    cache.close()


def test_cache_dir_env_sets_location(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "from-env"))
    assert default_cache_path() == tmp_path / "from-env" / "embeddings.sqlite"
    assert EmbeddingCache().path == tmp_path / "from-env" / "embeddings.sqlite"


def test_default_location_under_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_cache_path() == tmp_path / ".cache" / "rorf" / "embeddings.sqlite"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_path() == tmp_path / "xdg" / "rorf" / "embeddings.sqlite"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1000", 1000), ("512K", 512 * 1024), ("2GiB", 2 * 1024**3), ("3 m", 3 * 1024**2)],
)
def test_parse_size_accepts_suffixes(text: str, expected: int) -> None:
    assert parse_size(text, source="size") == expected


@pytest.mark.parametrize("text", ["", "0", "-5", "2.5G", "10 bytes", "1P"])
def test_parse_size_rejects_bad_values(text: str) -> None:
    with pytest.raises(ValueError, match="positive number of bytes"):
        parse_size(text, source="size")


def test_max_bytes_from_env(cache_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert EmbeddingCache(cache_path).max_bytes == DEFAULT_MAX_BYTES
    monkeypatch.setenv(MAX_BYTES_ENV, "64M")
    assert EmbeddingCache(cache_path).max_bytes == 64 * 1024**2
    assert EmbeddingCache(cache_path, max_bytes=5000).max_bytes == 5000
    monkeypatch.setenv(MAX_BYTES_ENV, "lots")
    with pytest.raises(ValueError, match=MAX_BYTES_ENV):
        EmbeddingCache(cache_path)


def test_empty_path_rejected() -> None:
    with pytest.raises(ValueError, match="path must name a file"):
        EmbeddingCache("")


@pytest.mark.parametrize("max_bytes", [0, -1, 1.5, True])
def test_invalid_max_bytes_rejected(cache_path: Path, max_bytes: Any) -> None:
    with pytest.raises(ValueError, match="max_bytes must be a positive int"):
        EmbeddingCache(cache_path, max_bytes=max_bytes)


def test_disabled_cache_stores_nothing(tmp_path: Path) -> None:
    cache = EmbeddingCache.disabled()
    embedder = CountingEmbedder()
    cache.embed(embedder, ["p", "q", "p"])
    assert embedder.embedded == ["p", "q"]
    assert cache.last_stats == CacheStats(hits=0, misses=2, total=3)
    cache.embed(embedder, ["p"])
    assert embedder.embedded == ["p", "q", "p"]
    assert not cache.enabled
    assert cache.path is None
    assert cache.size_bytes() == 0


def test_disable_env_turns_default_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "env-dir"))
    monkeypatch.setenv(DISABLE_ENV, "1")
    assert not EmbeddingCache().enabled
    assert EmbeddingCache(tmp_path / "explicit.sqlite").enabled
    monkeypatch.setenv(DISABLE_ENV, "maybe")
    with pytest.raises(ValueError, match=DISABLE_ENV):
        EmbeddingCache()


def test_memory_cache_writes_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    embedder = CountingEmbedder()
    with EmbeddingCache(":memory:") as cache:
        cache.embed(embedder, ["m1", "m2"])
        cache.embed(embedder, ["m1", "m2"])
        assert cache.size_bytes() > 0
    assert embedder.embedded == ["m1", "m2"]
    assert list(tmp_path.iterdir()) == []


# --- damaged or foreign files ------------------------------------------------


def test_garbage_file_names_path_and_fix(cache_path: Path) -> None:
    cache_path.parent.mkdir(parents=True)
    cache_path.write_bytes(b"this is not an sqlite database" * 200)
    with pytest.raises(EmbeddingCacheError) as excinfo:
        EmbeddingCache(cache_path).embed(CountingEmbedder(), ["x"])
    message = str(excinfo.value)
    assert str(cache_path) in message
    assert "delete" in message


def test_corrupted_pages_name_path_and_fix(cache_path: Path) -> None:
    with EmbeddingCache(cache_path) as cache:
        cache.embed(CountingEmbedder(dimension=64), texts_named("corrupt", 300))
    assert not Path(f"{cache_path}-wal").exists()
    data = bytearray(cache_path.read_bytes())
    # Keep page 1 (the header and schema) and overwrite every page after it.
    data[4096:] = b"\xa5" * (len(data) - 4096)
    cache_path.write_bytes(bytes(data))
    with pytest.raises(EmbeddingCacheError) as excinfo:
        EmbeddingCache(cache_path).embed(CountingEmbedder(dimension=64), ["x"])
    message = str(excinfo.value)
    assert str(cache_path) in message
    assert "corrupted" in message
    assert "delete" in message


def test_foreign_database_rejected(cache_path: Path) -> None:
    cache_path.parent.mkdir(parents=True)
    connection = sqlite3.connect(cache_path)
    connection.execute("CREATE TABLE invoices (id INTEGER)")
    connection.commit()
    connection.close()
    with pytest.raises(EmbeddingCacheError, match="not an embedding cache"):
        EmbeddingCache(cache_path).embed(CountingEmbedder(), ["x"])


def test_other_schema_version_rejected(cache_path: Path) -> None:
    cache_path.parent.mkdir(parents=True)
    connection = sqlite3.connect(cache_path)
    connection.execute("PRAGMA user_version = 99")
    connection.close()
    with pytest.raises(EmbeddingCacheError, match="schema version 99"):
        EmbeddingCache(cache_path).embed(CountingEmbedder(), ["x"])


def test_unusable_directory_names_fix(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the cache directory should be")
    path = blocker / "embeddings.sqlite"
    with pytest.raises(EmbeddingCacheError) as excinfo:
        EmbeddingCache(path).embed(CountingEmbedder(), ["x"])
    assert str(blocker) in str(excinfo.value)
    assert CACHE_DIR_ENV in str(excinfo.value)


# --- several processes -------------------------------------------------------


def write_from_process(path: str, texts: list[str], barrier: Any, results: Any) -> None:
    """Embed ``texts`` in small calls once every writer is ready."""
    embedder = CountingEmbedder(dimension=32, batch_size=8)
    cache = EmbeddingCache(path)
    barrier.wait()
    try:
        for start in range(0, len(texts), 20):
            cache.embed(embedder, texts[start : start + 20])
    except Exception as error:
        # Reported through the queue, so the parent never waits for a result
        # that will not come.
        results.put(repr(error))
        raise
    finally:
        cache.close()
    results.put(len(embedder.embedded))


def crash_inside_write(path: str, texts: list[str]) -> None:
    """Exit the process in the middle of a write transaction."""
    from rorf_core import cache as cache_module

    def exit_now(self: Any, connection: sqlite3.Connection) -> int:
        os._exit(3)

    # evict() runs inside store()'s transaction, after the rows are inserted.
    cache_module._SqliteStore.evict = exit_now  # type: ignore[method-assign]
    EmbeddingCache(path).embed(CountingEmbedder(dimension=32), texts)


def test_two_processes_write_at_once(cache_path: Path) -> None:
    everything = texts_named("shared", 600)
    first_writer = everything[:400]
    second_writer = list(reversed(everything[200:]))
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    results = context.Queue()
    processes = [
        context.Process(
            target=write_from_process,
            args=(str(cache_path), texts, barrier, results),
        )
        for texts in (first_writer, second_writer)
    ]
    for process in processes:
        process.start()
    embedded_counts = [results.get(), results.get()]
    for process in processes:
        process.join()
    assert [process.exitcode for process in processes] == [0, 0], embedded_counts

    # Each text is embedded at least once; an overlapping text at most twice.
    assert (
        len(everything)
        <= sum(embedded_counts)
        <= len(first_writer) + len(second_writer)
    )
    probe = CountingEmbedder(dimension=32)
    with EmbeddingCache(cache_path) as cache:
        result = cache.embed(probe, everything)
    assert probe.embedded == []
    np.testing.assert_array_equal(result, expected_rows(probe, everything))
    connection = sqlite3.connect(cache_path)
    rows = connection.execute("SELECT count(*) FROM embeddings").fetchone()[0]
    connection.close()
    assert rows == len(everything)


def test_crash_leaves_no_partial_entry(cache_path: Path) -> None:
    kept = texts_named("kept", 10)
    lost = texts_named("lost", 10)
    with EmbeddingCache(cache_path) as cache:
        cache.embed(CountingEmbedder(dimension=32), kept)

    context = multiprocessing.get_context("spawn")
    process = context.Process(target=crash_inside_write, args=(str(cache_path), lost))
    process.start()
    process.join()
    assert process.exitcode == 3

    probe = CountingEmbedder(dimension=32)
    with EmbeddingCache(cache_path) as cache:
        result = cache.embed(probe, kept + lost)
    assert probe.embedded == lost
    np.testing.assert_array_equal(result, expected_rows(probe, kept + lost))
    connection = sqlite3.connect(cache_path)
    assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    connection.close()


def use_inherited_cache(cache: EmbeddingCache, texts: list[str]) -> None:
    embedder = CountingEmbedder()
    cache.embed(embedder, texts)
    os._exit(0 if embedder.embedded == texts[1:] else 1)


@pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="needs fork"
)
def test_cache_survives_fork(cache_path: Path) -> None:
    cache = EmbeddingCache(cache_path)
    cache.embed(CountingEmbedder(), ["before fork"])
    process = multiprocessing.get_context("fork").Process(
        target=use_inherited_cache, args=(cache, ["before fork", "in child"])
    )
    process.start()
    process.join()
    assert process.exitcode == 0
    probe = CountingEmbedder()
    cache.embed(probe, ["before fork", "in child"])
    assert probe.embedded == []
    cache.close()
