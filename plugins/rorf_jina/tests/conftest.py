"""Tiny local models for the jina plugin's tests, built offline in temporary dirs.

The tests never reach the hub. HF_HUB_OFFLINE is set before anything
imports huggingface_hub, and every model is built here from random weights
and a word-level tokenizer made with the ``tokenizers`` library.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
import textwrap
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
# transformers copies a model's own code into this folder before importing
# it. A fresh one, removed at exit, keeps the tests from writing under ~/.cache.
if "HF_MODULES_CACHE" not in os.environ:
    _modules_cache = tempfile.mkdtemp(prefix="rorf-jina-hf-")
    atexit.register(shutil.rmtree, _modules_cache, ignore_errors=True)
    os.environ["HF_MODULES_CACHE"] = _modules_cache

WORDS = (
    "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi "
    "omicron pi rho sigma tau upsilon phi chi psi omega"
).split()
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")
#: The tiny tokenizer's model_max_length and the models' position limit.
TOKEN_LIMIT = 32
HIDDEN_SIZE = 16
TASKS = ("classification", "text-matching")

CONFIG_CODE = """
from transformers import BertConfig


class TinyJinaConfig(BertConfig):
    model_type = "tiny-jina"

    def __init__(self, use_flash_attn=True, lora_adaptations=None, **kwargs):
        super().__init__(**kwargs)
        self.use_flash_attn = use_flash_attn
        self.lora_adaptations = list(lora_adaptations or [])
"""

MODELING_CODE = '''
import torch
from transformers import AutoTokenizer, BertModel

from .configuration_tiny_jina import TinyJinaConfig


class TinyJinaModel(BertModel):
    """A BERT with a jina-style encode(); it records every call it gets."""

    config_class = TinyJinaConfig

    def __init__(self, config, add_pooling_layer=True):
        super().__init__(config, add_pooling_layer=add_pooling_layer)
        self.built_with_flash_attn = config.use_flash_attn
        self.encode_calls = []
        self._tokenizer = None

    def encode(self, texts, task=None, max_length=8192, batch_size=32):
        self.encode_calls.append(
            {"texts": list(texts), "task": task, "max_length": max_length,
             "batch_size": batch_size}
        )
        if self._tokenizer is None:
            self._tokenizer = AutoTokenizer.from_pretrained(
                self.name_or_path, trust_remote_code=True
            )
        inputs = self._tokenizer(
            texts, padding=True, truncation=True, max_length=max_length,
            return_tensors="pt",
        )
        hidden = self(**inputs).last_hidden_state
        mask = inputs["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        # Each task shifts the vectors by its position plus one, so a test
        # can read from the output which task arrived.
        shift = self.config.lora_adaptations.index(task) + 1 if task else 0
        return (pooled + shift).numpy()
'''


def sentence(length: int, start: int = 0) -> str:
    """Return ``length`` vocabulary words, starting at word ``start``."""
    return " ".join(WORDS[(start + i) % len(WORDS)] for i in range(length))


def build_tokenizer(directory: Path) -> None:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: index for index, token in enumerate((*SPECIAL_TOKENS, *WORDS))}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        model_max_length=TOKEN_LIMIT,
    )
    tokenizer.save_pretrained(directory)


def bert_config_values() -> dict[str, object]:
    return {
        "vocab_size": len(SPECIAL_TOKENS) + len(WORDS),
        "hidden_size": HIDDEN_SIZE,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 32,
        "max_position_embeddings": TOKEN_LIMIT,
        # Dropout would not change eval-mode output, but zero makes that plain.
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
    }


def build_bert(directory: Path, seed: int) -> None:
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    BertModel(BertConfig(**bert_config_values())).save_pretrained(directory)
    build_tokenizer(directory)


def build_remote_code_model(directory: Path) -> None:
    """Build a model directory whose class is defined by code in it, as jina's is."""
    build_bert(directory, seed=1)
    (directory / "configuration_tiny_jina.py").write_text(textwrap.dedent(CONFIG_CODE))
    (directory / "modeling_tiny_jina.py").write_text(textwrap.dedent(MODELING_CODE))
    config = {
        **bert_config_values(),
        "model_type": "tiny-jina",
        "architectures": ["TinyJinaModel"],
        "auto_map": {
            "AutoConfig": "configuration_tiny_jina.TinyJinaConfig",
            "AutoModel": "modeling_tiny_jina.TinyJinaModel",
        },
        "use_flash_attn": True,
        "lora_adaptations": list(TASKS),
    }
    (directory / "config.json").write_text(json.dumps(config, indent=2))


@pytest.fixture(scope="session")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plain BERT encoder with random weights and no encode() method."""
    directory = tmp_path_factory.mktemp("tiny_bert")
    build_bert(directory, seed=0)
    return directory


@pytest.fixture(scope="session")
def remote_code_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model whose config.json maps AutoModel to a modeling file in the directory."""
    # transformers names the imported module after the directory, so one
    # session-wide directory avoids two different modules under one name.
    directory = tmp_path_factory.mktemp("tiny_jina_remote")
    build_remote_code_model(directory)
    return directory
