"""Strict check of a LightGBM text model before LightGBM parses it.

LightGBM's own loader (``lightgbm.Booster(model_str=...)``) trusts its input.
In LightGBM 4.x it reads each tree at the byte offset that the ``tree_sizes``
header gives, without a bounds check, scans for ``=`` past the end of a line,
and prediction follows child and feature indices as written. A failed check
inside its parallel tree loop ends the whole process (seen with LightGBM
4.7.0 on a truncated model). A router file that was cut short or edited could
therefore crash or corrupt the process that loads it, so
:func:`check_model_text` accepts only the layout that
:func:`model_text_for_state` writes: a numeric multiclass random forest with
every count, index and number checked.
"""

from __future__ import annotations

import re

import numpy as np

from rorf_core.errors import RouterFormatError

__all__ = ["END_OF_TREES", "check_model_text", "model_text_for_state"]

END_OF_TREES = "end of trees\n"

# The largest num_leaves that LightGBM accepts as a training parameter.
MAX_LEAVES = 131072

# At most 10 digits, so that numpy can parse every integer into int64.
_INT = r"-?\d{1,10}"
_FLOAT = r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_INT_LIST = re.compile(rf"(?:{_INT}(?: {_INT})*)?")
_FLOAT_LIST = re.compile(rf"(?:{_FLOAT}(?: {_FLOAT})*)?")
_FEATURE_INFO = re.compile(rf"none|\[{_FLOAT}:{_FLOAT}\]")
_FEATURE_NAME = re.compile(r"[^\s=]+")

# Tree fields in the order LightGBM writes them, with the length of each list
# as a function of the number of leaves ("one" marks a single number).
_TREE_FIELDS = {
    "num_leaves": "one",
    "num_cat": "one",
    "split_feature": "internal",
    "split_gain": "internal",
    "threshold": "internal",
    "decision_type": "internal",
    "left_child": "internal",
    "right_child": "internal",
    "leaf_value": "leaf",
    "leaf_weight": "leaf",
    "leaf_count": "leaf",
    "internal_value": "internal",
    "internal_weight": "internal",
    "internal_count": "internal",
    "is_linear": "one",
    "shrinkage": "one",
}
_INT_FIELDS = {
    "num_leaves",
    "num_cat",
    "split_feature",
    "decision_type",
    "left_child",
    "right_child",
    "leaf_count",
    "internal_count",
    "is_linear",
}

# decision_type bits: 1 = categorical split, 2 = missing values go left,
# 4 and 8 = missing-value type (0 none, 1 zero, 2 NaN; 3 is undefined).
_CATEGORICAL_BIT = 1
_MISSING_TYPE_SHIFT = 2


def model_text_for_state(text: str) -> str:
    """Return ``text`` cut after its trees, the part that a saved router stores.

    The cut drops feature importances and the training parameters, which do
    not change predictions, so that the loader has less text to check.
    """
    end = text.find(END_OF_TREES)
    if end < 0:
        raise ValueError("LightGBM model text has no 'end of trees' line")
    return text[: end + len(END_OF_TREES)]


def check_model_text(text: str, *, n_classes: int, n_features: int) -> int:
    """Check that ``text`` is a well-formed random forest and return its tree count.

    :param text: model text as :func:`model_text_for_state` returns it.
    :param n_classes: expected number of classes (at least 2).
    :param n_features: expected number of input features.
    :raises RouterFormatError: the first problem found, with where it is.
    """
    if not text.isascii() or "\x00" in text or "\r" in text:
        _fail("contains non-ASCII, NUL or carriage-return characters")
    if not text.endswith("\n" + END_OF_TREES):
        _fail("does not end with the 'end of trees' line")
    trees_start = text.find("\nTree=") + 1
    if trees_start == 0:
        _fail("contains no 'Tree=' line")
    header = _parse_header(text[:trees_start])
    tree_sizes = _check_header(header, n_classes, n_features)
    _check_trees(text, trees_start, tree_sizes, n_features)
    return len(tree_sizes)


def _fail(problem: str) -> None:
    raise RouterFormatError(
        f"the saved LightGBM model {problem}; the router file is damaged or "
        "was not written by rorf-lightgbm: train and save the router again."
    )


def _parse_header(header: str) -> dict[str, str]:
    lines = header.split("\n")
    if lines[0] != "tree":
        _fail(f"starts with {lines[0][:40]!r} instead of 'tree'")
    values: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        key, sep, value = line.partition("=")
        if key == "average_output" and not sep:
            value = ""
        elif not sep or "=" in value:
            _fail(f"has an invalid header line {line[:40]!r}")
        if key in values:
            _fail(f"repeats the header field {key!r}")
        values[key] = value
    return values


def _check_header(header: dict[str, str], n_classes: int, n_features: int) -> list[int]:
    expected = {
        "version": "v4",
        "num_class": str(n_classes),
        "num_tree_per_iteration": str(n_classes),
        "label_index": "0",
        "max_feature_idx": str(n_features - 1),
        "objective": f"multiclass num_class:{n_classes}",
        "average_output": "",
    }
    allowed = {*expected, "feature_names", "feature_infos", "tree_sizes"}
    unexpected = sorted(set(header) - allowed)
    if unexpected:
        _fail(f"has unexpected header fields {unexpected}")
    for key, value in expected.items():
        if header.get(key) != value:
            _fail(f"has {key}={header.get(key)!r}, expected {value!r}")
    for key, pattern in (
        ("feature_names", _FEATURE_NAME),
        ("feature_infos", _FEATURE_INFO),
    ):
        tokens = header.get(key, "").split(" ")
        if len(tokens) != n_features:
            _fail(f"lists {len(tokens)} {key}, expected {n_features}")
        if not all(pattern.fullmatch(token) for token in tokens):
            _fail(f"has an invalid entry in {key}")
    sizes = header.get("tree_sizes", "")
    if not re.fullmatch(r"\d+(?: \d+)*", sizes):
        _fail("has a missing or invalid tree_sizes field")
    tree_sizes = [int(size) for size in sizes.split(" ")]
    if len(tree_sizes) % n_classes:
        _fail(f"has {len(tree_sizes)} trees, not a multiple of {n_classes} classes")
    return tree_sizes


