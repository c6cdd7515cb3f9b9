"""The voyage embedder through the real voyageai client against a local fake server."""

from __future__ import annotations

import logging
import subprocess
import sys

import numpy as np
import pytest
from conftest import API_KEY, FakeVoyage, expected_vector
from rorf_core.cache import MEMORY_PATH, EmbeddingCache
from rorf_core.embedders.remote import FailureKind, RemoteEmbeddingError, RetryPolicy
from rorf_core.errors import EmbeddingError, InvalidInputError, MissingAPIKeyError
from rorf_core.plugins import embedder_entries, get_embedder

from rorf_voyage.embedder import CLUSTER_INSTRUCTION, VoyageEmbedder

FAST_RETRY = RetryPolicy(
    budget=1.0, initial_delay=0.01, max_delay=0.05, request_timeout=5.0
)
DIMENSION = 12


def make_embedder(server: FakeVoyage, **options: object) -> VoyageEmbedder:
    settings: dict[str, object] = {
        "base_url": server.base_url,
        "api_key": API_KEY,
        "retry": FAST_RETRY,
        "dimensions": DIMENSION,
    }
    settings.update(options)
    return VoyageEmbedder(**settings)  # type: ignore[arg-type]


def expected(texts: list[str], prefix: str = CLUSTER_INSTRUCTION) -> np.ndarray:
    return np.stack([expected_vector(prefix + text, DIMENSION) for text in texts])


