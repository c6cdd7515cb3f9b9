"""The jina embedder: jina-embeddings-v3 or another transformers encoder, run locally.

This module imports neither torch nor transformers, so that building the
embedder (for example while a router is loaded) stays cheap. The model code
lives in :mod:`rorf_jina._transformers` and is imported on first use.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from rorf_core import Embedder, InvalidInputError
from rorf_core.embedders import check_texts

if TYPE_CHECKING:
    from rorf_jina._transformers import LoadedModel

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_MAX_LENGTH",
    "DEFAULT_MODEL",
    "DEFAULT_TASK",
    "DTYPES",
    "JinaEmbedder",
]

DEFAULT_MODEL = "jinaai/jina-embeddings-v3"
#: The LoRA adapter that RoRF's pre-trained jina routers were trained with.
DEFAULT_TASK = "classification"
#: jina-embeddings-v3's context length in tokens (arXiv:2409.10173).
DEFAULT_MAX_LENGTH = 8192
#: Texts per forward pass.
DEFAULT_BATCH_SIZE = 32
DTYPES = ("float32", "float16", "bfloat16")


class JinaEmbedder(Embedder):
    """Embed texts on this machine with jina-embeddings-v3 or another encoder.

    A model whose class has an ``encode(texts, task=...)`` method, as
    jina-embeddings-v3's code does, is embedded through that method, so the
    model's own code picks the task's LoRA adapter and pools the tokens. Any
    other model is embedded by mean pooling its last hidden states over the
    attention mask, without normalisation.

    :param model: a hub repo id or a local model directory.
    :param task: the task passed to ``encode()``; for jina-embeddings-v3 one
        of ``retrieval.query``, ``retrieval.passage``, ``separation``,
        ``classification`` and ``text-matching``, or ``None`` for no adapter.
        Models without ``encode()`` ignore it.
    :param max_length: the maximum number of tokens per text, special tokens
        included.
    :param truncate: cut longer texts to ``max_length`` tokens, with one
        warning per batch; when false, such a text raises
        :class:`~rorf_core.InvalidInputError`.
    :param dtype: the weights' dtype, one of :data:`DTYPES`.
    :param device: a torch device such as ``"cpu"`` or ``"cuda:0"``. The
        default is CUDA when torch finds a CUDA device, else the CPU.
    :param batch_size: texts per forward pass.
    :param revision: a hub branch, tag or commit to pin the model to.
    :param trust_remote_code: allow transformers to import and run Python
        code from the model repository. jina-embeddings-v3 needs it, because
        its model class is defined in that code, so it defaults to true.
        Pass false for models that transformers implements itself.
    """

    name = "jina"

    def __init__(
        self,
        model: str | os.PathLike[str] = DEFAULT_MODEL,
        *,
        task: str | None = DEFAULT_TASK,
        max_length: int = DEFAULT_MAX_LENGTH,
        truncate: bool = True,
        dtype: str = "float32",
        device: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        revision: str | None = None,
        trust_remote_code: bool = True,
    ) -> None:
        super().__init__(os.fspath(model))
        self.task = _check_optional_str("task", task)
        self.max_length = _check_positive_int("max_length", max_length)
        self.truncate = _check_bool("truncate", truncate)
        self.dtype = _check_dtype(dtype)
        self.device = _check_optional_str("device", device)
        self.batch_size = _check_positive_int("batch_size", batch_size)
        self.revision = _check_optional_str("revision", revision)
        self.trust_remote_code = _check_bool("trust_remote_code", trust_remote_code)
        self._config: Any = None
        self._loaded: LoadedModel | None = None
        self._lock = threading.Lock()

    @property
    def dimension(self) -> int:
        """Length of each vector, read from the model config (no weights load)."""
        from rorf_jina import _transformers

        return _transformers.hidden_size(self._load_config())

    def options(self) -> dict[str, Any]:
        # Device, batch size, truncate and trust_remote_code do not change
        # the vectors, so they stay out of router metadata and cache keys.
        return {
            "task": self.task,
            "max_length": self.max_length,
            "dtype": self.dtype,
            "revision": self.revision,
        }

    def embed(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """Embed ``texts`` in order, returning a float32 array ``(n, dimension)``.

        Texts are sorted by token count, longest first, before they are cut
        into batches, so that a long text is padded together with other long
        texts and not with short ones. The longest batch runs first, so an
        out-of-memory error shows at once. The rows come back in input order.

        :raises InvalidInputError: a text is empty or not a ``str``, or it has
            more than ``max_length`` tokens and ``truncate`` is false. The
            error's ``index`` is the text's position in ``texts``.
        """
        checked = check_texts(texts)
        if len(checked) < 2:
            return super().embed(checked, progress=progress)
        counts = self._count_tokens(checked)
        if not self.truncate:
            self._reject_too_long(counts)
        order = np.argsort(-np.asarray(counts), kind="stable")
        vectors = super().embed([checked[i] for i in order], progress=progress)
        restored = np.empty_like(vectors)
        restored[order] = vectors
        return restored

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        from rorf_jina import _transformers

        loaded = self._load()
        # Counting tokens again here, after embed() did, keeps embed_batch()
        # correct when it is called on its own. Tokenizing costs little next
        # to the forward pass.
        counts = _transformers.count_tokens(loaded.tokenizer, texts)
        if not self.truncate:
            self._reject_too_long(counts)
        else:
            self._warn_truncated(counts)
        if loaded.has_encode:
            return _transformers.embed_with_encode(
                loaded, texts, task=self.task, max_length=self.max_length
            )
        return _transformers.embed_with_mean_pooling(
            loaded, texts, max_length=self.max_length
        )

    def _count_tokens(self, texts: list[str]) -> list[int]:
        from rorf_jina import _transformers

        return _transformers.count_tokens(self._load().tokenizer, texts)

    def _reject_too_long(self, counts: Sequence[int]) -> None:
        for index, count in enumerate(counts):
            if count > self.max_length:
                raise InvalidInputError(
                    index,
                    f"it has {count} tokens, more than max_length={self.max_length}; "
                    "shorten it, raise max_length, or pass truncate=True to cut it",
                )

    def _warn_truncated(self, counts: Sequence[int]) -> None:
        too_long = [count for count in counts if count > self.max_length]
        if too_long:
            logger.warning(
                "%d of %d texts in this batch are longer than max_length=%d tokens "
                "(longest: %d); the tokenizer keeps only their first %d tokens",
                len(too_long),
                len(counts),
                self.max_length,
                max(too_long),
                self.max_length,
            )

    def _load_config(self) -> Any:
        with self._lock:
            if self._config is None:
                from rorf_jina import _transformers

                self._config = _transformers.load_config(
                    self.model,
                    revision=self.revision,
                    trust_remote_code=self.trust_remote_code,
                )
            return self._config

    def _load(self) -> LoadedModel:
        if self._loaded is not None:
            return self._loaded
        config = self._load_config()
        with self._lock:
            if self._loaded is None:
                from rorf_jina import _transformers

                loaded = _transformers.load_model(
                    self.model,
                    config,
                    revision=self.revision,
                    trust_remote_code=self.trust_remote_code,
                    dtype=self.dtype,
                    device=self.device,
                )
                self._check_loaded(loaded)
                self._loaded = loaded
            return self._loaded

    def _check_loaded(self, loaded: LoadedModel) -> None:
        if loaded.has_encode:
            tasks = loaded.tasks
            if self.task is not None and tasks is not None and self.task not in tasks:
                raise ValueError(
                    f"task={self.task!r} is not a task of model {self.model!r}; "
                    f"pass one of {', '.join(tasks)}, or task=None for no adapter"
                )
            return
        limit = loaded.token_limit
        if limit is not None and self.max_length > limit:
            raise ValueError(
                f"max_length={self.max_length} is more than the {limit} tokens that "
                f"model {self.model!r} accepts; pass max_length={limit} or less"
            )
        if self.task is not None:
            logger.info(
                "model %r has no encode(task=...) method, so it is embedded by mean "
                "pooling and task=%r has no effect",
                self.model,
                self.task,
            )


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def _check_optional_str(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string or None, got {value!r}")
    return value


def _check_dtype(value: Any) -> str:
    if value not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {value!r}")
    return str(value)
