"""The openai embedder through the real openai client against a local fake server."""

from __future__ import annotations

import logging
import subprocess
import sys

import numpy as np
import pytest
from conftest import API_KEY, FakeOpenAI, expected_vector, needs_cl100k
from rorf_core.cache import MEMORY_PATH, EmbeddingCache
from rorf_core.embedders.remote import FailureKind, RemoteEmbeddingError, RetryPolicy
from rorf_core.errors import EmbeddingError, InvalidInputError, MissingAPIKeyError
from rorf_core.plugins import embedder_entries, get_embedder

from rorf_openai.embedder import OpenAIEmbedder

FAST_RETRY = RetryPolicy(
    budget=1.0, initial_delay=0.01, max_delay=0.05, request_timeout=5.0
)
DIMENSION = 8


def make_embedder(server: FakeOpenAI, **options: object) -> OpenAIEmbedder:
    settings: dict[str, object] = {
        "model": "text-embedding-3-small",
        "base_url": server.base_url,
        "api_key": API_KEY,
        "dimensions": DIMENSION,
        "retry": FAST_RETRY,
    }
    settings.update(options)
    return OpenAIEmbedder(**settings)  # type: ignore[arg-type]


def expected(texts: list[str], dimension: int = DIMENSION) -> np.ndarray:
    return np.stack([expected_vector(text, dimension) for text in texts])


