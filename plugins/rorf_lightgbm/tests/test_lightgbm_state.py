"""Invalid saved states must raise RouterFormatError, never crash the process."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from rorf_core.errors import RouterFormatError
from rorf_lightgbm.scorer import MODEL_ARRAY, LightGBMForestScorer

FAST = {"n_estimators": 5, "num_leaves": 6, "n_jobs": 1}


@pytest.fixture(scope="module")
def fitted() -> tuple[LightGBMForestScorer, np.ndarray]:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(240, 5)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int) + 2 * (X[:, 1] > 0)
    return LightGBMForestScorer(**FAST).fit(X, y), X


def model_text(scorer: LightGBMForestScorer) -> str:
    return scorer.to_state()[1][MODEL_ARRAY].tobytes().decode("ascii")


def state_with_text(
    scorer: LightGBMForestScorer, text: str | bytes
) -> tuple[dict, dict]:
    """Return the scorer's state with its model replaced and the digest updated."""
    data = text.encode("ascii") if isinstance(text, str) else text
    meta = dict(scorer.to_state()[0], model_sha256=hashlib.sha256(data).hexdigest())
    return meta, {MODEL_ARRAY: np.frombuffer(data, dtype=np.uint8).copy()}


def load(
    scorer: LightGBMForestScorer, meta: dict, arrays: dict
) -> LightGBMForestScorer:
    return LightGBMForestScorer.from_state(scorer.get_params(), meta, arrays)


def test_missing_array_raises(fitted):
    scorer, _ = fitted
    meta, _ = scorer.to_state()

    with pytest.raises(RouterFormatError, match="exactly the array 'lightgbm_model'"):
        load(scorer, meta, {})


def test_extra_array_raises(fitted):
    scorer, _ = fitted
    meta, arrays = scorer.to_state()
    arrays["leftover"] = np.zeros(3)

    with pytest.raises(
        RouterFormatError, match="got \\['leftover', 'lightgbm_model'\\]"
    ):
        load(scorer, meta, arrays)


@pytest.mark.parametrize(
    "convert",
    [
        lambda a: a.astype(np.int64),
        lambda a: a.reshape(1, -1),
        lambda a: a.tolist(),
    ],
    ids=["int64", "2-D", "list"],
)
def test_array_of_wrong_type_raises(fitted, convert):
    scorer, _ = fitted
    meta, arrays = scorer.to_state()

    with pytest.raises(RouterFormatError, match="must be 1-D uint8"):
        load(scorer, meta, {MODEL_ARRAY: convert(arrays[MODEL_ARRAY])})


def test_digest_mismatch_raises(fitted):
    scorer, _ = fitted
    meta, arrays = scorer.to_state()
    arrays[MODEL_ARRAY][-20] ^= 1

    with pytest.raises(RouterFormatError, match="SHA-256"):
        load(scorer, meta, arrays)


@pytest.mark.parametrize("key", ["classes", "n_features", "model_sha256"])
def test_missing_metadata_key_raises(fitted, key):
    scorer, _ = fitted
    meta, arrays = scorer.to_state()
    del meta[key]

    with pytest.raises(RouterFormatError, match="metadata is invalid"):
        load(scorer, meta, arrays)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("classes", [0, 2, 1, 3], "increasing"),
        ("classes", [], "non-empty"),
        ("n_features", "5", "positive integer"),
        ("n_features", 6, "max_feature_idx='4', expected '5'"),
        ("classes", [0, 1, 2], "num_class='4', expected '3'"),
    ],
)
def test_inconsistent_metadata_raises(fitted, key, value, message):
    scorer, _ = fitted
    meta, arrays = scorer.to_state()
    meta[key] = value

    with pytest.raises(RouterFormatError, match=message):
        load(scorer, meta, arrays)


def test_invalid_params_raise(fitted):
    scorer, _ = fitted
    meta, arrays = scorer.to_state()

    with pytest.raises(RouterFormatError, match="unknown parameters"):
        LightGBMForestScorer.from_state({"max_features": 1.0}, meta, arrays)
    with pytest.raises(RouterFormatError, match="num_leaves must be"):
        LightGBMForestScorer.from_state({"num_leaves": 0}, meta, arrays)


def test_single_class_state_with_model_raises(fitted):
    scorer, _ = fitted
    meta, arrays = scorer.to_state()
    meta["classes"] = [2]

    with pytest.raises(RouterFormatError, match="one class but a non-empty"):
        load(scorer, meta, arrays)


def edit_first(text: str, pattern: str, replacement: str) -> str:
    edited, count = re.subn(pattern, replacement, text, count=1, flags=re.MULTILINE)
    assert count == 1, f"pattern {pattern!r} not found in the model text"
    return edited


def fix_tree_sizes(text: str) -> str:
    """Rewrite the tree_sizes header to match the trees, as after a careful edit."""
    start = text.index("\nTree=0\n") + 1
    end = len(text) - len("end of trees\n")
    blocks = [
        block for block in re.split(r"(?m)(?=^Tree=\d+$)", text[start:end]) if block
    ]
    sizes = " ".join(str(len(block)) for block in blocks)
    header = re.sub(r"(?m)^tree_sizes=.*$", f"tree_sizes={sizes}", text[:start])
    return header + text[start:]


def leaves_of_first_tree(text: str) -> int:
    return int(re.search(r"^num_leaves=(\d+)$", text, flags=re.MULTILINE).group(1))


