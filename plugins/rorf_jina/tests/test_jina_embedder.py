"""JinaEmbedder on tiny local models: pooling, grouping, truncation, loading."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import HIDDEN_SIZE, TASKS, TOKEN_LIMIT, sentence
from rorf_core import EmbeddingError, InvalidInputError
from transformers import AutoTokenizer, BertModel

from rorf_jina import JinaEmbedder
from rorf_jina._transformers import mean_pool

TRUNCATION_LOGGER = "rorf_jina.embedder"
LOADING_LOGGER = "rorf_jina._transformers"


def hand_mean_pooling(model_dir: Path, text: str) -> np.ndarray:
    """Embed one text with no padding and average its token states by hand."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = BertModel.from_pretrained(model_dir, dtype=torch.float32).eval()
    inputs = tokenizer([text], return_tensors="pt")
    with torch.no_grad():
        hidden = model(**inputs).last_hidden_state[0]
    return hidden.sum(dim=0).numpy() / hidden.shape[0]


def test_mean_pooling_matches_hand_computation(bert_dir: Path) -> None:
    texts = [sentence(1), sentence(9, start=3), sentence(4, start=7)]
    embedder = JinaEmbedder(bert_dir, max_length=TOKEN_LIMIT, device="cpu")

    vectors = embedder.embed(texts)

    assert vectors.dtype == np.float32
    assert vectors.shape == (3, HIDDEN_SIZE)
    for row, text in enumerate(texts):
        np.testing.assert_allclose(
            vectors[row], hand_mean_pooling(bert_dir, text), rtol=1e-5, atol=1e-5
        )


def test_mean_pool_skips_padding() -> None:
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])

    pooled = mean_pool(hidden, mask)

    assert pooled.tolist() == [[2.0, 3.0]]


def test_order_kept_under_length_grouping(bert_dir: Path) -> None:
    lengths = [2, 12, 1, 7, 3, 12, 5]
    texts = [sentence(length, start=index) for index, length in enumerate(lengths)]
    embedder = JinaEmbedder(bert_dir, max_length=TOKEN_LIMIT, batch_size=2)

    together = embedder.embed(texts)
    one_by_one = np.stack([embedder.embed([text])[0] for text in texts])

    np.testing.assert_allclose(together, one_by_one, rtol=1e-5, atol=1e-5)


def test_batches_grouped_by_length(remote_code_dir: Path) -> None:
    lengths = [2, 12, 1, 7, 3, 11]
    texts = [sentence(length, start=index) for index, length in enumerate(lengths)]
    embedder = JinaEmbedder(remote_code_dir, max_length=TOKEN_LIMIT, batch_size=2)

    vectors = embedder.embed(texts)

    calls = embedder._load().model.encode_calls
    batches = [[len(text.split()) for text in call["texts"]] for call in calls]
    assert batches == [[12, 11], [7, 3], [2, 1]]
    assert [call["batch_size"] for call in calls] == [2, 2, 2]
    for row, text in enumerate(texts):
        np.testing.assert_allclose(
            vectors[row], embedder.embed([text])[0], rtol=1e-5, atol=1e-5
        )


def test_encode_receives_task(remote_code_dir: Path) -> None:
    texts = [sentence(3), sentence(6, start=2)]
    by_task = {}
    for task in TASKS:
        embedder = JinaEmbedder(remote_code_dir, task=task, max_length=20)
        by_task[task] = embedder.embed(texts)
        calls = embedder._load().model.encode_calls
        assert [call["task"] for call in calls] == [task]
        assert [call["max_length"] for call in calls] == [20]

    # The tiny model shifts its vectors by the task's position plus one.
    shift = by_task["text-matching"] - by_task["classification"]
    np.testing.assert_allclose(shift, 1.0, rtol=0, atol=1e-5)


def test_remote_code_model_class_loaded(remote_code_dir: Path) -> None:
    embedder = JinaEmbedder(remote_code_dir, max_length=TOKEN_LIMIT)

    model = embedder._load().model

    assert type(model).__name__ == "TinyJinaModel"
    assert type(model).__module__.startswith("transformers_modules.")


def test_unknown_task_rejected(remote_code_dir: Path) -> None:
    embedder = JinaEmbedder(remote_code_dir, task="summarisation", max_length=16)

    with pytest.raises(ValueError, match="task='summarisation'") as caught:
        embedder.embed([sentence(2)])

    assert "classification, text-matching" in str(caught.value)


def test_task_none_reaches_encode(remote_code_dir: Path) -> None:
    embedder = JinaEmbedder(remote_code_dir, task=None, max_length=16)

    embedder.embed([sentence(2)])

    assert embedder._load().model.encode_calls[0]["task"] is None


