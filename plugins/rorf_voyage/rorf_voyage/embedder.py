"""Voyage AI embeddings for RoRF, through the ``voyageai`` package."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import attrs
import numpy as np
from rorf_core.embedders.base import iter_batches
from rorf_core.embedders.remote import (
    RemoteEmbedder,
    RemoteFailure,
    RetryPolicy,
    format_indices,
    utf8_length,
)

logger = logging.getLogger(__name__)

__all__ = [
    "CLUSTER_INSTRUCTION",
    "DEFAULT_MODEL",
    "MAX_BATCH_ITEMS",
    "MODELS",
    "VoyageEmbedder",
    "VoyageModel",
]

DEFAULT_MODEL = "voyage-large-2-instruct"
#: Prefix that RoRF's pre-trained voyage routers put before every prompt
#: (Not-Diamond/RoRF, rorf/router/embeddings.py, with input_type=None).
CLUSTER_INSTRUCTION = "Cluster the text: "
#: Texts per request: what the voyageai package batches by
#: (``voyageai.VOYAGE_EMBED_BATCH_SIZE``, version 0.5) and RoRF's original code
#: used. The API reference allows 1000.
MAX_BATCH_ITEMS = 128
#: The API's own limit on texts per request, from its reference.
API_MAX_BATCH_ITEMS = 1000
INPUT_TYPES = (None, "query", "document")
# Room for the special tokens (begin and end markers) that a tokenizer may add
# to each text. An allowance, not a measured count.
_SPECIAL_TOKEN_ALLOWANCE = 2


@attrs.frozen(kw_only=True)
class VoyageModel:
    """Limits of one Voyage model.

    :param dimension: default vector length, or ``None`` to learn it from
        the first response.
    :param context_length: tokens of one input that the model reads.
    :param max_batch_tokens: tokens summed over the inputs of one request.
    """

    dimension: int | None
    context_length: int
    max_batch_tokens: int


# Tokens per request follow the API reference (1M, 320K or 120K by model).
# NOTE: the vector and context lengths, and the budgets of the voyage-2
# generation that the current reference no longer lists, come from third-party
# summaries, not Voyage's own pages. Since the API truncates, a wrong context
# length only changes which texts are flagged or sent alone. A wrong vector
# length fails the core's shape check with an EmbeddingError.
MODELS: dict[str, VoyageModel] = {
    "voyage-large-2-instruct": VoyageModel(
        dimension=1024, context_length=16000, max_batch_tokens=120_000
    ),
    "voyage-large-2": VoyageModel(
        dimension=1536, context_length=16000, max_batch_tokens=120_000
    ),
    "voyage-2": VoyageModel(
        dimension=1024, context_length=4000, max_batch_tokens=320_000
    ),
    "voyage-code-2": VoyageModel(
        dimension=1536, context_length=16000, max_batch_tokens=120_000
    ),
    "voyage-law-2": VoyageModel(
        dimension=1024, context_length=16000, max_batch_tokens=120_000
    ),
    "voyage-finance-2": VoyageModel(
        dimension=1024, context_length=32000, max_batch_tokens=120_000
    ),
    "voyage-multilingual-2": VoyageModel(
        dimension=1024, context_length=32000, max_batch_tokens=120_000
    ),
    "voyage-3": VoyageModel(
        dimension=1024, context_length=32000, max_batch_tokens=320_000
    ),
    "voyage-3-lite": VoyageModel(
        dimension=512, context_length=32000, max_batch_tokens=1_000_000
    ),
    "voyage-3-large": VoyageModel(
        dimension=1024, context_length=32000, max_batch_tokens=120_000
    ),
    "voyage-3.5": VoyageModel(
        dimension=1024, context_length=32000, max_batch_tokens=320_000
    ),
    "voyage-3.5-lite": VoyageModel(
        dimension=1024, context_length=32000, max_batch_tokens=1_000_000
    ),
    "voyage-code-3": VoyageModel(
        dimension=1024, context_length=32000, max_batch_tokens=120_000
    ),
}
# A model missing from the table gets the smallest limits above, so batches
# stay legal; its vector length is learned from the first response.
UNKNOWN_MODEL = VoyageModel(
    dimension=None, context_length=4000, max_batch_tokens=120_000
)
_PROBE_TEXT = "dimension probe"


class VoyageEmbedder(RemoteEmbedder):
    """Embed texts with Voyage AI's embeddings API.

    :param model: the model, ``voyage-large-2-instruct`` by default.
    :param instruction: text put before every input. ``None`` picks the
        model's default: ``"Cluster the text: "`` for
        voyage-large-2-instruct without ``input_type``, which is what RoRF's
        pre-trained routers used, else nothing. ``""`` sends texts as given.
    :param input_type: ``None``, ``"query"`` or ``"document"``; Voyage puts
        its own retrieval prompt before the text for the latter two.
    :param truncate: let the API cut inputs longer than the context length
        (a warning per batch names texts that may be cut). When false, the
        API rejects such a text and :class:`InvalidInputError` names its index.
    :param dimensions: shorter vectors (``output_dimension``) for models that
        offer them; ``None`` keeps the default length.
    :param api_key: the key; ``VOYAGE_API_KEY`` when not given.
    :param base_url: another endpoint that speaks Voyage's API.
    :param retry: the retry policy; a 60 s budget by default.
    :param batch_size: texts per request, at most 1000.
    :param max_batch_tokens: tokens per request; the model's limit by default.
    :param context_length: tokens per input; the model's by default. It only
        decides which texts are flagged or sent alone, since the API truncates.
    """

    name: ClassVar[str] = "voyage"
    provider: ClassVar[str] = "Voyage AI"
    api_key_env: ClassVar[str] = "VOYAGE_API_KEY"
    # voyageai logs each error message from the server at INFO.
    client_loggers: ClassVar[tuple[str, ...]] = ("voyage",)

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        instruction: str | None = None,
        input_type: str | None = None,
        truncate: bool = True,
        dimensions: int | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        retry: RetryPolicy | None = None,
        batch_size: int = MAX_BATCH_ITEMS,
        max_batch_tokens: int | None = None,
        context_length: int | None = None,
    ) -> None:
        limits = MODELS.get(model, UNKNOWN_MODEL)
        super().__init__(
            model,
            api_key=api_key,
            base_url=base_url,
            retry=retry,
            batch_size=batch_size,
            max_batch_tokens=max_batch_tokens or limits.max_batch_tokens,
        )
        _check_options(input_type, dimensions, batch_size, context_length)
        self.input_type = input_type
        self.instruction = _default_instruction(model, input_type, instruction)
        self.truncate = bool(truncate)
        self.dimensions = dimensions
        self.context_length = context_length or limits.context_length
        self._default_dimension = limits.dimension
        self._learned_dimension: int | None = None

    @property
    def dimension(self) -> int:
        """Vector length: ``dimensions``, the model's, or learned from the API."""
        if self.dimensions is not None:
            return self.dimensions
        if self._default_dimension is not None:
            return self._default_dimension
        if self._learned_dimension is None:
            logger.info(
                "embedding one probe text to learn the vector length of %r", self.model
            )
            self.embed_batch([_PROBE_TEXT])
        assert self._learned_dimension is not None
        return self._learned_dimension

    def options(self) -> dict[str, Any]:
        """Return the options that change the vectors; never the key or base_url."""
        return {
            "instruction": self.instruction,
            "input_type": self.input_type,
            "truncate": self.truncate,
            "dimensions": self.dimensions,
        }

    # -- client and requests -------------------------------------------------

    def build_client(self, api_key: str) -> Any:
        import voyageai

        # Retries are off so that RetryPolicy alone decides how long a
        # request may take. The client stores the key.
        return voyageai.Client(api_key=api_key, max_retries=0, base_url=self.base_url)

    def send_request(
        self, client: Any, texts: list[str], timeout: float
    ) -> Iterable[tuple[int, Sequence[float]]]:
        import voyageai

        # NOTE: Client.embed() drops each item's "index" and returns the
        # vectors in response order, so this calls the resource class that
        # Client.embed() wraps (voyageai 0.5) and reorders by index.
        response = voyageai.Embedding.create(
            input=texts,
            model=self.model,
            input_type=self.input_type,
            truncation=self.truncate,
            output_dimension=self.dimensions,
            api_key=client.api_key,
            # None lets the client pick its endpoint for this kind of key.
            base_url=self.base_url,
            request_timeout=timeout,
        )
        return [(item.index, item.embedding) for item in response.data]

    def describe_error(self, error: BaseException) -> RemoteFailure | None:
        from voyageai import error as voyage_errors

        if isinstance(error, (voyage_errors.Timeout, voyage_errors.APIConnectionError)):
            return RemoteFailure(status=None, message=str(error))
        if (
            isinstance(error, voyage_errors.VoyageError)
            and error.http_status is not None
        ):
            return RemoteFailure(
                status=int(error.http_status),
                message=_error_message(error),
                code=error.code,
                retry_after=_retry_after(error.headers),
            )
        return None

    def on_vectors(self, vectors: np.ndarray) -> None:
        if self._learned_dimension is None:
            self._learned_dimension = int(vectors.shape[1])

    # -- texts and token bounds ----------------------------------------------

    def prepare_texts(self, texts: list[str]) -> list[str]:
        """Put the instruction before each text; warn once per batch about long ones."""
        prepared = [self.instruction + text for text in texts]
        if not self.truncate:
            return prepared
        start = 0
        for batch in iter_batches(prepared, self.batch_size):
            long_ones = [
                start + offset
                for offset, text in enumerate(batch)
                if self._may_exceed_context(text)
            ]
            if long_ones:
                logger.warning(
                    "%s: %d text(s) at indices %s may exceed the %d-token context "
                    "length of %s; the Voyage API truncates those that do",
                    self.name,
                    len(long_ones),
                    format_indices(long_ones),
                    self.context_length,
                    self.model,
                )
            start += len(batch)
        return prepared

    def token_costs(self, texts: list[str]) -> list[int]:
        """Return an upper bound on each text's tokens: UTF-8 bytes plus specials.

        NOTE: Voyage's tokenizers are fetched from the Hugging Face hub at run
        time, so the exact count is not available offline. The bound assumes
        a tokenizer whose tokens each cover at least one byte (byte-level BPE
        or SentencePiece with byte fallback). It overestimates English text
        about fourfold, which costs extra requests but never a rejected one.
        """
        return [utf8_length(text) + _SPECIAL_TOKEN_ALLOWANCE for text in texts]

    def isolated(self, texts: list[str]) -> list[bool]:
        """With truncation off, send each text that may be too long on its own.

        The API then rejects that one request, which names the text's index.
        """
        if self.truncate:
            return [False] * len(texts)
        return [self._may_exceed_context(text) for text in texts]

    def _may_exceed_context(self, text: str) -> bool:
        return utf8_length(text) + _SPECIAL_TOKEN_ALLOWANCE > self.context_length


