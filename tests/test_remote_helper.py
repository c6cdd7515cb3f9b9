"""The shared helper for HTTP embedding providers: retries, batching, order, secrets."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pytest

from rorf_core.embedders.remote import (
    FailureKind,
    RemoteEmbedder,
    RemoteEmbeddingError,
    RemoteFailure,
    RetryPolicy,
    call_with_retries,
    classify_failure,
    cut_utf8,
    format_indices,
    hide_secret_in_logs,
    is_quota_exhausted,
    redact,
    split_batches,
    utf8_length,
    vectors_in_order,
)
from rorf_core.errors import EmbeddingError, InvalidInputError, MissingAPIKeyError

SECRET = "sk-helper-test-secret-0000"


class FakeClock:
    """A monotonic clock that moves only when the retry loop sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class HTTPFailure(Exception):
    def __init__(
        self, status: int | None, message: str = "failed", **extra: Any
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


def describe(error: BaseException) -> RemoteFailure | None:
    if isinstance(error, HTTPFailure):
        return RemoteFailure(status=error.status, message=error.message, **error.extra)
    return None


class Script:
    """Raises the queued errors in turn, then returns ``"done"``."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.timeouts: list[float] = []

    def __call__(self, timeout: float) -> str:
        self.timeouts.append(timeout)
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def run(script: Script, policy: RetryPolicy, clock: FakeClock, **options: Any) -> str:
    return call_with_retries(
        script,
        provider="Example",
        describe=describe,
        policy=policy,
        sleep=clock.sleep,
        clock=clock,
        rng=random.Random(0),
        **options,
    )


NO_JITTER = RetryPolicy(budget=10.0, initial_delay=1.0, multiplier=2.0, jitter=0.0)


# -- RetryPolicy -------------------------------------------------------------


def test_delay_grows_and_caps() -> None:
    policy = RetryPolicy(initial_delay=1.0, multiplier=2.0, max_delay=5.0, jitter=0.0)
    assert [policy.delay(n, 0.0) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_delay_jitter_stays_in_range() -> None:
    policy = RetryPolicy(initial_delay=4.0, jitter=0.5)
    assert policy.delay(1, 0.0) == 4.0
    assert policy.delay(1, 0.999) == pytest.approx(2.002)


@pytest.mark.parametrize(
    "options",
    [{"budget": 0}, {"jitter": 1.5}, {"multiplier": 0.5}, {"initial_delay": -1}],
)
def test_invalid_policy_rejected(options: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(options))):
        RetryPolicy(**options)


def test_default_budget_is_sixty_seconds() -> None:
    assert RetryPolicy().budget == 60.0


# -- classification ----------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "message", "kind"),
    [
        (401, None, "bad key", FailureKind.AUTHENTICATION),
        (403, None, "forbidden", FailureKind.AUTHENTICATION),
        (429, "insufficient_quota", "quota", FailureKind.QUOTA_EXHAUSTED),
        (429, None, "You exceeded your current quota", FailureKind.QUOTA_EXHAUSTED),
        (429, None, "Monthly quota exhausted", FailureKind.QUOTA_EXHAUSTED),
        (429, "rate_limit_exceeded", "Rate limit reached", FailureKind.RATE_LIMITED),
        (408, None, "timeout", FailureKind.SERVER_ERROR),
        (500, None, "oops", FailureKind.SERVER_ERROR),
        (503, None, "overloaded", FailureKind.SERVER_ERROR),
        (None, None, "connection refused", FailureKind.CONNECTION),
        (400, None, "bad input", FailureKind.REJECTED),
        (404, None, "no such model", FailureKind.REJECTED),
    ],
)
def test_classify_failure(
    status: int | None, code: str | None, message: str, kind: FailureKind
) -> None:
    assert (
        classify_failure(RemoteFailure(status=status, code=code, message=message))
        is kind
    )


def test_rate_limit_with_billing_words_is_not_quota() -> None:
    message = "Add a payment method in billing for higher rate limits."
    assert not is_quota_exhausted(None, message)


# -- call_with_retries -------------------------------------------------------


def test_retries_then_succeeds() -> None:
    clock = FakeClock()
    script = Script(HTTPFailure(429), HTTPFailure(503), HTTPFailure(None))
    assert run(script, NO_JITTER, clock) == "done"
    assert clock.sleeps == [1.0, 2.0, 4.0]
    assert len(script.timeouts) == 4


def test_gives_up_when_budget_is_spent() -> None:
    clock = FakeClock()
    script = Script(*[HTTPFailure(500, "server broke") for _ in range(10)])
    with pytest.raises(RemoteEmbeddingError) as caught:
        run(script, NO_JITTER, clock)
    error = caught.value
    # Waits of 1, 2 and 4 s fit in 10 s; the next wait of 8 s does not.
    assert clock.sleeps == [1.0, 2.0, 4.0]
    assert error.attempts == 4
    assert error.elapsed == 7.0
    assert error.status == 500
    assert error.kind is FailureKind.SERVER_ERROR
    assert "Example" in str(error)
    assert "HTTP 500" in str(error)
    assert "retry budget of 10 s" in str(error)


@pytest.mark.parametrize("status", [401, 403, 400])
def test_fatal_status_not_retried(status: int) -> None:
    clock = FakeClock()
    script = Script(HTTPFailure(status))
    with pytest.raises(RemoteEmbeddingError) as caught:
        run(script, NO_JITTER, clock)
    assert caught.value.attempts == 1
    assert clock.sleeps == []


def test_quota_error_says_not_retried() -> None:
    clock = FakeClock()
    script = Script(HTTPFailure(429, "quota", code="insufficient_quota"))
    with pytest.raises(RemoteEmbeddingError) as caught:
        run(script, NO_JITTER, clock)
    assert caught.value.attempts == 1
    assert caught.value.code == "insufficient_quota"
    assert "quota exhausted" in str(caught.value)
    assert "Not retried" in str(caught.value)


def test_retry_after_lengthens_wait() -> None:
    clock = FakeClock()
    script = Script(HTTPFailure(429, retry_after=3.0))
    run(script, NO_JITTER, clock)
    assert clock.sleeps == [3.0]


def test_retry_after_beyond_budget_stops_at_once() -> None:
    clock = FakeClock()
    script = Script(HTTPFailure(429, retry_after=30.0))
    with pytest.raises(RemoteEmbeddingError) as caught:
        run(script, NO_JITTER, clock)
    assert caught.value.attempts == 1
    assert clock.sleeps == []


def test_undescribed_error_propagates() -> None:
    script = Script(KeyError("not an HTTP failure"))
    with pytest.raises(KeyError):
        run(script, NO_JITTER, FakeClock())


def test_timeout_capped_by_time_left() -> None:
    clock = FakeClock()
    policy = RetryPolicy(budget=5.0, initial_delay=2.0, jitter=0.0, request_timeout=4.0)
    script = Script(HTTPFailure(500))
    run(script, policy, clock)
    # The second attempt starts 2 s in, with 3 s of the budget left.
    assert script.timeouts == [4.0, 3.0]


def test_secret_redacted_from_error_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    clock = FakeClock()
    script = Script(
        HTTPFailure(500, f"bad key {SECRET}"), HTTPFailure(401, f"bad key {SECRET}")
    )
    with pytest.raises(RemoteEmbeddingError) as caught:
        run(script, NO_JITTER, clock, secrets=(SECRET,), api_key_env="EXAMPLE_KEY")
    assert SECRET not in str(caught.value)
    assert "bad key ***" in str(caught.value)
    assert "EXAMPLE_KEY" in str(caught.value)
    assert caught.value.__cause__ is None
    assert "retrying" in caplog.text
    assert SECRET not in caplog.text


def test_cause_kept_when_it_holds_no_secret() -> None:
    script = Script(HTTPFailure(401, "bad key"))
    with pytest.raises(RemoteEmbeddingError) as caught:
        run(script, NO_JITTER, FakeClock(), secrets=(SECRET,))
    assert isinstance(caught.value.__cause__, HTTPFailure)


def test_redact_skips_tiny_secrets() -> None:
    assert redact("a b c", ["a"]) == "a b c"
    assert redact(f"x{SECRET}y", [SECRET]) == "x***y"


def test_hide_secret_in_logs(caplog: pytest.LogCaptureFixture) -> None:
    hide_secret_in_logs("rorf-test-client", SECRET)
    with caplog.at_level(logging.INFO, logger="rorf-test-client"):
        logging.getLogger("rorf-test-client").info("server said %s", SECRET)
    assert "server said ***" in caplog.text
    assert SECRET not in caplog.text


# -- splitting and order -----------------------------------------------------


def test_split_by_count() -> None:
    runs = split_batches([1] * 5, max_items=2)
    assert [list(run) for run in runs] == [[0, 1], [2, 3], [4]]


def test_split_by_tokens_keeps_order() -> None:
    runs = split_batches([4, 4, 4, 1, 1, 1], max_items=10, max_tokens=8)
    assert [list(run) for run in runs] == [[0, 1], [2, 3, 4, 5]]


def test_oversized_text_gets_own_run() -> None:
    runs = split_batches([1, 50, 1], max_items=10, max_tokens=8)
    assert [list(run) for run in runs] == [[0], [1], [2]]


def test_isolated_text_gets_own_run() -> None:
    runs = split_batches(
        [1] * 5, max_items=10, isolate=[False, False, True, False, False]
    )
    assert [list(run) for run in runs] == [[0, 1], [2], [3, 4]]


def test_split_covers_every_position_once() -> None:
    generator = random.Random(7)
    costs = [generator.randint(1, 30) for _ in range(500)]
    runs = split_batches(costs, max_items=16, max_tokens=100)
    positions = [position for run in runs for position in run]
    assert positions == list(range(500))
    for run in runs:
        assert len(run) <= 16
        assert len(run) == 1 or sum(costs[i] for i in run) <= 100


def test_split_rejects_bad_limits() -> None:
    with pytest.raises(ValueError, match="max_items"):
        split_batches([1], max_items=0)
    with pytest.raises(ValueError, match="max_tokens"):
        split_batches([1], max_items=1, max_tokens=0)


def test_vectors_in_order_reorders() -> None:
    items = [(2, [2.0, 2.0]), (0, [0.0, 0.0]), (1, [1.0, 1.0])]
    vectors = vectors_in_order(items, 3, "Example")
    assert vectors.dtype == np.float32
    np.testing.assert_array_equal(vectors[:, 0], [0.0, 1.0, 2.0])


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([(0, [1.0]), (0, [1.0])], "two embeddings for index 0"),
        ([(0, [1.0])], "no embedding for the texts at request indices 1"),
        ([(0, [1.0]), (5, [1.0])], "index 5"),
        ([(0, [1.0]), (1, [1.0, 2.0])], "different lengths"),
    ],
)
def test_vectors_in_order_rejects_bad_responses(
    items: list[tuple[int, list[float]]], message: str
) -> None:
    with pytest.raises(EmbeddingError, match=message):
        vectors_in_order(items, 2, "Example")


def test_utf8_helpers() -> None:
    assert utf8_length("aé€😀") == 1 + 2 + 3 + 4
    assert cut_utf8("aé€", 4) == "aé"
    assert cut_utf8("aé€", 3) == "aé"
    assert cut_utf8("aé€", 2) == "a"
    assert cut_utf8("short", 100) == "short"


def test_format_indices_shortens_long_lists() -> None:
    assert format_indices([1, 2, 3]) == "1, 2, 3"
    assert format_indices(list(range(12)), limit=3) == "0, 1, 2, ... (12 in all)"


# -- RemoteEmbedder ----------------------------------------------------------


class EchoClient:
    """Stands in for a provider client: vectors are the text length and position."""

    def __init__(self, rejected: set[str]) -> None:
        self.requests: list[list[str]] = []
        self.rejected = rejected

    def embed(self, texts: list[str]) -> list[tuple[int, list[float]]]:
        self.requests.append(list(texts))
        if any(text in self.rejected for text in texts):
            raise HTTPFailure(400, "input too long")
        return [(index, [float(len(text)), 1.0]) for index, text in enumerate(texts)]


class ExampleEmbedder(RemoteEmbedder):
    name = "example"
    provider = "Example"
    api_key_env = "RORF_EXAMPLE_API_KEY"

    def __init__(self, rejected: Iterable[str] = (), **options: Any) -> None:
        options.setdefault("batch_size", 3)
        options.setdefault("max_batch_tokens", None)
        options.setdefault("retry", RetryPolicy(budget=1.0, initial_delay=0.0))
        super().__init__("example-model", **options)
        self.rejected = set(rejected)
        self.clients: list[EchoClient] = []

    @property
    def dimension(self) -> int:
        return 2

    def build_client(self, api_key: str) -> EchoClient:
        client = EchoClient(self.rejected)
        self.clients.append(client)
        return client

    def send_request(
        self, client: EchoClient, texts: list[str], timeout: float
    ) -> Sequence[tuple[int, list[float]]]:
        return client.embed(texts)

    def describe_error(self, error: BaseException) -> RemoteFailure | None:
        return describe(error)

    def isolated(self, texts: list[str]) -> list[bool]:
        return [text.startswith("long") for text in texts]


def test_missing_key_raises_before_any_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RORF_EXAMPLE_API_KEY", raising=False)
    embedder = ExampleEmbedder()
    with pytest.raises(MissingAPIKeyError, match="RORF_EXAMPLE_API_KEY"):
        embedder.embed(["hello"])
    assert embedder.clients == []


def test_embed_splits_and_keeps_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RORF_EXAMPLE_API_KEY", SECRET)
    texts = ["a", "bb", "ccc", "dddd", "eeeee", "f", "gg"]
    embedder = ExampleEmbedder(max_batch_tokens=6)
    vectors = embedder.embed(texts)
    # Core batches of 3, each split again so that UTF-8 lengths sum to <= 6.
    assert embedder.clients[0].requests == [
        ["a", "bb", "ccc"],
        ["dddd"],
        ["eeeee", "f"],
        ["gg"],
    ]
    np.testing.assert_array_equal(vectors[:, 0], [len(text) for text in texts])


def test_rejected_isolated_text_gets_callers_index(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RORF_EXAMPLE_API_KEY", SECRET)
    embedder = ExampleEmbedder(rejected={"long two"})
    texts = ["a", "b", "c", "d", "long one", "e", "long two"]
    with pytest.raises(InvalidInputError) as caught:
        embedder.embed(texts)
    assert caught.value.index == 6
    assert "input too long" in str(caught.value)
    assert embedder.clients[0].requests[-1] == ["long two"]


def test_client_rebuilt_when_key_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    embedder = ExampleEmbedder()
    monkeypatch.setenv("RORF_EXAMPLE_API_KEY", "first-key-value")
    embedder.embed(["x"])
    embedder.embed(["y"])
    monkeypatch.setenv("RORF_EXAMPLE_API_KEY", "second-key-value")
    embedder.embed(["z"])
    assert len(embedder.clients) == 2


def test_key_argument_stays_out_of_repr_and_options() -> None:
    embedder = ExampleEmbedder(api_key=SECRET, base_url="http://127.0.0.1:9/v1")
    assert SECRET not in repr(embedder)
    assert embedder.options() == {}
    assert "base_url='http://127.0.0.1:9/v1'" in repr(embedder)


def test_invalid_retry_option_rejected() -> None:
    with pytest.raises(TypeError, match="RetryPolicy"):
        ExampleEmbedder(retry={"budget": 5})
