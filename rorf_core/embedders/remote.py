"""Shared machinery for embedders that call an HTTP embeddings API.

:class:`RemoteEmbedder` is the base class of the OpenAI and Voyage plugins.
It resolves the API key before any request, lets the plugin truncate or reject
long texts with their index, splits each batch by text count and by a token
budget while keeping input order, and sends each request through
:func:`call_with_retries`.

Retries follow :class:`RetryPolicy`: exponential backoff with jitter, bounded
by a total time budget (60 s by default). Errors are classified once, here:

* 401 and 403 are never retried: the key is wrong or lacks access.
* 429 whose error code or message reports an exhausted quota (OpenAI's
  ``insufficient_quota``) is not retried, and the raised error states that.
* Any other 429, 408, every 5xx, time-outs and connection errors are retried
  until the budget is spent.
* Other 4xx are not retried.

The API key is removed from every message and log line that this module
builds, and it is never part of :meth:`RemoteEmbedder.options`.
"""

from __future__ import annotations

import abc
import enum
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar, TypeVar

import attrs
import numpy as np

from rorf_core.embedders.base import Embedder, check_texts
from rorf_core.errors import EmbeddingError, InvalidInputError, MissingAPIKeyError

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_RETRY_BUDGET_S",
    "FailureKind",
    "RemoteEmbedder",
    "RemoteEmbeddingError",
    "RemoteFailure",
    "RetryPolicy",
    "call_with_retries",
    "classify_failure",
    "cut_utf8",
    "format_indices",
    "hide_secret_in_logs",
    "is_quota_exhausted",
    "redact",
    "split_batches",
    "utf8_length",
    "vectors_in_order",
]

#: Default total time, in seconds, that one request may spend on attempts and waits.
DEFAULT_RETRY_BUDGET_S = 60.0

T = TypeVar("T")

# Phrases that providers use when an account is out of credit rather than
# sending too fast. OpenAI sends the code ``insufficient_quota`` with "You
# exceeded your current quota". Waiting does not fix these.
_QUOTA_PATTERN = re.compile(
    r"insufficient[_ ]quota|exceeded your (current )?quota"
    r"|quota (is |has been )?(exceeded|exhausted)",
    re.IGNORECASE,
)
_QUOTA_CODES = frozenset({"insufficient_quota"})
_REDACTED = "***"


def _positive(instance: Any, attribute: attrs.Attribute, value: float) -> None:
    if not value > 0:
        raise ValueError(f"RetryPolicy.{attribute.name} must be > 0, got {value!r}")


def _non_negative(instance: Any, attribute: attrs.Attribute, value: float) -> None:
    if not value >= 0:
        raise ValueError(f"RetryPolicy.{attribute.name} must be >= 0, got {value!r}")


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """Exponential backoff with jitter inside a total time budget.

    The wait before retry ``n`` (1-based) is
    ``min(max_delay, initial_delay * multiplier ** (n - 1))``, less a random
    share of up to ``jitter`` of it, so that clients that failed together do
    not retry together. A ``Retry-After`` header from the server lengthens
    the wait. No attempt starts once ``budget`` seconds have passed since
    the first one, and each attempt's time-out is cut to the time left (but
    not below one second), so one request takes at most about ``budget + 1``
    seconds.

    :param budget: total seconds for all attempts and waits of one request.
    :param initial_delay: seconds before the first retry.
    :param max_delay: upper bound on one wait, in seconds.
    :param multiplier: growth of the wait from one retry to the next.
    :param jitter: share of each wait, from 0 to 1, drawn at random.
    :param request_timeout: seconds one attempt may take.
    """

    budget: float = attrs.field(default=DEFAULT_RETRY_BUDGET_S, validator=_positive)
    initial_delay: float = attrs.field(default=1.0, validator=_non_negative)
    max_delay: float = attrs.field(default=20.0, validator=_non_negative)
    multiplier: float = attrs.field(default=2.0)
    jitter: float = attrs.field(default=0.5)
    request_timeout: float = attrs.field(default=30.0, validator=_positive)

    @multiplier.validator
    def _check_multiplier(self, attribute: attrs.Attribute, value: float) -> None:
        if not value >= 1:
            raise ValueError(f"RetryPolicy.multiplier must be >= 1, got {value!r}")

    @jitter.validator
    def _check_jitter(self, attribute: attrs.Attribute, value: float) -> None:
        if not 0 <= value <= 1:
            raise ValueError(
                f"RetryPolicy.jitter must be between 0 and 1, got {value!r}"
            )

    def delay(self, retry_number: int, draw: float) -> float:
        """Return the wait in seconds before retry ``retry_number``; ``draw`` is in [0, 1)."""
        growth = self.initial_delay * self.multiplier ** (retry_number - 1)
        ceiling = min(self.max_delay, growth)
        return ceiling * (1.0 - self.jitter * draw)