def _default_instruction(
    model: str, input_type: str | None, instruction: str | None
) -> str:
    if instruction is not None:
        return instruction
    if model == DEFAULT_MODEL and input_type is None:
        return CLUSTER_INSTRUCTION
    return ""


def _check_options(
    input_type: str | None,
    dimensions: int | None,
    batch_size: int,
    context_length: int | None,
) -> None:
    if input_type not in INPUT_TYPES:
        raise ValueError(f"input_type must be one of {INPUT_TYPES}, got {input_type!r}")
    if dimensions is not None and (not isinstance(dimensions, int) or dimensions < 1):
        raise ValueError(
            f"dimensions must be a positive int or None, got {dimensions!r}"
        )
    if batch_size > API_MAX_BATCH_ITEMS:
        raise ValueError(
            f"batch_size={batch_size} is over the Voyage API's limit of "
            f"{API_MAX_BATCH_ITEMS} texts per request"
        )
    if context_length is not None and context_length < 1:
        raise ValueError(
            f"context_length must be a positive int, got {context_length!r}"
        )


def _error_message(error: Any) -> str:
    body = error.json_body
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        return body["detail"]
    message = error.user_message or ""
    http_body = error.http_body
    if isinstance(http_body, str) and http_body and http_body not in message:
        message = f"{message} {http_body[:500]}".strip()
    return message or type(error).__name__


def _retry_after(headers: Any) -> float | None:
    value = headers.get("retry-after") if headers else None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        # An HTTP date; the backoff is used instead.
        return None