def test_import_and_registry_without_key() -> None:
    code = (
        "import sys, rorf_openai\n"
        "from rorf_core.plugins import embedder_entries\n"
        "entry = embedder_entries()['openai']\n"
        "print(entry.distribution, 'openai' in sys.modules, 'tiktoken' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    distribution, openai_loaded, tiktoken_loaded = result.stdout.split()
    assert distribution == "rorf-openai"
    assert openai_loaded == "False"
    assert tiktoken_loaded == "False"


def test_registry_builds_embedder() -> None:
    assert embedder_entries()["openai"].factory is OpenAIEmbedder
    embedder = get_embedder("openai")
    assert embedder.model == "text-embedding-3-small"
    assert embedder.dimension == 1536


def test_missing_key_raises_before_request(server: FakeOpenAI) -> None:
    embedder = make_embedder(server, api_key=None)
    with pytest.raises(MissingAPIKeyError) as caught:
        embedder.embed(["hello"])
    assert "OPENAI_API_KEY" in str(caught.value)
    assert server.requests == []


def test_key_read_from_environment(
    server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    vectors = make_embedder(server, api_key=None).embed(["hello"])
    assert vectors.shape == (1, DIMENSION)
    assert server.requests[0]["authorization"] == f"Bearer {API_KEY}"


def test_401_not_retried_and_key_hidden(
    server: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server.fail_next(401, f"Incorrect API key provided: {API_KEY}.", "invalid_api_key")
    with pytest.raises(RemoteEmbeddingError) as caught:
        make_embedder(server).embed(["hello"])
    error = caught.value
    assert len(server.requests) == 1
    assert error.status == 401
    assert error.kind is FailureKind.AUTHENTICATION
    assert "OpenAI" in str(error)
    assert "OPENAI_API_KEY" in str(error)
    assert API_KEY not in str(error)
    assert error.__cause__ is None
    assert API_KEY not in caplog.text


def test_403_not_retried(server: FakeOpenAI) -> None:
    server.fail_next(403, "You are not allowed to use this model.")
    with pytest.raises(RemoteEmbeddingError) as caught:
        make_embedder(server).embed(["hello"])
    assert len(server.requests) == 1
    assert caught.value.status == 403


def test_quota_429_not_retried(server: FakeOpenAI) -> None:
    server.fail_next(
        429,
        "You exceeded your current quota, please check your plan and billing details.",
        "insufficient_quota",
    )
    with pytest.raises(RemoteEmbeddingError) as caught:
        make_embedder(server).embed(["hello"])
    error = caught.value
    assert len(server.requests) == 1
    assert error.kind is FailureKind.QUOTA_EXHAUSTED
    assert "quota exhausted" in str(error)
    assert "Not retried" in str(error)


def test_plain_429_retried_then_succeeds(server: FakeOpenAI) -> None:
    server.fail_next(429, "Rate limit reached for requests", "rate_limit_exceeded")
    texts = ["first", "second"]
    vectors = make_embedder(server).embed(texts)
    assert len(server.requests) == 2
    assert server.inputs() == [texts, texts]
    np.testing.assert_array_equal(vectors, expected(texts))


def test_retry_after_header_waits_and_retries(server: FakeOpenAI) -> None:
    server.fail_next(
        429, "Rate limit reached", "rate_limit_exceeded", retry_after_ms="20"
    )
    vectors = make_embedder(server).embed(["text"])
    assert len(server.requests) == 2
    np.testing.assert_array_equal(vectors, expected(["text"]))


def test_persistent_500_fails_within_budget_and_caches_nothing(
    server: FakeOpenAI,
) -> None:
    server.always = (500, {"error": {"message": "The server had an error"}}, {})
    embedder = make_embedder(server)
    cache = EmbeddingCache(MEMORY_PATH)
    texts = ["alpha", "beta"]
    with pytest.raises(RemoteEmbeddingError) as caught:
        cache.embed(embedder, texts)
    error = caught.value
    assert isinstance(error, EmbeddingError)
    assert error.status == 500
    assert "OpenAI" in str(error)
    assert "HTTP 500" in str(error)
    assert error.attempts >= 2
    # No attempt starts after the budget; the last one may run up to 1 s past it.
    assert error.elapsed <= FAST_RETRY.budget + 1.0
    assert len(server.requests) == error.attempts

    server.always = None
    cache.embed(embedder, texts)
    assert server.inputs()[-1] == texts
    requests_after_success = len(server.requests)
    np.testing.assert_array_equal(cache.embed(embedder, texts), expected(texts))
    assert len(server.requests) == requests_after_success


def test_5000_texts_take_three_requests(server: FakeOpenAI) -> None:
    texts = [f"prompt number {index}" for index in range(5000)]
    vectors = make_embedder(server).embed(texts)
    sizes = [len(inputs) for inputs in server.inputs()]
    assert sizes == [2048, 2048, 904]
    assert [text for inputs in server.inputs() for text in inputs] == texts
    np.testing.assert_array_equal(vectors, expected(texts))


def test_token_budget_splits_requests_in_order(server: FakeOpenAI) -> None:
    texts = ["x" * 30, "y" * 30, "z" * 30, "w" * 10, "v" * 10]
    embedder = make_embedder(server, tokenizer="bytes", max_batch_tokens=60)
    vectors = embedder.embed(texts)
    assert server.inputs() == [texts[:2], texts[2:]]
    np.testing.assert_array_equal(vectors, expected(texts))


@needs_cl100k
def test_token_budget_counts_real_tokens(server: FakeOpenAI) -> None:
    import tiktoken

    encoding = tiktoken.get_encoding("cl100k_base")
    # " hello" is one cl100k token but six bytes, so byte bounds would make
    # four requests where real counts need two.
    texts = [" hello" * 40 for _ in range(4)]
    make_embedder(server, max_batch_tokens=100).embed(texts)
    assert [len(inputs) for inputs in server.inputs()] == [2, 2]
    for inputs in server.inputs():
        assert sum(len(encoding.encode(text)) for text in inputs) <= 100


def test_shuffled_responses_keep_input_order(server: FakeOpenAI) -> None:
    server.shuffle = True
    texts = [f"text {index}" for index in range(10)]
    vectors = make_embedder(server, batch_size=4).embed(texts)
    assert [len(inputs) for inputs in server.inputs()] == [4, 4, 2]
    np.testing.assert_array_equal(vectors, expected(texts))


def test_empty_text_rejected_with_index(server: FakeOpenAI) -> None:
    with pytest.raises(InvalidInputError) as caught:
        make_embedder(server).embed(["fine", "   ", "also fine"])
    assert caught.value.index == 1
    assert server.requests == []


@needs_cl100k
def test_long_text_truncated_with_one_warning(
    server: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    import tiktoken

    encoding = tiktoken.get_encoding("cl100k_base")
    long_text = " hello" * 9000
    texts = ["short", long_text, long_text + " world"]
    with caplog.at_level(logging.WARNING, logger="rorf_openai"):
        vectors = make_embedder(server).embed(texts)
    sent = server.inputs()[0]
    assert sent[0] == "short"
    assert len(encoding.encode(sent[1])) == 8191
    assert len(encoding.encode(sent[2])) == 8191
    assert long_text.startswith(sent[1])
    warnings = [
        record for record in caplog.records if record.levelno == logging.WARNING
    ]
    assert len(warnings) == 1
    assert "indices 1, 2" in warnings[0].getMessage()
    np.testing.assert_array_equal(vectors, expected(sent))


@needs_cl100k
def test_long_text_rejected_when_truncation_off(server: FakeOpenAI) -> None:
    texts = ["short", "fine", " hello" * 9000]
    with pytest.raises(InvalidInputError) as caught:
        make_embedder(server, truncate=False).embed(texts)
    assert caught.value.index == 2
    assert "9000 tokens" in str(caught.value)
    assert server.requests == []


@needs_cl100k
def test_special_token_text_is_plain_text(server: FakeOpenAI) -> None:
    text = "before <|endoftext|> after " + " hello" * 9000
    make_embedder(server).embed([text])
    assert server.inputs()[0][0].startswith("before <|endoftext|> after")


def test_bytes_tokenizer_truncates_without_bpe_file(server: FakeOpenAI) -> None:
    text = "é" * 300
    embedder = make_embedder(server, tokenizer="bytes", max_input_tokens=101)
    embedder.embed([text])
    assert server.inputs()[0] == ["é" * 50]
    assert embedder.options()["tokenizer"] == "bytes"


def test_unavailable_encoding_names_the_fix(server: FakeOpenAI) -> None:
    # p50k_base is not in the test cache, and the download goes to a closed port.
    embedder = make_embedder(server, tokenizer="p50k_base", max_input_tokens=10)
    with pytest.raises(EmbeddingError) as caught:
        embedder.embed(["a text that is longer than ten bytes"])
    assert "TIKTOKEN_CACHE_DIR" in str(caught.value)
    assert "tokenizer='bytes'" in str(caught.value)
    assert server.requests == []


def test_short_texts_need_no_bpe_file(server: FakeOpenAI) -> None:
    embedder = make_embedder(server, tokenizer="p50k_base")
    vectors = embedder.embed(["short text"])
    assert vectors.shape == (1, DIMENSION)


def test_dimension_learned_from_first_response(server: FakeOpenAI) -> None:
    embedder = make_embedder(server, dimensions=None, model="local-model")
    assert embedder.dimension == server.default_dimension
    assert len(server.requests) == 1
    vectors = embedder.embed(["one", "two"])
    assert vectors.shape == (2, server.default_dimension)
    assert "dimensions" not in server.requests[-1]["body"]


def test_dimensions_option_sent(server: FakeOpenAI) -> None:
    make_embedder(server, dimensions=16).embed(["hello"])
    assert server.requests[0]["body"]["dimensions"] == 16


def test_options_and_repr_hold_no_secrets(server: FakeOpenAI) -> None:
    embedder = make_embedder(server)
    options = embedder.options()
    assert options == {
        "dimensions": DIMENSION,
        "truncate": True,
        "max_input_tokens": 8191,
        "tokenizer": "cl100k_base",
    }
    assert API_KEY not in repr(embedder)


def test_success_logs_hold_no_key(
    server: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server.fail_next(503, f"overloaded for key {API_KEY}")
    make_embedder(server).embed(["hello"])
    assert len(server.requests) == 2
    assert "overloaded for key ***" in caplog.text
    assert API_KEY not in caplog.text


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"model": "text-embedding-ada-002", "dimensions": 256}, "does not accept"),
        ({"dimensions": 4096}, "more than"),
        ({"batch_size": 4096}, "2048"),
        ({"dimensions": 0}, "positive"),
    ],
)
def test_invalid_options_rejected(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        OpenAIEmbedder(**options)  # type: ignore[arg-type]