class FailureKind(enum.Enum):
    """Why a request failed, which decides whether it is retried."""

    AUTHENTICATION = "authentication failed"
    QUOTA_EXHAUSTED = "quota exhausted"
    RATE_LIMITED = "rate limited"
    SERVER_ERROR = "server error"
    CONNECTION = "connection failed"
    REJECTED = "request rejected"

    @property
    def retryable(self) -> bool:
        return self in (
            FailureKind.RATE_LIMITED,
            FailureKind.SERVER_ERROR,
            FailureKind.CONNECTION,
        )


@attrs.frozen(kw_only=True)
class RemoteFailure:
    """A provider's error translated into the facts that the retry loop needs.

    :param status: the HTTP status, or ``None`` when no response came back
        (a time-out or a connection error).
    :param message: the provider's error message.
    :param code: the provider's error code, such as ``"insufficient_quota"``.
    :param retry_after: seconds the server asked the client to wait.
    """

    status: int | None
    message: str
    code: str | None = None
    retry_after: float | None = None


def is_quota_exhausted(code: str | None, message: str) -> bool:
    """Return whether a 429's code or message reports an exhausted quota."""
    if code is not None and code.lower() in _QUOTA_CODES:
        return True
    return _QUOTA_PATTERN.search(message) is not None


def classify_failure(failure: RemoteFailure) -> FailureKind:
    """Return the kind of ``failure``, which decides whether it is retried."""
    status = failure.status
    if status is None:
        return FailureKind.CONNECTION
    if status in (401, 403):
        return FailureKind.AUTHENTICATION
    if status == 429:
        if is_quota_exhausted(failure.code, failure.message):
            return FailureKind.QUOTA_EXHAUSTED
        return FailureKind.RATE_LIMITED
    if status >= 500 or status == 408:
        return FailureKind.SERVER_ERROR
    return FailureKind.REJECTED


class RemoteEmbeddingError(EmbeddingError):
    """A request to an embeddings API failed and will not be retried further.

    Attributes: ``provider``, ``kind`` (:class:`FailureKind`), ``status``
    (HTTP status or ``None``), ``code`` (the provider's error code),
    ``detail`` (the provider's message, API key removed), ``attempts`` and
    ``elapsed`` (seconds since the first attempt).
    """

    def __init__(
        self,
        provider: str,
        failure: RemoteFailure,
        kind: FailureKind,
        *,
        attempts: int,
        elapsed: float,
        advice: str,
        secrets: Sequence[str] = (),
    ) -> None:
        self.provider = provider
        self.kind = kind
        self.status = failure.status
        self.code = failure.code
        self.detail = redact(failure.message, secrets)
        self.attempts = attempts
        self.elapsed = elapsed
        status = "no response" if failure.status is None else f"HTTP {failure.status}"
        code = f", code {failure.code}" if failure.code else ""
        tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
        super().__init__(
            f"{provider} embeddings request failed: {status} ({kind.value}{code}) "
            f"after {tries} in {elapsed:.1f} s: {self.detail}. {advice}"
        )


def _advice(kind: FailureKind, policy: RetryPolicy, api_key_env: str | None) -> str:
    if kind is FailureKind.AUTHENTICATION:
        where = f" in {api_key_env} or api_key=" if api_key_env else ""
        return f"Not retried: check the API key{where} and its access to this model."
    if kind is FailureKind.QUOTA_EXHAUSTED:
        return (
            "Not retried, because waiting does not restore an exhausted quota: "
            "add credit or raise the account's limit, then run again."
        )
    if kind is FailureKind.REJECTED:
        return "Not retried: fix the request (model name, options or input)."
    return (
        f"Gave up within the retry budget of {policy.budget:g} s; try again "
        "later or pass a larger RetryPolicy(budget=...)."
    )


def redact(text: str, secrets: Iterable[str]) -> str:
    """Return ``text`` with every occurrence of each secret replaced by ``***``."""
    for secret in secrets:
        # Very short strings would blank out ordinary words.
        if secret and len(secret) >= 4:
            text = text.replace(secret, _REDACTED)
    return text


