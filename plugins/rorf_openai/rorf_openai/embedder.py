"""OpenAI embeddings, and any OpenAI-compatible embeddings server, for RoRF."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import numpy as np
from rorf_core.embedders.base import iter_batches
from rorf_core.embedders.remote import (
    RemoteEmbedder,
    RemoteFailure,
    RetryPolicy,
    cut_utf8,
    format_indices,
    utf8_length,
)
from rorf_core.errors import EmbeddingError, InvalidInputError

logger = logging.getLogger(__name__)

__all__ = [
    "BYTES_TOKENIZER",
    "DEFAULT_MODEL",
    "MAX_BATCH_ITEMS",
    "MAX_BATCH_TOKENS",
    "MAX_INPUT_TOKENS",
    "MODEL_DIMENSIONS",
    "OpenAIEmbedder",
]

DEFAULT_MODEL = "text-embedding-3-small"
#: Native vector length of each OpenAI embedding model.
MODEL_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
#: Models that accept the ``dimensions`` request parameter.
MODELS_WITH_DIMENSIONS = frozenset({"text-embedding-3-small", "text-embedding-3-large"})
#: Token limit of one input. openai 3.60's docstring gives 8192; 8191 is the
#: limit OpenAI has long documented for these models, and the safer one.
MAX_INPUT_TOKENS = 8191
#: Inputs in one request, as OpenAI's API reference states.
MAX_BATCH_ITEMS = 2048
#: Tokens summed over the inputs of one request (from the openai package's
#: docstring for ``embeddings.create``, version 3.60).
MAX_BATCH_TOKENS = 300_000
#: The tiktoken encoding of every model above.
DEFAULT_TOKENIZER = "cl100k_base"
#: ``tokenizer=`` value that counts UTF-8 bytes instead of tokens.
BYTES_TOKENIZER = "bytes"
#: tiktoken reads its BPE files from this directory before it downloads them.
TIKTOKEN_CACHE_ENV = "TIKTOKEN_CACHE_DIR"
# Text embedded once to learn the vector length of an unknown model.
_PROBE_TEXT = "dimension probe"


class OpenAIEmbedder(RemoteEmbedder):
    """Embed texts with OpenAI's embeddings API through the ``openai`` client.

    :param model: the embedding model, ``text-embedding-3-small`` by default.
    :param dimensions: shorter vectors, for ``text-embedding-3-*`` models and
        servers that accept the parameter; ``None`` keeps the model's length.
    :param truncate: cut texts longer than ``max_input_tokens`` to that many
        tokens (one warning per batch). When false, such a text raises
        :class:`InvalidInputError` with its index before any request.
    :param max_input_tokens: token limit of one input; ``None`` sends texts
        as they are.
    :param tokenizer: the tiktoken encoding that counts tokens, or
        ``"bytes"`` to count UTF-8 bytes, a bound that needs no BPE file but
        cuts long texts to about a quarter of the allowed tokens.
    :param api_key: the key; ``OPENAI_API_KEY`` when not given.
    :param base_url: an OpenAI-compatible server, for example
        ``http://localhost:8000/v1``. The vector length is then learned from
        the first response unless ``dimensions`` is given.
    :param retry: the retry policy; a 60 s budget by default.
    :param batch_size: inputs per request, at most 2048 for OpenAI.
    :param max_batch_tokens: tokens per request; ``None`` for no bound.
    """

    name: ClassVar[str] = "openai"
    provider: ClassVar[str] = "OpenAI"
    api_key_env: ClassVar[str] = "OPENAI_API_KEY"

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        dimensions: int | None = None,
        truncate: bool = True,
        max_input_tokens: int | None = MAX_INPUT_TOKENS,
        tokenizer: str = DEFAULT_TOKENIZER,
        api_key: str | None = None,
        base_url: str | None = None,
        retry: RetryPolicy | None = None,
        batch_size: int = MAX_BATCH_ITEMS,
        max_batch_tokens: int | None = MAX_BATCH_TOKENS,
    ) -> None:
        super().__init__(
            model,
            api_key=api_key,
            base_url=base_url,
            retry=retry,
            batch_size=batch_size,
            max_batch_tokens=max_batch_tokens,
        )
        _check_limits(model, base_url, dimensions, batch_size, max_input_tokens)
        self.dimensions = dimensions
        self.truncate = bool(truncate)
        self.max_input_tokens = max_input_tokens
        self.tokenizer = tokenizer
        self._learned_dimension: int | None = None
        self._encoding: Any = None
        self._encoding_error: str | None = None

    @property
    def dimension(self) -> int:
        """Vector length: ``dimensions``, the model's, or learned from the server."""
        if self.dimensions is not None:
            return self.dimensions
        if self.base_url is None and self.model in MODEL_DIMENSIONS:
            return MODEL_DIMENSIONS[self.model]
        if self._learned_dimension is None:
            self._probe_dimension()
        assert self._learned_dimension is not None
        return self._learned_dimension

    def options(self) -> dict[str, Any]:
        """Return the options that change the vectors; never the key or base_url."""
        return {
            "dimensions": self.dimensions,
            "truncate": self.truncate,
            "max_input_tokens": self.max_input_tokens,
            "tokenizer": self.tokenizer,
        }

    # -- client and requests -------------------------------------------------

    def build_client(self, api_key: str) -> Any:
        import openai

        # The client's own retries are off so that RetryPolicy alone decides
        # how long a request may take.
        return openai.OpenAI(api_key=api_key, base_url=self.base_url, max_retries=0)

    def send_request(
        self, client: Any, texts: list[str], timeout: float
    ) -> Iterable[tuple[int, Sequence[float]]]:
        arguments: dict[str, Any] = {"model": self.model, "input": texts}
        if self.dimensions is not None:
            arguments["dimensions"] = self.dimensions
        response = client.embeddings.create(**arguments, timeout=timeout)
        return [(item.index, item.embedding) for item in response.data]

    def describe_error(self, error: BaseException) -> RemoteFailure | None:
        import openai

        if isinstance(error, openai.APIStatusError):
            return RemoteFailure(
                status=error.status_code,
                message=_error_message(error),
                code=error.code,
                retry_after=_retry_after(error.response.headers),
            )
        if isinstance(error, openai.APITimeoutError):
            return RemoteFailure(status=None, message="the request timed out")
        if isinstance(error, openai.APIConnectionError):
            cause = error.__cause__
            detail = f"{error}: {cause}" if cause else str(error)
            return RemoteFailure(status=None, message=detail)
        return None

    def on_vectors(self, vectors: np.ndarray) -> None:
        if self._learned_dimension is None:
            self._learned_dimension = int(vectors.shape[1])

    def _probe_dimension(self) -> None:
        logger.info(
            "embedding one probe text to learn the vector length of %r at %s",
            self.model,
            self.base_url or "the default OpenAI endpoint",
        )
        self.embed_batch([_PROBE_TEXT])

    # -- token counting and truncation ---------------------------------------

    def prepare_texts(self, texts: list[str]) -> list[str]:
        """Truncate or reject texts over ``max_input_tokens``; one warning per batch."""
        if self.max_input_tokens is None:
            return texts
        prepared: list[str] = []
        for batch_start, batch in _enumerated_batches(texts, self.batch_size):
            truncated: list[int] = []
            for offset, text in enumerate(batch):
                fitted = self._fit(text, batch_start + offset)
                if fitted is not text:
                    truncated.append(batch_start + offset)
                prepared.append(fitted)
            if truncated:
                logger.warning(
                    "%s: truncated %d text(s) at indices %s to the %d-%s limit of %s",
                    self.name,
                    len(truncated),
                    format_indices(truncated),
                    self.max_input_tokens,
                    "byte" if self.tokenizer == BYTES_TOKENIZER else "token",
                    self.model,
                )
        return prepared

    def _fit(self, text: str, index: int) -> str:
        """Return ``text`` unchanged when it fits, else its truncation."""
        limit = self.max_input_tokens
        assert limit is not None
        # A BPE token covers at least one byte, so a text of at most `limit`
        # bytes fits without running the tokenizer.
        length = utf8_length(text)
        if length <= limit:
            return text
        if self.tokenizer == BYTES_TOKENIZER:
            self._raise_unless_truncating(
                index, f"{length} UTF-8 bytes", f"{limit}-byte"
            )
            return cut_utf8(text, limit)
        encoding = self._load_encoding()
        tokens = encoding.encode(text, disallowed_special=())
        if len(tokens) <= limit:
            return text
        self._raise_unless_truncating(index, f"{len(tokens)} tokens", f"{limit}-token")
        return _truncate_tokens(encoding, tokens, limit)

    def _raise_unless_truncating(self, index: int, size: str, limit: str) -> None:
        if not self.truncate:
            raise InvalidInputError(
                index,
                f"the text has {size}, over the {limit} input limit of "
                f"{self.model}; shorten it or pass truncate=True",
            )

    def token_costs(self, texts: list[str]) -> list[int]:
        """Return token counts for the request budget, exact where it matters.

        The UTF-8 length bounds the token count, so the tokenizer runs only
        when those bounds sum to more than the budget. Without the tokenizer
        the bounds are used, which can only add requests, never change vectors.
        """
        bounds = [utf8_length(text) for text in texts]
        if self.max_batch_tokens is None or sum(bounds) <= self.max_batch_tokens:
            return bounds
        if self.tokenizer == BYTES_TOKENIZER:
            return bounds
        try:
            encoding = self._load_encoding()
        except EmbeddingError:
            return bounds
        encoded = encoding.encode_batch(texts, disallowed_special=())
        return [len(tokens) for tokens in encoded]

    def _load_encoding(self) -> Any:
        """Return the tiktoken encoding, loading it once.

        :raises EmbeddingError: tiktoken cannot read or download its BPE file.
        """
        if self._encoding is not None:
            return self._encoding
        if self._encoding_error is None:
            import tiktoken

            try:
                self._encoding = tiktoken.get_encoding(self.tokenizer)
                return self._encoding
            except (ValueError, OSError) as error:
                # requests' errors subclass OSError, so a failed download
                # lands here too.
                self._encoding_error = f"{type(error).__name__}: {error}"
                logger.info(
                    "tiktoken encoding %r is not available (%s); request budgets "
                    "are counted in UTF-8 bytes",
                    self.tokenizer,
                    self._encoding_error,
                )
        raise EmbeddingError(
            f"openai embedder: cannot load the tiktoken encoding {self.tokenizer!r} "
            f"to count tokens of long texts ({self._encoding_error}). tiktoken "
            "downloads its BPE file on first use; offline, point "
            f"{TIKTOKEN_CACHE_ENV} at a directory that holds it (see the "
            "rorf-openai README), or pass tokenizer='bytes' to truncate by UTF-8 "
            "bytes instead."
        )