def test_import_and_registry_without_key() -> None:
    code = (
        "import sys, rorf_voyage\n"
        "from rorf_core.plugins import embedder_entries\n"
        "entry = embedder_entries()['voyage']\n"
        "print(entry.distribution, 'voyageai' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    distribution, voyageai_loaded = result.stdout.split()
    assert distribution == "rorf-voyage"
    assert voyageai_loaded == "False"


def test_registry_builds_default_embedder() -> None:
    assert embedder_entries()["voyage"].factory is VoyageEmbedder
    embedder = get_embedder("voyage")
    assert embedder.model == "voyage-large-2-instruct"
    assert embedder.dimension == 1024
    assert embedder.options() == {
        "instruction": "Cluster the text: ",
        "input_type": None,
        "truncate": True,
        "dimensions": None,
    }


def test_missing_key_raises_before_request(server: FakeVoyage) -> None:
    embedder = make_embedder(server, api_key=None)
    with pytest.raises(MissingAPIKeyError) as caught:
        embedder.embed(["hello"])
    assert "VOYAGE_API_KEY" in str(caught.value)
    assert server.requests == []


def test_key_read_from_environment(
    server: FakeVoyage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VOYAGE_API_KEY", API_KEY)
    make_embedder(server, api_key=None).embed(["hello"])
    assert server.requests[0]["authorization"] == f"Bearer {API_KEY}"


def test_request_carries_prefix_and_options(server: FakeVoyage) -> None:
    texts = ["what is 2 + 2?", "name a prime"]
    vectors = make_embedder(server).embed(texts)
    body = server.requests[0]["body"]
    assert body["input"] == [CLUSTER_INSTRUCTION + text for text in texts]
    assert body["model"] == "voyage-large-2-instruct"
    assert body["input_type"] is None
    assert body["truncation"] is True
    assert body["output_dimension"] == DIMENSION
    np.testing.assert_array_equal(vectors, expected(texts))


def test_input_type_turns_default_prefix_off(server: FakeVoyage) -> None:
    embedder = make_embedder(server, input_type="query")
    embedder.embed(["hello"])
    assert server.inputs() == [["hello"]]
    assert server.requests[0]["body"]["input_type"] == "query"
    assert embedder.options()["instruction"] == ""


def test_401_not_retried_and_key_hidden(
    server: FakeVoyage, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server.fail_next(401, f"Provided API key is invalid: {API_KEY}")
    with pytest.raises(RemoteEmbeddingError) as caught:
        make_embedder(server).embed(["hello"])
    error = caught.value
    assert len(server.requests) == 1
    assert error.status == 401
    assert error.kind is FailureKind.AUTHENTICATION
    assert "Voyage AI" in str(error)
    assert "VOYAGE_API_KEY" in str(error)
    assert API_KEY not in str(error)
    assert error.__cause__ is None
    assert API_KEY not in caplog.text


def test_quota_429_not_retried(server: FakeVoyage) -> None:
    server.fail_next(429, "Your organization has exceeded your current quota.")
    with pytest.raises(RemoteEmbeddingError) as caught:
        make_embedder(server).embed(["hello"])
    error = caught.value
    assert len(server.requests) == 1
    assert error.kind is FailureKind.QUOTA_EXHAUSTED
    assert "quota exhausted" in str(error)
    assert "Not retried" in str(error)


def test_plain_429_retried_then_succeeds(server: FakeVoyage) -> None:
    server.fail_next(429, "Rate limit exceeded, please slow down.", retry_after="0")
    texts = ["first", "second"]
    vectors = make_embedder(server).embed(texts)
    assert len(server.requests) == 2
    assert server.inputs()[0] == server.inputs()[1]
    np.testing.assert_array_equal(vectors, expected(texts))


def test_persistent_500_fails_within_budget_and_caches_nothing(
    server: FakeVoyage,
) -> None:
    server.always = (500, {"detail": "internal error"}, {})
    embedder = make_embedder(server)
    cache = EmbeddingCache(MEMORY_PATH)
    texts = ["alpha", "beta"]
    with pytest.raises(RemoteEmbeddingError) as caught:
        cache.embed(embedder, texts)
    error = caught.value
    assert isinstance(error, EmbeddingError)
    assert error.status == 500
    assert "Voyage AI" in str(error)
    assert "HTTP 500" in str(error)
    assert error.attempts >= 2
    # No attempt starts after the budget; the last one may run up to 1 s past it.
    assert error.elapsed <= FAST_RETRY.budget + 1.0
    assert len(server.requests) == error.attempts

    server.always = None
    cache.embed(embedder, texts)
    requests_after_success = len(server.requests)
    np.testing.assert_array_equal(cache.embed(embedder, texts), expected(texts))
    assert len(server.requests) == requests_after_success


def test_connection_error_retried_until_budget(server: FakeVoyage) -> None:
    embedder = make_embedder(server, retry=RetryPolicy(budget=0.3, initial_delay=0.01))
    server.stop()
    with pytest.raises(RemoteEmbeddingError) as caught:
        embedder.embed(["hello"])
    assert caught.value.kind is FailureKind.CONNECTION
    assert caught.value.status is None
    assert caught.value.attempts >= 2


def test_batches_of_128_texts(server: FakeVoyage) -> None:
    texts = [f"prompt {index}" for index in range(300)]
    vectors = make_embedder(server).embed(texts)
    assert [len(inputs) for inputs in server.inputs()] == [128, 128, 44]
    np.testing.assert_array_equal(vectors, expected(texts))


def test_token_budget_splits_a_batch(server: FakeVoyage) -> None:
    # Each prefixed text is 18 + 1000 bytes, bounded at 1020 tokens, so a
    # budget of 3000 tokens fits two texts per request.
    texts = [letter * 1000 for letter in "abcde"]
    vectors = make_embedder(server, max_batch_tokens=3000).embed(texts)
    assert [len(inputs) for inputs in server.inputs()] == [2, 2, 1]
    np.testing.assert_array_equal(vectors, expected(texts))


def test_shuffled_responses_keep_input_order(server: FakeVoyage) -> None:
    server.shuffle = True
    texts = [f"text {index}" for index in range(10)]
    vectors = make_embedder(server, batch_size=4).embed(texts)
    assert [len(inputs) for inputs in server.inputs()] == [4, 4, 2]
    np.testing.assert_array_equal(vectors, expected(texts))


def test_empty_text_rejected_with_index(server: FakeVoyage) -> None:
    with pytest.raises(InvalidInputError) as caught:
        make_embedder(server).embed(["fine", "", "also fine"])
    assert caught.value.index == 1
    assert server.requests == []


def test_long_text_truncated_with_one_warning(
    server: FakeVoyage, caplog: pytest.LogCaptureFixture
) -> None:
    long_text = "word " * 20000
    texts = ["short", long_text, long_text + "end"]
    with caplog.at_level(logging.WARNING, logger="rorf_voyage"):
        vectors = make_embedder(server).embed(texts)
    # Two 100 kB texts exceed the 120K-token budget by their byte bound.
    assert [len(inputs) for inputs in server.inputs()] == [2, 1]
    assert all(request["body"]["truncation"] for request in server.requests)
    warnings = [
        record for record in caplog.records if record.levelno == logging.WARNING
    ]
    assert len(warnings) == 1
    assert "indices 1, 2" in warnings[0].getMessage()
    cut = [server.truncated(CLUSTER_INSTRUCTION + text) for text in texts]
    np.testing.assert_array_equal(vectors, expected(cut, prefix=""))


def test_long_text_rejected_with_index_when_truncation_off(server: FakeVoyage) -> None:
    texts = ["short", "fine", "word " * 20000, "after"]
    with pytest.raises(InvalidInputError) as caught:
        make_embedder(server, truncate=False).embed(texts)
    assert caught.value.index == 2
    assert "context length" in str(caught.value)
    # The long text went alone, after one request for the texts before it.
    assert [len(inputs) for inputs in server.inputs()] == [2, 1]


def test_long_text_under_context_passes_when_truncation_off(server: FakeVoyage) -> None:
    # 40000 bytes may exceed 16000 tokens, so it goes alone, but it is 8000 words.
    texts = ["short", "word " * 8000]
    vectors = make_embedder(server, truncate=False).embed(texts)
    assert [len(inputs) for inputs in server.inputs()] == [1, 1]
    np.testing.assert_array_equal(vectors, expected(texts))


def test_dimension_learned_for_unknown_model(server: FakeVoyage) -> None:
    embedder = make_embedder(server, model="voyage-99", dimensions=None)
    assert embedder.dimension == server.dimension
    assert len(server.requests) == 1
    assert server.inputs() == [["dimension probe"]]


def test_options_and_repr_hold_no_secrets(server: FakeVoyage) -> None:
    embedder = make_embedder(server)
    assert set(embedder.options()) == {
        "instruction",
        "input_type",
        "truncate",
        "dimensions",
    }
    assert API_KEY not in repr(embedder)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"input_type": "passage"}, "input_type"),
        ({"batch_size": 5000}, "1000"),
        ({"dimensions": -1}, "positive"),
    ],
)
def test_invalid_options_rejected(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        VoyageEmbedder(**options)  # type: ignore[arg-type]