def _check_trees(text: str, start: int, tree_sizes: list[int], n_features: int) -> None:
    trees_end = start + sum(tree_sizes)
    if trees_end != len(text) - len(END_OF_TREES):
        _fail("has tree_sizes that do not match the length of its trees")
    offset = start
    for index, size in enumerate(tree_sizes):
        _check_tree(text[offset : offset + size], index, n_features)
        offset += size


def _check_tree(block: str, index: int, n_features: int) -> None:
    title = f"Tree={index}\n"
    if not block.startswith(title):
        _fail(f"has no 'Tree={index}' line where tree {index} should start")
    body, sep, rest = block[len(title) :].partition("\n\n")
    if not sep or rest.strip("\n"):
        _fail(f"has tree {index} not ending in one blank line")
    fields = _parse_tree_fields(body, index)
    for key, kind in _TREE_FIELDS.items():
        if kind == "one" and fields[key].size != 1:
            _fail(f"has tree {index} whose {key} is not a single number")
    n_leaves = int(fields["num_leaves"][0])
    if not 1 <= n_leaves <= MAX_LEAVES:
        _fail(f"has tree {index} with num_leaves={n_leaves}")
    for key in ("num_cat", "is_linear"):
        if int(fields[key][0]) != 0:
            _fail(f"has tree {index} with {key}={int(fields[key][0])}; expected 0")
    _check_lengths(fields, n_leaves, index)
    if not all(np.isfinite(values).all() for values in fields.values()):
        _fail(f"has a non-finite number in tree {index}")
    for key in ("leaf_count", "internal_count"):
        if fields[key].size and not 0 <= fields[key].min() <= fields[key].max() < 2**31:
            _fail(f"has a {key} outside 0..2**31-1 in tree {index}")
    if n_leaves > 1:
        _check_splits(fields, n_leaves, n_features, index)


def _parse_tree_fields(body: str, index: int) -> dict[str, np.ndarray]:
    fields: dict[str, np.ndarray] = {}
    lines = body.split("\n")
    if [line.partition("=")[0] for line in lines] != list(_TREE_FIELDS):
        _fail(f"has tree {index} with missing, extra or reordered fields")
    for line in lines:
        key, _, value = line.partition("=")
        is_int = key in _INT_FIELDS
        pattern = _INT_LIST if is_int else _FLOAT_LIST
        if not pattern.fullmatch(value):
            _fail(f"has an invalid {key} list in tree {index}")
        tokens = value.split(" ") if value else []
        fields[key] = np.array(tokens, dtype=np.int64 if is_int else np.float64)
    return fields


def _check_lengths(fields: dict[str, np.ndarray], n_leaves: int, index: int) -> None:
    lengths = {"one": 1, "internal": n_leaves - 1, "leaf": n_leaves}
    for key, kind in _TREE_FIELDS.items():
        # LightGBM writes an empty leaf_weight for a tree with a single leaf.
        if key == "leaf_weight" and n_leaves == 1 and fields[key].size == 0:
            continue
        if fields[key].size != lengths[kind]:
            _fail(
                f"has {fields[key].size} values in {key} of tree {index}, "
                f"expected {lengths[kind]}"
            )


def _check_splits(
    fields: dict[str, np.ndarray], n_leaves: int, n_features: int, index: int
) -> None:
    features = fields["split_feature"]
    if features.min() < 0 or features.max() >= n_features:
        _fail(f"has a split on a feature outside 0..{n_features - 1} in tree {index}")
    decision = fields["decision_type"]
    missing_type = (decision >> _MISSING_TYPE_SHIFT) & 3
    if (
        decision.min() < 0
        or decision.max() > 15
        or (decision & _CATEGORICAL_BIT).any()
        or (missing_type == 3).any()
    ):
        _fail(f"has an unsupported decision_type in tree {index}")
    _check_topology(fields["left_child"], fields["right_child"], n_leaves, index)


def _check_topology(
    left: np.ndarray, right: np.ndarray, n_leaves: int, index: int
) -> None:
    """Check that the child lists form one binary tree rooted at node 0.

    Non-negative children are internal nodes and ``~j`` is leaf ``j``. LightGBM
    numbers internal nodes in split order, so a child always has a larger
    number than its parent; with every node but the root used exactly once as
    a child, following parents from any node ends at the root, so there is no
    cycle and every leaf is reachable.
    """
    children = np.concatenate([left, right])
    parents = np.concatenate([np.arange(left.size)] * 2)
    internal = children >= 0
    expected_internal = np.arange(1, n_leaves - 1)
    expected_leaves = np.arange(n_leaves)
    if (
        not np.array_equal(np.sort(children[internal]), expected_internal)
        or not np.array_equal(np.sort(~children[~internal]), expected_leaves)
        or (children[internal] <= parents[internal]).any()
    ):
        _fail(f"has child lists in tree {index} that do not form a binary tree")
