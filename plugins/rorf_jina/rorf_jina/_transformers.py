"""Loading and running a transformers encoder with torch, for :class:`JinaEmbedder`.

Importing this module imports torch and transformers, so only code that is
about to embed imports it.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
import os
from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np
import torch
import transformers
from rorf_core import EmbeddingError

logger = logging.getLogger(__name__)

_TORCH_DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
# Tokenizers without a saved length limit report this sentinel
# (transformers' VERY_LARGE_INTEGER, int(1e30)) as model_max_length.
_NO_TOKEN_LIMIT = 10**18


@attrs.frozen
class LoadedModel:
    """A model in eval mode on its device, with its tokenizer."""

    model: Any
    tokenizer: Any
    device: torch.device
    #: Whether the model class has an ``encode(texts, task=...)`` method.
    has_encode: bool
    #: The task names the config lists (jina's ``lora_adaptations``), if any.
    tasks: tuple[str, ...] | None
    #: The tokenizer's ``model_max_length``, or None when it has none.
    token_limit: int | None


def load_config(model: str, *, revision: str | None, trust_remote_code: bool) -> Any:
    """Load the model's config, which is small, without loading weights."""
    _check_local_path(model)
    return _loading(
        "config",
        model,
        transformers.AutoConfig.from_pretrained,
        revision=revision,
        trust_remote_code=trust_remote_code,
    )


def hidden_size(config: Any) -> int:
    """Return the config's hidden size, which is the length of each vector."""
    size = getattr(config, "hidden_size", None)
    if not isinstance(size, int):
        raise EmbeddingError(
            f"model config {type(config).__name__} has no integer hidden_size, so "
            "the vector dimension is unknown; use an encoder model"
        )
    return size


def load_model(
    model: str,
    config: Any,
    *,
    revision: str | None,
    trust_remote_code: bool,
    dtype: str,
    device: str | None,
) -> LoadedModel:
    """Load weights and tokenizer, move the model to ``device`` and set eval mode."""
    torch_device = resolve_device(device)
    torch_dtype = _TORCH_DTYPES[dtype]
    _turn_off_flash_attention_if_unusable(model, config, torch_device, torch_dtype)

    tokenizer = _loading(
        "tokenizer",
        model,
        transformers.AutoTokenizer.from_pretrained,
        revision=revision,
        trust_remote_code=trust_remote_code,
    )
    network = _loading(
        "weights",
        model,
        transformers.AutoModel.from_pretrained,
        config=config,
        revision=revision,
        trust_remote_code=trust_remote_code,
        dtype=torch_dtype,
    )

    # Model code from a repository may drop the dtype argument (jina's own
    # from_pretrained moves keyword arguments it finds in the config into the
    # config), so the weights are cast here too.
    network.to(device=torch_device, dtype=torch_dtype)
    network.eval()
    logger.debug("loaded %s as %s on %s", model, type(network).__name__, torch_device)

    tasks = getattr(config, "lora_adaptations", None)
    return LoadedModel(
        model=network,
        tokenizer=tokenizer,
        device=torch_device,
        has_encode=_has_task_encode(network),
        tasks=tuple(tasks) if tasks else None,
        token_limit=_token_limit(tokenizer),
    )


def resolve_device(device: str | None) -> torch.device:
    """Return ``device`` as a torch device: CUDA when available if ``None``."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise ValueError(
            f"device={device!r} is not a torch device ({error}); pass 'cpu', "
            "'cuda', 'cuda:N' or 'mps'"
        ) from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} but torch finds no CUDA device; pass device='cpu' "
            "or install a CUDA build of torch"
        )
    return resolved


def count_tokens(tokenizer: Any, texts: Sequence[str]) -> list[int]:
    """Return each text's token count, special tokens included, without truncating."""
    encoded = tokenizer(
        list(texts),
        add_special_tokens=True,
        truncation=False,
        padding=False,
        return_attention_mask=False,
        return_token_type_ids=False,
        # Counting is the point here, so transformers' warning about inputs
        # over the model's limit would only be noise.
        verbose=False,
    )
    return [len(ids) for ids in encoded["input_ids"]]


