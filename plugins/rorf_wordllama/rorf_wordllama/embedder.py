"""The wordllama embedder."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from rorf_core import Embedder

logger = logging.getLogger(__name__)

DEFAULT_CONFIG = "l2_supercat"
DEFAULT_DIMENSION = 256


class WordLlamaEmbedder(Embedder):
    """Average-pooled wordllama token embeddings.

    :param model: the wordllama configuration name (default ``l2_supercat``,
        the one whose weights ship in the wheel).
    :param dim: vector length; ``l2_supercat`` ships 256 in the wheel.
    :param trunc_dim: keep only the first ``trunc_dim`` dimensions (the
        weights are Matryoshka-trained, so a prefix is a valid embedding).
    :param norm: normalise each vector to unit length.
    :param batch_size: texts per call into wordllama.
    """

    name = "wordllama"

    def __init__(
        self,
        model: str = DEFAULT_CONFIG,
        *,
        dim: int = DEFAULT_DIMENSION,
        trunc_dim: int | None = None,
        norm: bool = False,
        batch_size: int = 512,
    ) -> None:
        super().__init__(model)
        self.dim = int(dim)
        self.trunc_dim = None if trunc_dim is None else int(trunc_dim)
        self.norm = bool(norm)
        self.batch_size = int(batch_size)
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def dimension(self) -> int:
        return self.trunc_dim or self.dim

    def options(self) -> dict[str, Any]:
        return {"dim": self.dim, "trunc_dim": self.trunc_dim, "norm": self.norm}

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                self._model = load_packaged_model(self.model, self.dim, self.trunc_dim)
                logger.debug("loaded wordllama %s (dim %d)", self.model, self.dimension)
        return self._model

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        model = self._model if self._model is not None else self._load()
        return model.embed(texts, norm=self.norm, batch_size=len(texts))


def load_packaged_model(config: str, dim: int, trunc_dim: int | None) -> Any:
    """Load a wordllama model from the files inside the ``wordllama`` package.

    ``WordLlama.load(disable_download=True)`` looks for the tokenizer in a
    ``tokenizer/`` folder while the wheel ships it in ``tokenizers/``
    (wordllama 0.4.0), so without this it would fetch the tokenizer from the
    hub. The weights and tokenizer are read here from the package itself.
    """
    _import_wordllama_quietly()
    import wordllama
    from safetensors import safe_open
    from wordllama import WordLlama
    from wordllama.config import WordLlamaModels
    from wordllama.inference import WordLlamaInference

    package = Path(wordllama.__file__).parent
    try:
        model_uri = getattr(WordLlamaModels, config)
    except AttributeError:
        known = ", ".join(WordLlama.list_configs()["wordllama"])
        raise ValueError(f"unknown wordllama model {config!r}; known: {known}") from None
    weights = package / "weights" / WordLlama.get_filename(config, dim)
    tokenizer_file = package / "tokenizers" / model_uri.tokenizer_config
    for required in (weights, tokenizer_file):
        if not required.is_file():
            raise FileNotFoundError(
                f"wordllama file {str(required)!r} is not in the installed package; "
                f"model {config!r} with dim {dim} does not ship in the wheel"
            )
    tokenizer = WordLlama.load_tokenizer(tokenizer_file)
    with safe_open(str(weights), framework="np") as handle:
        embedding = handle.get_tensor("embedding.weight")
    if trunc_dim:
        embedding = embedding[:, :trunc_dim]
    return WordLlamaInference(embedding, tokenizer)


def _import_wordllama_quietly() -> None:
    """Import ``wordllama`` without keeping the root log handler it installs.

    ``wordllama/__init__.py`` (0.4.0) calls ``logging.basicConfig(level=INFO)``
    at import time, which would make every INFO line of the host program
    print. Handlers and the level that the import adds are removed again;
    a program that configured logging itself is left untouched.
    """
    import logging
    import sys

    if "wordllama" in sys.modules:
        return
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    import wordllama  # noqa: F401

    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