class _SecretFilter(logging.Filter):
    """Removes registered secrets from every record of the logger it sits on."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message, self.secrets)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        return True


_secret_filters: dict[str, _SecretFilter] = {}
_secret_filters_lock = threading.Lock()


def hide_secret_in_logs(logger_name: str, secret: str) -> None:
    """Make the logger ``logger_name`` replace ``secret`` with ``***`` in its records.

    For client libraries that log the server's error messages, which could
    quote the key. Records of child loggers are not covered, because a
    filter only runs on the logger where the record is made.
    """
    with _secret_filters_lock:
        secret_filter = _secret_filters.get(logger_name)
        if secret_filter is None:
            secret_filter = _SecretFilter()
            logging.getLogger(logger_name).addFilter(secret_filter)
            _secret_filters[logger_name] = secret_filter
        secret_filter.secrets.add(secret)


def call_with_retries(
    send: Callable[[float], T],
    *,
    provider: str,
    describe: Callable[[BaseException], RemoteFailure | None],
    policy: RetryPolicy,
    secrets: Sequence[str] = (),
    api_key_env: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
) -> T:
    """Call ``send(timeout)`` until it succeeds, fails for good or the budget ends.

    :param send: makes one attempt; its argument is the attempt's time-out in
        seconds.
    :param describe: translates an exception from ``send`` into a
        :class:`RemoteFailure`, or returns ``None`` for exceptions that are
        not request failures; those propagate unchanged.
    :param secrets: strings (the API key) removed from messages and logs.
    :raises RemoteEmbeddingError: the failure is not retryable, or the
        budget does not leave time for another attempt.
    """
    draw = (rng or random.Random()).random
    start = clock()
    attempt = 0
    while True:
        attempt += 1
        remaining = policy.budget - (clock() - start)
        timeout = min(policy.request_timeout, max(remaining, 1.0))
        try:
            return send(timeout)
        except Exception as error:
            failure = describe(error)
            if failure is None:
                raise
            kind = classify_failure(failure)
            elapsed = clock() - start
            wait = _next_wait(kind, failure, policy, attempt, elapsed, draw)
            if wait is None:
                raise RemoteEmbeddingError(
                    provider,
                    failure,
                    kind,
                    attempts=attempt,
                    elapsed=elapsed,
                    advice=_advice(kind, policy, api_key_env),
                    secrets=secrets,
                ) from _cause(error, secrets)
            logger.info(
                "%s embeddings request failed (%s, status %s) on attempt %d: %s; "
                "retrying in %.2f s, %.1f s of the %g s retry budget left",
                provider,
                kind.value,
                failure.status,
                attempt,
                redact(failure.message, secrets),
                wait,
                policy.budget - elapsed,
                policy.budget,
            )
            sleep(wait)


def _next_wait(
    kind: FailureKind,
    failure: RemoteFailure,
    policy: RetryPolicy,
    attempt: int,
    elapsed: float,
    draw: Callable[[], float],
) -> float | None:
    """Return the wait before the next attempt, or ``None`` to stop retrying."""
    if not kind.retryable:
        return None
    wait = policy.delay(attempt, draw())
    if failure.retry_after is not None:
        wait = max(wait, failure.retry_after)
    if elapsed + wait >= policy.budget:
        return None
    return wait


def _cause(error: BaseException, secrets: Sequence[str]) -> BaseException | None:
    # A traceback prints the chained error's text too; drop the chain when
    # that text would show the key.
    if redact(str(error), secrets) != str(error):
        return None
    return error


def utf8_length(text: str) -> int:
    """Return the length of ``text`` in UTF-8 bytes.

    For a byte-level BPE tokenizer (OpenAI's cl100k_base, and others) every
    token covers at least one byte, so this is an upper bound on the token
    count of ``text`` without special tokens.
    """
    return len(text.encode("utf-8", "surrogatepass"))


def cut_utf8(text: str, max_bytes: int) -> str:
    """Return the longest prefix of ``text`` that is at most ``max_bytes`` in UTF-8."""
    encoded = text.encode("utf-8", "surrogatepass")
    if len(encoded) <= max_bytes:
        return text
    # "ignore" drops a character that the cut splits in the middle.
    return encoded[:max_bytes].decode("utf-8", "ignore")


def split_batches(
    costs: Sequence[int],
    *,
    max_items: int,
    max_tokens: int | None = None,
    isolate: Sequence[bool] | None = None,
) -> list[range]:
    """Split positions ``0..len(costs)-1`` into consecutive runs for requests.

    Each run contains at most ``max_items`` positions, and its ``costs`` (token
    counts) sum to at most ``max_tokens``, except a run of one position whose
    cost alone is larger: such a text still gets its own request. Positions
    with ``isolate[i]`` true get a run of their own. Runs are in input order,
    so concatenating their results restores the order of the inputs.
    """
    if max_items < 1:
        raise ValueError(f"max_items must be at least 1, got {max_items}")
    if max_tokens is not None and max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1 or None, got {max_tokens}")
    runs: list[range] = []
    start = 0
    total = 0
    previous_alone = False
    for position, cost in enumerate(costs):
        alone = bool(isolate[position]) if isolate is not None else False
        size = position - start
        full = size >= max_items
        over_budget = max_tokens is not None and total + cost > max_tokens
        if size > 0 and (alone or previous_alone or full or over_budget):
            runs.append(range(start, position))
            start = position
            total = 0
        total += cost
        previous_alone = alone
    if start < len(costs):
        runs.append(range(start, len(costs)))
    return runs


def vectors_in_order(
    items: Iterable[tuple[int, Sequence[float]]], count: int, provider: str
) -> np.ndarray:
    """Place ``(index, vector)`` pairs from a response in input order.

    :raises EmbeddingError: an index is out of range, repeated or missing,
        or the vectors differ in length.
    """
    rows: list[Sequence[float] | None] = [None] * count
    for index, vector in items:
        if not 0 <= index < count:
            raise EmbeddingError(
                f"{provider} returned an embedding for index {index}, but the "
                f"request held {count} texts"
            )
        if rows[index] is not None:
            raise EmbeddingError(
                f"{provider} returned two embeddings for index {index}"
            )
        rows[index] = vector
    missing = [index for index, row in enumerate(rows) if row is None]
    if missing:
        raise EmbeddingError(
            f"{provider} returned no embedding for the texts at request indices "
            f"{format_indices(missing)}"
        )
    lengths = {len(row) for row in rows if row is not None}
    if len(lengths) > 1:
        raise EmbeddingError(
            f"{provider} returned embeddings of different lengths {sorted(lengths)} "
            "in one response"
        )
    return np.asarray(rows, dtype=np.float32).reshape(count, -1)


def format_indices(indices: Sequence[int], limit: int = 10) -> str:
    """Return ``indices`` as ``"3, 7, 9"``, shortened after ``limit`` values."""
    shown = ", ".join(str(index) for index in indices[:limit])
    if len(indices) > limit:
        shown += f", ... ({len(indices)} in all)"
    return shown


class _RejectedText(InvalidInputError):
    """The API rejected a text sent on its own.

    ``index`` is the position within the :meth:`RemoteEmbedder.embed_batch`
    call. :meth:`RemoteEmbedder.embed` re-raises it with the position in its
    own input.
    """

    def __init__(self, index: int, text: str, reason: str) -> None:
        self.text = text
        super().__init__(index, reason)


class RemoteEmbedder(Embedder):
    """Base class for embedders backed by an HTTP embeddings API.

    Subclasses set :attr:`name`, :attr:`provider` and :attr:`api_key_env`,
    and implement :meth:`build_client`, :meth:`send_request`,
    :meth:`describe_error` and :attr:`dimension`. They may override
    :meth:`prepare_texts` (prefixes, truncation), :meth:`token_costs` and
    :meth:`isolated`.

    :meth:`embed` checks the texts, resolves the API key (raising
    :class:`MissingAPIKeyError` before any request), calls
    :meth:`prepare_texts` on the whole input, then lets the core batch by
    :attr:`batch_size`. Each batch is split again by
    :attr:`max_batch_tokens` and sent through :func:`call_with_retries`.
    """

    #: Provider name used in messages, for example ``"OpenAI"``.
    provider: ClassVar[str]
    #: Environment variable that contains the API key.
    api_key_env: ClassVar[str]
    #: Loggers of the client library that may quote server messages; the key
    #: is removed from their records.
    client_loggers: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        retry: RetryPolicy | None = None,
        batch_size: int,
        max_batch_tokens: int | None,
    ) -> None:
        super().__init__(model)
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if max_batch_tokens is not None and max_batch_tokens < 1:
            raise ValueError(
                f"max_batch_tokens must be at least 1 or None, got {max_batch_tokens}"
            )
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry must be a RetryPolicy, got {type(retry).__name__}")
        self.base_url = base_url
        self.retry = retry or RetryPolicy()
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        # Kept private and out of options() and repr(), so it is never saved
        # in router metadata or logged.
        self._api_key_argument = api_key
        self._client: Any = None
        self._client_key: str | None = None
        self._client_lock = threading.Lock()

    # -- hooks for subclasses ------------------------------------------------

    @abc.abstractmethod
    def build_client(self, api_key: str) -> Any:
        """Return the provider's client object, built with retries turned off."""

    @abc.abstractmethod
    def send_request(
        self, client: Any, texts: list[str], timeout: float
    ) -> Iterable[tuple[int, Sequence[float]]]:
        """Send one request and return ``(index, vector)`` pairs from the response."""

    @abc.abstractmethod
    def describe_error(self, error: BaseException) -> RemoteFailure | None:
        """Translate a client exception, or return ``None`` for other exceptions."""

    def prepare_texts(self, texts: list[str]) -> list[str]:
        """Return the texts as they will be sent: prefixed, truncated or checked.

        Called once per :meth:`embed` call with the whole input, so an
        :class:`InvalidInputError` raised here carries the caller's index and
        stops the call before any request is sent.
        """
        return texts

    def token_costs(self, texts: list[str]) -> list[int]:
        """Return an upper bound on each text's token count, for the request budget."""
        return [utf8_length(text) for text in texts]

    def isolated(self, texts: list[str]) -> list[bool]:
        """Return which texts get a request of their own.

        An API error for a request of one text identifies the rejected text,
        so :meth:`embed` can name its index.
        """
        return [False] * len(texts)

    # -- shared behaviour ----------------------------------------------------

    def resolve_api_key(self) -> str:
        """Return the API key from ``api_key=`` or the environment.

        :raises MissingAPIKeyError: neither is set.
        """
        key = self._api_key_argument or os.environ.get(self.api_key_env, "")
        if not key.strip():
            raise MissingAPIKeyError(self.name, self.api_key_env)
        return key.strip()

    def client(self) -> Any:
        """Return the provider client, building it on first use."""
        key = self.resolve_api_key()
        with self._client_lock:
            # Rebuild when the environment's key changed since the last call.
            if self._client is None or self._client_key != key:
                for name in self.client_loggers:
                    hide_secret_in_logs(name, key)
                self._client = self.build_client(key)
                self._client_key = key
            return self._client

    def embed(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """Embed ``texts`` in order, returning a float32 array ``(n, dimension)``.

        :raises InvalidInputError: a text is empty, not a ``str``, too long
            (when truncation is off) or rejected by the API; the error names
            its index.
        :raises MissingAPIKeyError: no API key is set; raised before any
            request.
        :raises RemoteEmbeddingError: a request failed for good.
        """
        checked = check_texts(texts)
        if not checked:
            return super().embed(checked, progress=progress)
        self.client()
        prepared = self.prepare_texts(checked)
        try:
            return super().embed(prepared, progress=progress)
        except _RejectedText as rejected:
            # Texts are sent in order, so the first equal text is the one that
            # failed: any earlier copy would have been rejected first.
            index = prepared.index(rejected.text)
            raise InvalidInputError(index, rejected.reason) from None

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        """Embed one batch, split into requests by :attr:`max_batch_tokens`."""
        isolate = self.isolated(texts)
        runs = split_batches(
            self.token_costs(texts),
            max_items=self.batch_size,
            max_tokens=self.max_batch_tokens,
            isolate=isolate,
        )
        parts = []
        for run in runs:
            chunk = texts[run.start : run.stop]
            parts.append(self._request_chunk(chunk, run.start, isolate[run.start]))
        return np.concatenate(parts, axis=0)

    def _request_chunk(self, chunk: list[str], offset: int, alone: bool) -> np.ndarray:
        client = self.client()
        key = self._client_key or ""
        try:
            pairs = call_with_retries(
                lambda timeout: list(self.send_request(client, chunk, timeout)),
                provider=self.provider,
                describe=self.describe_error,
                policy=self.retry,
                secrets=(key,),
                api_key_env=self.api_key_env,
            )
        except RemoteEmbeddingError as error:
            if alone and error.kind is FailureKind.REJECTED:
                reason = f"the {self.provider} API rejected it: {error.detail}"
                raise _RejectedText(offset, chunk[0], reason) from None
            raise
        vectors = vectors_in_order(pairs, len(chunk), self.provider)
        self.on_vectors(vectors)
        return vectors

    def on_vectors(self, vectors: np.ndarray) -> None:
        """Receive each response's vectors; subclasses learn the dimension here."""

    def __repr__(self) -> str:
        base = f", base_url={self.base_url!r}" if self.base_url else ""
        return (
            f"{type(self).__name__}(model={self.model!r}, "
            f"options={self.options()!r}{base})"
        )