# (pattern, replacement, message): each edit keeps tree_sizes consistent, so
# that the check of the tree's own content is the one that fails.
CONTENT_EDITS = {
    "version": (r"^version=v4$", "version=v3", "version='v3'"),
    "header field": (r"^label_index=0$", "label_index=0\nbogus=1", "bogus"),
    "categorical": (r"^num_cat=0$", "num_cat=1", "num_cat=1"),
    "linear": (r"^is_linear=0$", "is_linear=1", "is_linear=1"),
    "split feature": (r"^split_feature=\d+", "split_feature=5", "feature outside"),
    "categorical split": (r"^decision_type=\d+", "decision_type=1", "decision_type"),
    "cycle": (r"^left_child=-?\d+", "left_child=0", "binary tree"),
    "overflow": (r"^leaf_value=\S+", "leaf_value=1e999", "non-finite"),
    "nan": (r"^leaf_value=\S+", "leaf_value=nan", "invalid leaf_value"),
    "empty field": (r"^shrinkage=1$", "shrinkage=", "not a single number"),
    "short list": (r"^threshold=\S+ ", "threshold=", "values in threshold"),
}


@pytest.mark.parametrize("edit", CONTENT_EDITS.values(), ids=CONTENT_EDITS.keys())
def test_edited_model_content_raises(fitted, edit):
    scorer, _ = fitted
    pattern, replacement, message = edit
    text = model_text(scorer)
    assert leaves_of_first_tree(text) > 2, "the first tree needs splits to edit"
    edited = fix_tree_sizes(edit_first(text, pattern, replacement))

    with pytest.raises(RouterFormatError, match=message):
        load(scorer, *state_with_text(scorer, edited))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t[: len(t) // 2], "does not end with the 'end of trees' line"),
        (lambda t: t.replace("\nTree=3\n", "\nTree=3\nextra=1\n"), "tree_sizes"),
        (lambda t: edit_first(t, r"^tree_sizes=\d+", "tree_sizes=9"), "tree_sizes"),
    ],
    ids=["truncated", "extra tree line", "tree size"],
)
def test_edited_model_layout_raises(fitted, edit, message):
    scorer, _ = fitted

    with pytest.raises(RouterFormatError, match=message):
        load(scorer, *state_with_text(scorer, edit(model_text(scorer))))


def test_non_ascii_model_raises(fitted):
    scorer, _ = fitted
    data = model_text(scorer).encode("ascii").replace(b"Tree=1", b"Tr\xe9e=1")

    with pytest.raises(RouterFormatError, match="not ASCII"):
        load(scorer, *state_with_text(scorer, data))


def test_text_with_trailing_sections_raises(fitted):
    scorer, _ = fitted
    full = scorer.booster_.model_to_string()

    with pytest.raises(RouterFormatError, match="end of trees"):
        load(scorer, *state_with_text(scorer, full))


FUZZ_SCRIPT = textwrap.dedent(
    """
    import hashlib, sys
    import numpy as np
    from rorf_core.errors import RouterFormatError
    from rorf_lightgbm.scorer import MODEL_ARRAY, LightGBMForestScorer

    rng = np.random.default_rng(int(sys.argv[1]))
    X = rng.normal(size=(200, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int) + 2 * (X[:, 1] > 0)
    scorer = LightGBMForestScorer(n_estimators=4, num_leaves=5, n_jobs=1).fit(X, y)
    meta, arrays = scorer.to_state()
    text = arrays[MODEL_ARRAY].tobytes()
    lines = text.split(b"\\n")
    alphabet = np.frombuffer(b"0123456789-=. \\nTrea", dtype=np.uint8)
    loaded = rejected = 0
    for trial in range(int(sys.argv[2])):
        kind = trial % 4
        if kind == 0:
            data = text[: rng.integers(1, len(text))]
        elif kind == 1:
            drop = rng.integers(len(lines))
            data = b"\\n".join(lines[:drop] + lines[drop + 1 :])
        elif kind == 2:
            copy = rng.integers(len(lines))
            data = b"\\n".join(lines[: copy + 1] + lines[copy:])
        else:
            mutable = np.frombuffer(text, dtype=np.uint8).copy()
            where = rng.integers(len(mutable), size=rng.integers(1, 4))
            mutable[where] = rng.choice(alphabet, size=where.size)
            data = mutable.tobytes()
        state = dict(meta, model_sha256=hashlib.sha256(data).hexdigest())
        array = np.frombuffer(data, dtype=np.uint8).copy()
        try:
            restored = LightGBMForestScorer.from_state(
                scorer.get_params(), state, {MODEL_ARRAY: array}
            )
        except RouterFormatError:
            rejected += 1
            continue
        proba = restored.predict_proba(X)
        assert proba.shape == (len(X), 4), (trial, proba.shape)
        loaded += 1
    print(f"loaded={loaded} rejected={rejected}")
    """
)


def test_damaged_models_never_crash():
    # A crash inside LightGBM would end pytest itself, so the loads run in a
    # child process; any exception other than RouterFormatError fails it too.
    result = subprocess.run(
        [sys.executable, "-c", FUZZ_SCRIPT, "3", "200"],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    counts = dict(part.split("=") for part in result.stdout.split())
    assert int(counts["rejected"]) > 100
    assert int(counts["loaded"]) + int(counts["rejected"]) == 200