def _check_limits(
    model: str,
    base_url: str | None,
    dimensions: int | None,
    batch_size: int,
    max_input_tokens: int | None,
) -> None:
    if dimensions is not None and (not isinstance(dimensions, int) or dimensions < 1):
        raise ValueError(
            f"dimensions must be a positive int or None, got {dimensions!r}"
        )
    if max_input_tokens is not None and max_input_tokens < 1:
        raise ValueError(
            f"max_input_tokens must be a positive int or None, got {max_input_tokens!r}"
        )
    if base_url is not None:
        # A compatible server sets its own limits.
        return
    if batch_size > MAX_BATCH_ITEMS:
        raise ValueError(
            f"batch_size={batch_size} is over OpenAI's limit of {MAX_BATCH_ITEMS} "
            "inputs per request"
        )
    if dimensions is None or model not in MODEL_DIMENSIONS:
        return
    if model not in MODELS_WITH_DIMENSIONS:
        raise ValueError(f"{model} does not accept dimensions=; leave it as None")
    if dimensions > MODEL_DIMENSIONS[model]:
        raise ValueError(
            f"dimensions={dimensions} is more than {model}'s {MODEL_DIMENSIONS[model]}"
        )


def _enumerated_batches(
    texts: list[str], batch_size: int
) -> Iterable[tuple[int, list[str]]]:
    start = 0
    for batch in iter_batches(texts, batch_size):
        yield start, list(batch)
        start += len(batch)


def _truncate_tokens(encoding: Any, tokens: list[int], limit: int) -> str:
    """Return the longest decoded prefix of ``tokens`` that encodes to <= ``limit``."""
    keep = limit
    while True:
        # Decoding bytes with "ignore" drops a character cut in the middle.
        text = encoding.decode_bytes(tokens[:keep]).decode("utf-8", "ignore")
        # Re-encoding a decoded prefix can merge differently; check the count.
        excess = len(encoding.encode(text, disallowed_special=())) - limit
        if excess <= 0:
            return text
        keep -= excess


def _error_message(error: Any) -> str:
    body = error.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"]
    return str(error.message)


def _retry_after(headers: Any) -> float | None:
    """Return the wait that ``retry-after-ms`` or ``retry-after`` requests, in seconds."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name) if headers is not None else None
        if value is None:
            continue
        try:
            return max(0.0, float(value) * scale)
        except ValueError:
            # An HTTP date; the backoff is used instead.
            continue
    return None