def embed_with_encode(
    loaded: LoadedModel, texts: list[str], *, task: str | None, max_length: int
) -> np.ndarray:
    """Embed through the model's own ``encode()``, as jina-embeddings-v3 expects.

    jina's ``encode()`` passes ``max_length`` to its tokenizer, which
    truncates. The texts arrive already batched, so ``batch_size`` covers
    them all.

    NOTE: the tests run this against a stand-in model with the same
    ``encode()`` signature, not against jina-embeddings-v3's own code.
    """
    with torch.inference_mode():
        output = loaded.model.encode(
            texts, task=task, max_length=max_length, batch_size=len(texts)
        )
    return _to_float32_array(output)


def embed_with_mean_pooling(
    loaded: LoadedModel, texts: list[str], *, max_length: int
) -> np.ndarray:
    """Embed as the mean of the last hidden states over non-padding tokens."""
    inputs = loaded.tokenizer(
        texts,
        padding=True,
        truncation=True,
        max_length=max_length,
        return_tensors="pt",
    )
    inputs = {name: tensor.to(loaded.device) for name, tensor in inputs.items()}
    with torch.inference_mode():
        output = loaded.model(**inputs)
    hidden = getattr(output, "last_hidden_state", None)
    if hidden is None:
        hidden = output[0]
    # Summing in float32 keeps float16 and bfloat16 models from overflowing.
    pooled = mean_pool(hidden.float(), inputs["attention_mask"])
    return pooled.cpu().numpy()


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average ``hidden`` ``(batch, tokens, width)`` over tokens where the mask is 1."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    total = (hidden * mask).sum(dim=1)
    # A row contains at least its special tokens. The clamp only guards
    # against dividing by zero for a tokenizer that adds none.
    count = mask.sum(dim=1).clamp(min=1.0)
    return total / count


def _turn_off_flash_attention_if_unusable(
    model: str, config: Any, device: torch.device, dtype: torch.dtype
) -> None:
    # jina-embeddings-v3's config has use_flash_attn (default true) and its
    # code then calls the flash_attn package. Models whose config lacks the
    # field are left alone.
    if not config.to_dict().get("use_flash_attn"):
        return
    reason = _flash_attention_unusable_reason(device, dtype)
    if reason is None:
        return
    config.use_flash_attn = False
    logger.info("loading %s with flash attention off: %s", model, reason)


def _flash_attention_unusable_reason(
    device: torch.device, dtype: torch.dtype
) -> str | None:
    if device.type != "cuda":
        return f"the device is {device.type}, and flash attention runs only on CUDA"
    if dtype not in (torch.float16, torch.bfloat16):
        return f"dtype is {dtype}, and flash attention needs float16 or bfloat16"
    if importlib.util.find_spec("flash_attn") is None:
        return "the flash_attn package is not installed"
    return None


def _has_task_encode(network: Any) -> bool:
    encode = getattr(network, "encode", None)
    if not callable(encode):
        return False
    try:
        parameters = inspect.signature(encode).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(
        parameter.name == "task" or parameter.kind is inspect.Parameter.VAR_KEYWORD
        for parameter in parameters
    )


def _token_limit(tokenizer: Any) -> int | None:
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < _NO_TOKEN_LIMIT:
        return limit
    return None


def _to_float32_array(output: Any) -> np.ndarray:
    if isinstance(output, torch.Tensor):
        return output.detach().float().cpu().numpy()
    if (
        isinstance(output, (list, tuple))
        and output
        and isinstance(output[0], torch.Tensor)
    ):
        return torch.stack(list(output)).detach().float().cpu().numpy()
    return np.asarray(output, dtype=np.float32)


def _check_local_path(model: str) -> None:
    # A missing directory would otherwise be read as a hub repo id, and the
    # hub client's "Repo id must be in the form ..." would hide the typo.
    looks_local = os.path.isabs(model) or model.startswith(("./", "../", "~"))
    if looks_local and not os.path.isdir(os.path.expanduser(model)):
        raise EmbeddingError(
            f"model directory {model!r} does not exist; pass model= an existing "
            "local model directory or a hub repo id such as "
            "'jinaai/jina-embeddings-v3'"
        )


def _loading(part: str, model: str, load: Any, **kwargs: Any) -> Any:
    try:
        return load(model, **kwargs)
    except (OSError, ValueError) as error:
        cause = str(error).strip().rstrip(".")
        raise EmbeddingError(
            f"failed to load the {part} of model {model!r}: {cause}. Pass model= a "
            "local model directory or a hub repo id that is reachable or in the "
            "Hugging Face cache. Models whose code lives in their repository also "
            "need trust_remote_code=True."
        ) from error