def test_truncation_warns_once_per_batch(
    bert_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    max_length = 6
    long_texts = [sentence(10, start=index) for index in range(4)]
    texts = [long_texts[0], sentence(2), long_texts[1], long_texts[2], sentence(3)]
    texts.append(long_texts[3])
    embedder = JinaEmbedder(bert_dir, max_length=max_length, batch_size=2)

    with caplog.at_level(logging.WARNING, logger=TRUNCATION_LOGGER):
        vectors = embedder.embed(texts)

    warnings = [r for r in caplog.records if r.name == TRUNCATION_LOGGER]
    # Sorted longest first, the four long texts fill the first two batches.
    assert len(warnings) == 2
    assert all("max_length=6" in record.getMessage() for record in warnings)
    assert "2 of 2 texts" in warnings[0].getMessage()
    # Two of the six tokens are [CLS] and [SEP], so four words remain.
    first_words = " ".join(long_texts[0].split()[: max_length - 2])
    np.testing.assert_allclose(
        vectors[0], embedder.embed([first_words])[0], rtol=1e-5, atol=1e-5
    )


def test_no_warning_when_texts_fit(
    bert_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    embedder = JinaEmbedder(bert_dir, max_length=6)

    with caplog.at_level(logging.WARNING, logger=TRUNCATION_LOGGER):
        embedder.embed([sentence(4), sentence(1)])

    assert [r for r in caplog.records if r.name == TRUNCATION_LOGGER] == []


def test_truncate_false_rejects_with_index(bert_dir: Path) -> None:
    texts = [sentence(2), sentence(3), sentence(9), sentence(1)]
    embedder = JinaEmbedder(bert_dir, max_length=6, truncate=False, batch_size=2)

    with pytest.raises(InvalidInputError) as caught:
        embedder.embed(texts)

    assert caught.value.index == 2
    assert "11 tokens" in str(caught.value)
    assert "max_length=6" in str(caught.value)


def test_truncate_false_rejects_single_text(bert_dir: Path) -> None:
    embedder = JinaEmbedder(bert_dir, max_length=6, truncate=False)

    with pytest.raises(InvalidInputError) as caught:
        embedder.embed([sentence(7)])

    assert caught.value.index == 0


def test_flash_attention_off_logged_once(
    remote_code_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    embedder = JinaEmbedder(remote_code_dir, max_length=16, device="cpu")

    with caplog.at_level(logging.INFO, logger=LOADING_LOGGER):
        embedder.embed([sentence(2), sentence(5)])
        embedder.embed([sentence(3)])

    messages = [
        r.getMessage()
        for r in caplog.records
        if "flash attention off" in r.getMessage()
    ]
    assert len(messages) == 1
    assert "device is cpu" in messages[0]
    assert embedder._load().model.built_with_flash_attn is False


def test_flash_attention_untouched_without_config_field(
    bert_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    embedder = JinaEmbedder(bert_dir, max_length=16, device="cpu")

    with caplog.at_level(logging.INFO, logger=LOADING_LOGGER):
        embedder.embed([sentence(2)])

    assert not any("flash attention" in r.getMessage() for r in caplog.records)
    assert "use_flash_attn" not in embedder._load().model.config.to_dict()


def test_max_length_over_model_limit_rejected(bert_dir: Path) -> None:
    embedder = JinaEmbedder(bert_dir)

    with pytest.raises(ValueError, match="max_length=8192") as caught:
        embedder.embed([sentence(2)])

    assert f"max_length={TOKEN_LIMIT} or less" in str(caught.value)


def test_dtype_reaches_model(bert_dir: Path) -> None:
    embedder = JinaEmbedder(bert_dir, max_length=16, dtype="bfloat16")

    vectors = embedder.embed([sentence(3), sentence(5)])

    assert embedder._load().model.dtype == torch.bfloat16
    assert vectors.dtype == np.float32
    full = JinaEmbedder(bert_dir, max_length=16).embed([sentence(3), sentence(5)])
    np.testing.assert_allclose(vectors, full, rtol=0, atol=0.1)


def test_dimension_read_without_weights(bert_dir: Path) -> None:
    embedder = JinaEmbedder(bert_dir, max_length=16)

    assert embedder.dimension == HIDDEN_SIZE
    assert embedder.embed([]).shape == (0, HIDDEN_SIZE)
    assert embedder._loaded is None


def test_options_leave_out_runtime_settings(bert_dir: Path) -> None:
    embedder = JinaEmbedder(
        bert_dir, task=None, max_length=64, dtype="float16", revision="v1"
    )
    runtime_only = JinaEmbedder(
        bert_dir,
        task=None,
        max_length=64,
        dtype="float16",
        revision="v1",
        device="cpu",
        batch_size=3,
        truncate=False,
        trust_remote_code=False,
    )

    expected = {"task": None, "max_length": 64, "dtype": "float16", "revision": "v1"}
    assert embedder.options() == expected
    assert runtime_only.options() == expected
    assert embedder.model == str(bert_dir)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("dtype", "float64"),
        ("batch_size", 0),
        ("max_length", -1),
        ("max_length", True),
        ("truncate", "yes"),
        ("task", ""),
        ("device", 0),
    ],
)
def test_invalid_option_rejected(option: str, value: object) -> None:
    with pytest.raises(ValueError, match=option):
        JinaEmbedder(**{option: value})


def test_missing_model_dir_raises(tmp_path: Path) -> None:
    embedder = JinaEmbedder(tmp_path / "no-such-model")

    with pytest.raises(EmbeddingError, match="does not exist"):
        embedder.dimension  # noqa: B018 - the property loads the config


def test_remote_code_needs_trust(remote_code_dir: Path) -> None:
    embedder = JinaEmbedder(remote_code_dir, trust_remote_code=False)

    with pytest.raises(EmbeddingError, match="failed to load the config") as caught:
        embedder.dimension  # noqa: B018 - the property loads the config

    assert "contains custom code" in str(caught.value)


def test_unavailable_cuda_device_rejected(bert_dir: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    embedder = JinaEmbedder(bert_dir, max_length=16, device="cuda")

    with pytest.raises(ValueError, match="no CUDA device"):
        embedder.embed([sentence(2)])
