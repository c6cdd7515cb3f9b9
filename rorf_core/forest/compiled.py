"""A fitted scikit-learn forest compiled into flat arrays, evaluated without sklearn.

``CompiledForest.from_sklearn(forest)`` copies the trees of a fitted
``RandomForestClassifier``, ``ExtraTreesClassifier`` or decision tree into a
few flat arrays. ``predict_proba`` walks every tree in a numba kernel (or a
vectorised numpy one) and returns the estimator's own ``predict_proba`` to
within 2**-25, the float32 rounding of the leaf values.

Layout, for ``T`` trees with ``N`` internal nodes and ``L`` leaves in all
(``L == N + T``, since every tree is a full binary tree):

- ``feature`` ``(N,)`` uint16 (int32 past 65,536 features): split feature.
- ``threshold`` ``(N,)`` float32: split threshold, rounded down (see
  :func:`round_down_to_float32`).
- ``missing_go_to_left`` ``(N,)`` bool: where a NaN feature value goes.
- ``children`` ``(N, 2)`` int16 (int32 for trees of more than 32,768 leaves):
  the left and right child as a tree-local code. A code ``c >= 0`` is internal
  node ``c`` of the same tree and ``c < 0`` is its leaf ``-c - 1``.
- ``node_offset`` and ``leaf_offset`` ``(T + 1,)`` int32 (int64 past 2**31):
  where each tree's internal nodes and leaves start. A tree's root is its
  internal node 0, or its only leaf when it has no internal node.
- ``leaf_value`` ``(L, n_classes)`` float32: the class probabilities of each
  leaf. Internal nodes store none.
- ``n_features`` 0-d int64.

A child always has a larger local index than its parent, as in sklearn's own
node numbering. :meth:`CompiledForest.from_arrays` checks that rule, every
index range and that each node has one parent, so a corrupt or hostile file
cannot make the kernels, which skip bounds checks, read outside the arrays or
loop forever.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

from rorf_core.errors import RouterFormatError

try:
    import numba
except ImportError as error:  # numba is a core dependency, so this is rare
    numba = None
    _NUMBA_IMPORT_ERROR: ImportError | None = error
else:
    _NUMBA_IMPORT_ERROR = None

__all__ = ["KERNEL_ENV_VAR", "CompiledForest", "round_down_to_float32"]

logger = logging.getLogger(__name__)

#: Environment variable that picks the kernel: ``auto``, ``numba`` or ``numpy``.
KERNEL_ENV_VAR = "RORF_FOREST_KERNEL"
_KERNEL_CHOICES = ("auto", "numba", "numpy")

# The stored arrays, in the order the kernels take them (n_features excepted).
_ARRAY_NAMES = (
    "feature",
    "threshold",
    "missing_go_to_left",
    "children",
    "node_offset",
    "leaf_offset",
    "leaf_value",
    "n_features",
)
_ALLOWED_DTYPES = {
    "feature": (np.uint16, np.int32),
    "threshold": (np.float32,),
    "missing_go_to_left": (np.bool_,),
    "children": (np.int16, np.int32),
    "node_offset": (np.int32, np.int64),
    "leaf_offset": (np.int32, np.int64),
    "leaf_value": (np.float32, np.float64),
    "n_features": (np.int32, np.int64),
}

# Kernel choice by batch size (numba). Below _BLOCK_MIN_ROWS rows, each row
# steps all trees together, and larger batches walk blocks of _BLOCK_ROWS
# rows tree by tree (the crossover measured with `benchmarks/bench_forest.py
# --sweep` on a RoRF forest, 2 cores). From _PARALLEL_MIN_ROWS rows the blocks
# run on numba's threads. That is about 15 ms of serial work for a RoRF
# forest, so waking a thread, which took milliseconds on a busy machine,
# costs little.
_BLOCK_MIN_ROWS = 8
_BLOCK_ROWS = 16
_PARALLEL_MIN_ROWS = 2048
# Rows per step of the numpy kernel; bounds its (rows * trees) work arrays.
_NUMPY_CHUNK_ROWS = 4096

_FLOAT32 = np.dtype(np.float32)


def round_down_to_float32(values: np.ndarray) -> np.ndarray:
    """Round float64 values to the largest float32 that is not above each value.

    sklearn casts inputs to float32 and tests ``x <= threshold`` against a
    float64 threshold ``t``. Let ``d`` be the largest float32 ``<= t``. For a
    float32 ``x``, ``x <= t`` is true exactly when ``x <= d``: if ``x <= t``, then
    ``x`` is a float32 no greater than ``t``, so ``x <= d``; and ``x <= d``
    gives ``x <= t`` because ``d <= t``. NaN fails both tests. Rounding to
    nearest instead would send an ``x`` between ``t`` and a rounded-up
    ``float32(t)`` to the left child, where sklearn sends it right.
    """
    values = np.asarray(values, dtype=np.float64)
    with np.errstate(over="ignore"):  # finite values past float32's range
        rounded = values.astype(np.float32)
    too_high = rounded.astype(np.float64) > values
    rounded[too_high] = np.nextafter(rounded[too_high], np.float32(-np.inf))
    return rounded


# Kernels: plain Python over arrays, compiled by numba below when it imports.
# Every tree walk is branch-free. Each step moves a walk at an internal node
# to a child and leaves a walk at a leaf in place, so the CPU never
# mispredicts a split and can overlap the walks of many trees (or rows). A
# tree of depth d takes exactly d steps. Every kernel adds a row's trees in
# tree order, so all of them return bit-identical results.


def _inspect_rows(X: np.ndarray) -> tuple[int, bool]:
    # Return the first row with an infinite value (-1 if none) and whether X
    # has a NaN. sklearn rejects infinite inputs, so the kernels do too, and
    # without NaN they skip the missing-value test, which costs a quarter of
    # the walk time.
    has_nan = False
    for row in range(X.shape[0]):
        infinite = False
        for column in range(X.shape[1]):
            value = X[row, column]
            infinite |= abs(value) == math.inf
            has_nan |= math.isnan(value)
        if infinite:
            return row, has_nan
    return -1, has_nan


def _step(
    X: np.ndarray,
    row: int,
    node: int,
    node_begin: int,
    feature: np.ndarray,
    threshold: np.ndarray,
    missing_go_to_left: np.ndarray,
    children: np.ndarray,
    check_nan: bool,
) -> int:
    # Return the child code that X[row] reaches from local node code `node`,
    # or `node` itself when it is a leaf code (< 0). Call it only for a tree
    # with at least one internal node, so that its root index is valid.
    i = node_begin + max(node, 0)
    value = X[row, feature[i]]
    go_left = value <= threshold[i]
    if check_nan:
        go_left |= math.isnan(value) & missing_go_to_left[i]
    child = np.int64(children[i, np.int64(not go_left)])
    return child if node >= 0 else node


def _add_leaf(out: np.ndarray, row: int, leaf: int, leaf_value: np.ndarray) -> None:
    for k in range(leaf_value.shape[1]):
        out[row, k] += leaf_value[leaf, k]


def _predict_rows(
    X: np.ndarray,
    feature: np.ndarray,
    threshold: np.ndarray,
    missing_go_to_left: np.ndarray,
    children: np.ndarray,
    node_offset: np.ndarray,
    leaf_offset: np.ndarray,
    leaf_value: np.ndarray,
    depth: np.ndarray,
    out: np.ndarray,
) -> int:
    # Fill out[row] with the mean leaf value over the trees, a row at a time,
    # stepping all trees of the row level by level. Return -1, or the first
    # row with an infinite value (out is then unset).
    bad_row, has_nan = _inspect_rows(X)
    if bad_row >= 0:
        return bad_row
    n_trees = node_offset.shape[0] - 1
    max_depth = 0
    for tree in range(n_trees):
        max_depth = max(max_depth, depth[tree])
    state = np.empty(n_trees, dtype=np.int64)  # the only scratch: 8 bytes a tree
    for row in range(X.shape[0]):
        for tree in range(n_trees):
            state[tree] = 0 if depth[tree] > 0 else -1
        for level in range(max_depth):
            for tree in range(n_trees):
                if level < depth[tree]:
                    state[tree] = _step(
                        X,
                        row,
                        state[tree],
                        node_offset[tree],
                        feature,
                        threshold,
                        missing_go_to_left,
                        children,
                        has_nan,
                    )
        out[row, :] = 0.0
        for tree in range(n_trees):
            _add_leaf(out, row, leaf_offset[tree] - state[tree] - 1, leaf_value)
        out[row, :] /= n_trees
    return -1


def _predict_block(
    X: np.ndarray,
    start: int,
    size: int,
    feature: np.ndarray,
    threshold: np.ndarray,
    missing_go_to_left: np.ndarray,
    children: np.ndarray,
    node_offset: np.ndarray,
    leaf_offset: np.ndarray,
    leaf_value: np.ndarray,
    depth: np.ndarray,
    check_nan: bool,
    out: np.ndarray,
) -> None:
    # Fill out[start:start + size] one tree at a time, so that the tree stays
    # in cache while every row of the block steps through it level by level.
    n_trees = node_offset.shape[0] - 1
    state = np.empty(size, dtype=np.int64)
    out[start : start + size, :] = 0.0
    for tree in range(n_trees):
        state[:] = 0 if depth[tree] > 0 else -1
        for _ in range(depth[tree]):
            for j in range(size):
                state[j] = _step(
                    X,
                    start + j,
                    state[j],
                    node_offset[tree],
                    feature,
                    threshold,
                    missing_go_to_left,
                    children,
                    check_nan,
                )
        for j in range(size):
            _add_leaf(out, start + j, leaf_offset[tree] - state[j] - 1, leaf_value)
    out[start : start + size, :] /= n_trees


def _predict_blocks_serial(
    X: np.ndarray,
    feature: np.ndarray,
    threshold: np.ndarray,
    missing_go_to_left: np.ndarray,
    children: np.ndarray,
    node_offset: np.ndarray,
    leaf_offset: np.ndarray,
    leaf_value: np.ndarray,
    depth: np.ndarray,
    out: np.ndarray,
) -> int:
    # The contract of _predict_rows, for batches: blocks of _BLOCK_ROWS rows.
    bad_row, has_nan = _inspect_rows(X)
    if bad_row >= 0:
        return bad_row
    n_rows = X.shape[0]
    for start in range(0, n_rows, _BLOCK_ROWS):
        _predict_block(
            X,
            start,
            min(_BLOCK_ROWS, n_rows - start),
            feature,
            threshold,
            missing_go_to_left,
            children,
            node_offset,
            leaf_offset,
            leaf_value,
            depth,
            has_nan,
            out,
        )
    return -1


def _predict_blocks_parallel(
    X: np.ndarray,
    feature: np.ndarray,
    threshold: np.ndarray,
    missing_go_to_left: np.ndarray,
    children: np.ndarray,
    node_offset: np.ndarray,
    leaf_offset: np.ndarray,
    leaf_value: np.ndarray,
    depth: np.ndarray,
    out: np.ndarray,
) -> int:
    # _predict_blocks_serial with the blocks spread over numba's threads. It
    # is a function of its own because numba's on-disk cache keys the
    # compilations of one function by signature, not by the parallel option,
    # so a parallel=True twin would load the parallel code for the serial one.
    bad_row, has_nan = _inspect_rows(X)
    if bad_row >= 0:
        return bad_row
    n_rows = X.shape[0]
    n_blocks = (n_rows + _BLOCK_ROWS - 1) // _BLOCK_ROWS
    for block in _prange(n_blocks):
        start = block * _BLOCK_ROWS
        _predict_block(
            X,
            start,
            min(_BLOCK_ROWS, n_rows - start),
            feature,
            threshold,
            missing_go_to_left,
            children,
            node_offset,
            leaf_offset,
            leaf_value,
            depth,
            has_nan,
            out,
        )
    return -1


# Problems reported by _scan_trees, turned into messages by _check_structure.
_CHILD_OUT_OF_RANGE = 1
_NODE_PARENTS = 2
_LEAF_PARENTS = 3


def _scan_trees(
    children: np.ndarray,
    node_offset: np.ndarray,
    leaf_offset: np.ndarray,
    depth: np.ndarray,
) -> tuple[int, int, int, int]:
    # Check every child code and that each node has exactly one parent, and
    # fill depth, in one pass over the nodes. Return (problem, tree, local
    # index, value), with problem 0 when the trees are sound. A node's parents
    # all precede it, so its parent count is final when the pass reaches it.
    node_parents = np.zeros(children.shape[0], dtype=np.int64)
    node_level = np.zeros(children.shape[0], dtype=np.int64)
    leaf_parents = np.zeros(leaf_offset[-1], dtype=np.int64)
    for tree in range(node_offset.shape[0] - 1):
        begin = node_offset[tree]
        size = node_offset[tree + 1] - begin
        leaf_begin = leaf_offset[tree]
        depth[tree] = 0
        if size == 0:
            continue  # a lone leaf, the root
        node_level[begin] = 1
        for local in range(size):
            i = begin + local
            if local > 0 and node_parents[i] != 1:
                return _NODE_PARENTS, tree, local, node_parents[i]
            for side in range(2):
                code = np.int64(children[i, side])
                if code >= 0:
                    if code <= local or code >= size:
                        return _CHILD_OUT_OF_RANGE, tree, local, code
                    node_parents[begin + code] += 1
                    node_level[begin + code] = node_level[i] + 1
                elif -code - 1 > size:  # a tree has size + 1 leaves
                    return _CHILD_OUT_OF_RANGE, tree, local, code
                else:
                    leaf_parents[leaf_begin - code - 1] += 1
                    depth[tree] = max(depth[tree], node_level[i])
        for leaf in range(size + 1):
            if leaf_parents[leaf_begin + leaf] != 1:
                return _LEAF_PARENTS, tree, leaf, leaf_parents[leaf_begin + leaf]
    return 0, 0, 0, 0


if numba is not None:
    _prange = numba.prange
    # cache=True writes the machine code beside this file (or under
    # NUMBA_CACHE_DIR), so a new process loads it instead of compiling.
    # fastmath stays off: it would let LLVM assume that no value is NaN, which
    # breaks the missing-value branch, and reorder the sums over trees.
    _jit = numba.njit(cache=True, fastmath=False, nogil=True)
    _inspect_rows = _jit(_inspect_rows)
    _step = _jit(_step)
    _add_leaf = _jit(_add_leaf)
    _predict_rows = _jit(_predict_rows)
    _predict_block = _jit(_predict_block)
    _predict_blocks_serial = _jit(_predict_blocks_serial)
    _predict_blocks_parallel = numba.njit(
        cache=True, fastmath=False, nogil=True, parallel=True
    )(_predict_blocks_parallel)
    _scan_trees = _jit(_scan_trees)
else:
    _prange = range

# numba 0.68's workqueue threading layer aborts the process when two threads
# launch parallel kernels at once, and its omp layer kills a forked child that
# launches one after the parent did (both seen with this module's tests). So
# one thread at a time runs the parallel kernel, and a forked child uses the
# serial kernels.
_parallel_lock = threading.Lock()
_parallel_used = False
_parallel_forbidden = False


def _forbid_parallel_after_fork() -> None:
    global _parallel_forbidden
    if _parallel_used:
        _parallel_forbidden = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forbid_parallel_after_fork)


def _predict_numba(
    arrays: tuple[np.ndarray, ...], X: np.ndarray, out: np.ndarray
) -> int:
    global _parallel_used
    n_rows = X.shape[0]
    if n_rows < _BLOCK_MIN_ROWS:
        return _predict_rows(X, *arrays, out)
    parallel = n_rows >= _PARALLEL_MIN_ROWS and not _parallel_forbidden
    if (
        parallel
        and numba.get_num_threads() > 1
        and _parallel_lock.acquire(blocking=False)
    ):
        try:
            _parallel_used = True
            return _predict_blocks_parallel(X, *arrays, out)
        finally:
            _parallel_lock.release()
    return _predict_blocks_serial(X, *arrays, out)


# The numpy kernel: no compiler, all (row, tree) walks advanced together.


def _numpy_kernel_args(arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    # Return (feature, threshold, missing_go_to_left, children, roots,
    # leaf_value) with forest-wide codes: a code c >= 0 is internal node c
    # of the node arrays and c < 0 is row -c - 1 of leaf_value. children is
    # flattened, so that child `side` of node c is children[2 * c + side].
    node_offset = arrays["node_offset"].astype(np.int64)
    leaf_offset = arrays["leaf_offset"].astype(np.int64)
    n_internal = np.diff(node_offset)
    tree_of_node = np.repeat(np.arange(n_internal.size), n_internal)
    local = arrays["children"].astype(np.int64)
    children = np.where(
        local >= 0,
        node_offset[tree_of_node][:, None] + local,
        local - leaf_offset[tree_of_node][:, None],
    )
    roots = np.where(n_internal > 0, node_offset[:-1], -leaf_offset[:-1] - 1)
    return (
        arrays["feature"].astype(np.int64),
        arrays["threshold"],
        arrays["missing_go_to_left"],
        children.ravel(),
        roots,
        arrays["leaf_value"],
    )


def _numpy_leaves(
    X: np.ndarray,
    feature: np.ndarray,
    threshold: np.ndarray,
    missing_go_to_left: np.ndarray,
    children: np.ndarray,
    roots: np.ndarray,
) -> np.ndarray:
    # Return the leaf_value row (rows, trees) that each row reaches in each
    # tree, advancing the unfinished walks one level per step.
    n_rows, n_features = X.shape
    n_trees = roots.shape[0]
    codes = np.tile(roots, n_rows)  # one walk per (row, tree), row-major
    walks = np.flatnonzero(codes >= 0)
    row_starts = walks // n_trees * n_features  # where each walk's row begins
    nodes = codes[walks]
    values_of = X.ravel()
    check_nan = bool(np.isnan(X).any())
    while walks.size:
        values = values_of[row_starts + feature[nodes]]
        go_right = ~(values <= threshold[nodes])
        if check_nan:
            go_right &= ~(np.isnan(values) & missing_go_to_left[nodes])
        nodes = children[2 * nodes + go_right]
        codes[walks] = nodes
        unfinished = nodes >= 0
        walks = walks[unfinished]
        row_starts = row_starts[unfinished]
        nodes = nodes[unfinished]
    return (-codes - 1).reshape(n_rows, n_trees)


def _predict_numpy(
    arrays: tuple[np.ndarray, ...], X: np.ndarray, out: np.ndarray
) -> int:
    infinite_rows = np.flatnonzero(np.isinf(X).any(axis=1))
    if infinite_rows.size:
        return int(infinite_rows[0])
    feature, threshold, missing_go_to_left, children, roots, leaf_value = arrays
    n_trees = roots.shape[0]
    for start in range(0, X.shape[0], _NUMPY_CHUNK_ROWS):
        stop = start + _NUMPY_CHUNK_ROWS
        leaves = _numpy_leaves(
            X[start:stop], feature, threshold, missing_go_to_left, children, roots
        )
        block = out[start:stop]
        block[:] = 0.0
        for tree in range(n_trees):  # in tree order, as the numba kernels add
            block += leaf_value[leaves[:, tree]]
    out /= n_trees
    return -1


# Conversion from scikit-learn.


def _fitted_trees(estimator: Any) -> tuple[list[Any], int, int, bool]:
    # Return the sklearn Tree objects, n_features, n_classes and whether the
    # estimator is a classifier. A regressor has one output column.
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        ExtraTreesRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
    from sklearn.utils.validation import check_is_fitted

    forests = (
        RandomForestClassifier,
        ExtraTreesClassifier,
        RandomForestRegressor,
        ExtraTreesRegressor,
    )
    if isinstance(estimator, forests):
        check_is_fitted(estimator)
        trees = [member.tree_ for member in estimator.estimators_]
    elif isinstance(estimator, (DecisionTreeClassifier, DecisionTreeRegressor)):
        check_is_fitted(estimator)
        trees = [estimator.tree_]
    else:
        raise TypeError(
            "CompiledForest.from_sklearn needs a fitted random forest, extra trees "
            "or decision tree (classifier or regressor), got "
            f"{type(estimator).__name__}."
        )
    if estimator.n_outputs_ != 1:
        raise ValueError(
            "CompiledForest supports single-output forests, but the "
            f"estimator was fitted on {estimator.n_outputs_} outputs; fit it "
            "on a 1-D target array."
        )
    is_classifier = hasattr(estimator, "classes_")
    n_classes = int(estimator.n_classes_) if is_classifier else 1
    return trees, int(estimator.n_features_in_), n_classes, is_classifier


def _compile_tree(
    tree: Any, n_classes: int, is_classifier: bool = True
) -> dict[str, np.ndarray]:
    # Split one sklearn Tree into internal-node arrays and leaf probabilities.
    left = tree.children_left
    right = tree.children_right
    is_leaf = left == -1  # sklearn's TREE_LEAF marker
    internal = np.flatnonzero(~is_leaf)
    leaves = np.flatnonzero(is_leaf)
    # sklearn node id -> local code: internal rank, or -(leaf rank) - 1.
    code = np.empty(tree.node_count, dtype=np.int64)
    code[internal] = np.arange(internal.size)
    code[leaves] = -1 - np.arange(leaves.size)
    missing = getattr(tree, "missing_go_to_left", None)  # sklearn >= 1.3
    if missing is None:
        missing = np.zeros(tree.node_count, dtype=bool)
    # The normalisation of DecisionTreeClassifier.predict_proba, in float64;
    # a regressor's leaf value is already the mean target.
    value = tree.value[leaves, 0, :n_classes].astype(np.float64)
    total = value.sum(axis=1, keepdims=True)
    total[total == 0.0] = 1.0
    if not is_classifier:
        total[:] = 1.0
    return {
        "feature": tree.feature[internal].astype(np.int64),
        "threshold": round_down_to_float32(tree.threshold[internal]),
        "missing_go_to_left": np.asarray(missing[internal], dtype=bool),
        "children": np.stack([code[left[internal]], code[right[internal]]], axis=1),
        "leaf_value": (value / total).astype(np.float32),
    }


def _concatenate_trees(
    parts: list[dict[str, np.ndarray]], n_features: int
) -> dict[str, np.ndarray]:
    # Join the per-tree arrays, each in the smallest dtype that fits it.
    n_internal = np.array([part["feature"].size for part in parts], dtype=np.int64)
    n_leaves = n_internal + 1
    offset_dtype = np.int32 if n_leaves.sum() < 2**31 else np.int64
    # Leaf codes go down to -n_leaves, so int16 fits trees of up to 2**15 leaves.
    children_dtype = np.int16 if n_leaves.max() <= 2**15 else np.int32
    feature_dtype = np.uint16 if n_features <= 2**16 else np.int32

    def joined(name: str) -> np.ndarray:
        return np.concatenate([part[name] for part in parts])

    return {
        "feature": joined("feature").astype(feature_dtype),
        "threshold": joined("threshold"),
        "missing_go_to_left": joined("missing_go_to_left"),
        "children": joined("children").reshape(-1, 2).astype(children_dtype),
        "node_offset": np.concatenate([[0], np.cumsum(n_internal)]).astype(
            offset_dtype
        ),
        "leaf_offset": np.concatenate([[0], np.cumsum(n_leaves)]).astype(offset_dtype),
        "leaf_value": joined("leaf_value"),
        "n_features": np.array(n_features, dtype=np.int64),
    }


# Validation of stored arrays.


def _invalid(name: str, reason: str) -> RouterFormatError:
    return RouterFormatError(
        f"forest array {name!r} is invalid: {reason}. The router file is "
        "corrupt or was not written by CompiledForest.to_arrays; convert the "
        "forest again."
    )


def _checked_dtypes(arrays: Mapping[str, Any]) -> dict[str, np.ndarray]:
    # Return owned, C-contiguous copies after checking the names and dtypes.
    if not isinstance(arrays, Mapping):
        raise RouterFormatError(
            "forest arrays must be a mapping of name to numpy array, got "
            f"{type(arrays).__name__}."
        )
    expected = ", ".join(_ARRAY_NAMES)
    for name in _ARRAY_NAMES:
        if name not in arrays:
            raise RouterFormatError(
                f"forest array {name!r} is missing; a compiled forest needs {expected}."
            )
    unknown = sorted(set(arrays) - set(_ARRAY_NAMES))
    if unknown:
        raise RouterFormatError(
            f"unexpected forest array {unknown[0]!r}; a compiled forest has "
            f"exactly {expected}."
        )
    checked = {}
    for name in _ARRAY_NAMES:
        array = arrays[name]
        if not isinstance(array, np.ndarray):
            raise _invalid(name, f"expected a numpy array, got {type(array).__name__}")
        allowed = [np.dtype(dtype) for dtype in _ALLOWED_DTYPES[name]]
        if array.dtype not in allowed:
            names = " or ".join(str(dtype) for dtype in allowed)
            raise _invalid(name, f"dtype is {array.dtype}, expected {names}")
        # The copy keeps later changes by the caller away from checked data,
        # and turns read-only or unaligned buffers into plain arrays, the one
        # layout the kernels are compiled for.
        checked[name] = np.array(array, order="C", copy=True)
    return checked


def _check_shapes(arrays: dict[str, np.ndarray]) -> None:
    n_features = arrays["n_features"]
    if n_features.ndim != 0:
        raise _invalid(
            "n_features", f"expected a 0-d array, got shape {n_features.shape}"
        )
    if int(n_features) < 1:
        raise _invalid("n_features", f"{int(n_features)} is not a positive count")
    if arrays["feature"].ndim != 1:
        raise _invalid("feature", f"expected 1-D, got shape {arrays['feature'].shape}")
    n_nodes = arrays["feature"].shape[0]
    node_shapes = {
        "threshold": (n_nodes,),
        "missing_go_to_left": (n_nodes,),
        "children": (n_nodes, 2),
    }
    for name, shape in node_shapes.items():
        if arrays[name].shape != shape:
            raise _invalid(
                name,
                f"shape is {arrays[name].shape}, expected {shape} to match the "
                f"{n_nodes} internal nodes of 'feature'",
            )
    for name in ("node_offset", "leaf_offset"):
        if arrays[name].ndim != 1 or arrays[name].shape[0] < 2:
            raise _invalid(
                name,
                f"expected 1-D with n_trees + 1 >= 2 entries, got shape "
                f"{arrays[name].shape}",
            )
    if arrays["leaf_offset"].shape != arrays["node_offset"].shape:
        raise _invalid("leaf_offset", "shape differs from that of 'node_offset'")
    leaf_value = arrays["leaf_value"]
    if leaf_value.ndim != 2 or leaf_value.shape[1] < 1:
        raise _invalid(
            "leaf_value",
            f"expected shape (n_leaves, n_classes), got {leaf_value.shape}",
        )


def _check_offsets(arrays: dict[str, np.ndarray]) -> None:
    node_offset = arrays["node_offset"].astype(np.int64)
    leaf_offset = arrays["leaf_offset"].astype(np.int64)
    n_nodes = arrays["feature"].shape[0]
    n_leaves = arrays["leaf_value"].shape[0]
    if node_offset[0] != 0 or np.any(np.diff(node_offset) < 0):
        raise _invalid("node_offset", "must start at 0 and never decrease")
    if node_offset[-1] != n_nodes:
        raise _invalid(
            "node_offset",
            f"ends at {node_offset[-1]}, but there are {n_nodes} internal nodes",
        )
    if leaf_offset[0] != 0 or np.any(np.diff(leaf_offset) != np.diff(node_offset) + 1):
        raise _invalid(
            "leaf_offset",
            "must start at 0 and give each tree one leaf more than it has "
            "internal nodes",
        )
    if leaf_offset[-1] != n_leaves:
        raise _invalid(
            "leaf_offset",
            f"ends at {leaf_offset[-1]}, but 'leaf_value' has {n_leaves} rows",
        )


def _check_splits(arrays: dict[str, np.ndarray]) -> None:
    n_features = int(arrays["n_features"])
    feature = arrays["feature"]
    if feature.size and (int(feature.min()) < 0 or int(feature.max()) >= n_features):
        raise _invalid(
            "feature",
            f"values must lie in [0, {n_features}), found "
            f"{int(feature.min())}..{int(feature.max())}",
        )
    if np.isnan(arrays["threshold"]).any():
        raise _invalid("threshold", "contains NaN")


def _check_leaf_values(arrays: dict[str, np.ndarray]) -> None:
    leaf_value = arrays["leaf_value"]
    if not np.isfinite(leaf_value).all():
        raise _invalid("leaf_value", "contains NaN or infinity")
    if leaf_value.size and (leaf_value.min() < 0.0 or leaf_value.max() > 1.0):
        raise _invalid("leaf_value", "probabilities must lie in [0, 1]")
    totals = leaf_value.sum(axis=1, dtype=np.float64)
    # A leaf with zero sample weight predicts all zeros, as in sklearn.
    if not np.all((np.abs(totals - 1.0) < 1e-4) | (totals == 0.0)):
        raise _invalid("leaf_value", "each row must sum to 1 (or be all zero)")


def _check_structure(arrays: dict[str, np.ndarray], use_numba: bool) -> np.ndarray:
    # Check the child codes and parent counts; return each tree's depth.
    depth = np.zeros(arrays["node_offset"].shape[0] - 1, dtype=np.int64)
    scan = _scan_trees if use_numba else _scan_trees_numpy
    problem, tree, index, value = scan(
        arrays["children"], arrays["node_offset"], arrays["leaf_offset"], depth
    )
    if problem == _CHILD_OUT_OF_RANGE:
        raise _invalid(
            "children",
            f"internal node {index} of tree {tree} has child code {value}, which "
            "is out of range or does not come after its parent",
        )
    if problem == _NODE_PARENTS:
        raise _invalid(
            "children", f"internal node {index} of tree {tree} has {value} parents"
        )
    if problem == _LEAF_PARENTS:
        raise _invalid("children", f"leaf {index} of tree {tree} has {value} parents")
    return depth


def _scan_trees_numpy(
    children: np.ndarray,
    node_offset: np.ndarray,
    leaf_offset: np.ndarray,
    depth: np.ndarray,
) -> tuple[int, int, int, int]:
    # _scan_trees, vectorised for use without numba. It may report a
    # different problem first when a forest has several.
    node_offset = node_offset.astype(np.int64)
    leaf_offset = leaf_offset.astype(np.int64)
    n_internal = np.diff(node_offset)
    tree_of_node = np.repeat(np.arange(n_internal.size), n_internal)
    node_begin = node_offset[tree_of_node][:, None]
    local = np.arange(tree_of_node.size)[:, None] - node_begin
    tree_size = n_internal[tree_of_node][:, None]
    children = children.astype(np.int64)
    is_internal = children >= 0

    valid = np.where(
        is_internal,
        (children > local) & (children < tree_size),
        -children - 1 <= tree_size,
    )
    if not valid.all():
        node, side = np.argwhere(~valid)[0]
        tree = int(tree_of_node[node])
        return _CHILD_OUT_OF_RANGE, tree, int(local[node, 0]), int(children[node, side])

    child_node = np.where(is_internal, node_begin + children, -1)
    child_leaf = (leaf_offset[tree_of_node][:, None] - children - 1)[~is_internal]
    has_split = n_internal > 0
    node_parents = np.bincount(child_node[is_internal], minlength=tree_of_node.size)
    leaf_parents = np.bincount(child_leaf, minlength=int(leaf_offset[-1]))
    # Roots need no parent; no child code can point at one, so count one.
    node_parents[node_offset[:-1][has_split]] += 1
    leaf_parents[leaf_offset[:-1][~has_split]] += 1

    for problem, parents, offset in (
        (_NODE_PARENTS, node_parents, node_offset),
        (_LEAF_PARENTS, leaf_parents, leaf_offset),
    ):
        wrong = np.flatnonzero(parents != 1)
        if wrong.size:
            index = int(wrong[0])
            tree = int(np.searchsorted(offset, index, side="right") - 1)
            return problem, tree, index - int(offset[tree]), int(parents[index])
    depth[:] = _tree_depths(child_node, node_offset, tree_of_node)
    return 0, 0, 0, 0


def _tree_depths(
    child_node: np.ndarray, node_offset: np.ndarray, tree_of_node: np.ndarray
) -> np.ndarray:
    # Return each tree's depth, the number of internal nodes on its longest
    # root-to-leaf path, visiting all trees one level per step. child_node
    # contains global internal-node indices, or -1 for a leaf.
    depth = np.zeros(node_offset.shape[0] - 1, dtype=np.int64)
    level_nodes = node_offset[:-1][np.diff(node_offset) > 0]
    level = 0
    while level_nodes.size:
        level += 1
        depth[tree_of_node[level_nodes]] = level
        next_nodes = child_node[level_nodes].ravel()
        level_nodes = next_nodes[next_nodes >= 0]
    return depth


def _validated_arrays(
    arrays: Mapping[str, Any], use_numba: bool
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    # Return owned copies of the arrays and each tree's depth.
    checked = _checked_dtypes(arrays)
    _check_shapes(checked)
    _check_offsets(checked)
    _check_splits(checked)
    _check_leaf_values(checked)
    return checked, _check_structure(checked, use_numba)


# The public class.

_numba_fallback_logged = False


def _resolve_kernel(kernel: str | None) -> str:
    global _numba_fallback_logged
    source = "kernel"
    if kernel is None:
        kernel = os.environ.get(KERNEL_ENV_VAR, "") or "auto"
        source = KERNEL_ENV_VAR
    if kernel not in _KERNEL_CHOICES:
        raise ValueError(
            f"{source}={kernel!r} is invalid; use one of {', '.join(_KERNEL_CHOICES)}."
        )
    if kernel == "numpy":
        return "numpy"
    if numba is None:
        if kernel == "numba":
            raise ImportError(
                f"{source}='numba' but numba failed to import "
                f"({_NUMBA_IMPORT_ERROR}); reinstall numba or use 'numpy'."
            ) from _NUMBA_IMPORT_ERROR
        if not _numba_fallback_logged:
            logger.warning(
                "numba failed to import (%s); forests use the slower numpy kernel",
                _NUMBA_IMPORT_ERROR,
            )
            _numba_fallback_logged = True
        return "numpy"
    return "numba"


class CompiledForest:
    """A fitted tree ensemble stored as flat arrays, with a fast ``predict_proba``.

    Build one with :meth:`from_sklearn` or :meth:`from_arrays`; the
    constructor takes the same mapping as :meth:`from_arrays`.

    ``kernel`` picks the evaluator: ``"numba"`` (compiled), ``"numpy"``
    (vectorised, no compiler) or ``"auto"`` (numba when it imports). When it
    is None, the ``RORF_FOREST_KERNEL`` environment variable decides, and
    ``auto`` applies when that is unset. Both kernels return bit-identical
    probabilities. ``max_depth`` is the depth of the deepest tree.
    """

    n_features: int
    n_classes: int
    n_trees: int
    max_depth: int
    kernel: str

    def __init__(
        self, arrays: Mapping[str, np.ndarray], *, kernel: str | None = None
    ) -> None:
        self.kernel = _resolve_kernel(kernel)
        checked, depth = _validated_arrays(arrays, use_numba=self.kernel == "numba")
        self.n_features = int(checked["n_features"])
        self.n_classes = int(checked["leaf_value"].shape[1])
        self.n_trees = int(checked["node_offset"].shape[0] - 1)
        self.max_depth = int(depth.max())
        self._arrays = checked
        # The kernels' arguments, built once to keep per-call work small.
        if self.kernel == "numba":
            self._kernel_args = (*(checked[name] for name in _ARRAY_NAMES[:-1]), depth)
            self._predict = _predict_numba
        else:
            self._kernel_args = _numpy_kernel_args(checked)
            self._predict = _predict_numpy
        logger.debug(
            "compiled forest: %d trees, %d internal nodes, %s kernel",
            self.n_trees,
            checked["feature"].size,
            self.kernel,
        )

    @classmethod
    def from_sklearn(
        cls, estimator: Any, *, kernel: str | None = None
    ) -> CompiledForest:
        """Compile a fitted sklearn forest or decision tree classifier.

        Accepts ``RandomForestClassifier``, ``ExtraTreesClassifier`` and
        ``DecisionTreeClassifier`` (``ExtraTreeClassifier`` included) fitted
        on one output, with any depth, leaf size, class weights or missing
        values. Raises TypeError for other estimators, ValueError for
        multi-output ones and sklearn's NotFittedError before ``fit``.
        """
        trees, n_features, n_classes, is_classifier = _fitted_trees(estimator)
        if not is_classifier:
            raise TypeError(
                f"{type(estimator).__name__} is a regressor: compile it with "
                "compile_regressor(), which returns the forest and its target range"
            )
        parts = [_compile_tree(tree, n_classes) for tree in trees]
        return cls(_concatenate_trees(parts, n_features), kernel=kernel)

    @classmethod
    def from_arrays(
        cls, arrays: Mapping[str, np.ndarray], *, kernel: str | None = None
    ) -> CompiledForest:
        """Rebuild a forest from :meth:`to_arrays` output after checking it.

        Raises :class:`~rorf_core.errors.RouterFormatError` naming the first
        bad array: a missing or unexpected key, a wrong dtype or shape, an
        index out of range or a node without exactly one parent.
        """
        return cls(arrays, kernel=kernel)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Return copies of the flat arrays, ready for safetensors' ``save_file``."""
        return {name: array.copy() for name, array in self._arrays.items()}

    @property
    def nbytes(self) -> int:
        """Total size of the flat arrays in bytes."""
        return sum(array.nbytes for array in self._arrays.values())

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Return class probabilities, float64 of shape ``(n_rows, n_classes)``.

        ``X`` is ``(n_rows, n_features)``, or ``(n_features,)`` for one row,
        which gives shape ``(1, n_classes)``. Values are compared as float32,
        as in sklearn. NaN takes the branch that sklearn chose for missing
        values, and an infinite value raises ValueError, as in sklearn.
        """
        # Fast path: a C-contiguous float32 array of the right width, as
        # embedders return, goes to the kernel without a copy.
        if type(X) is np.ndarray and X.dtype is _FLOAT32 and X.flags.c_contiguous:
            if X.ndim == 2 and X.shape[1] == self.n_features:
                pass
            elif X.ndim == 1 and X.shape[0] == self.n_features:
                X = X.reshape(1, self.n_features)
            else:
                X = self._as_rows(X)  # raises the shape error
        else:
            X = self._as_rows(X)
        out = np.empty((X.shape[0], self.n_classes))
        bad_row = self._predict(self._kernel_args, X, out)
        if bad_row >= 0:
            raise ValueError(
                f"X row {bad_row} contains an infinite value (or one too large "
                "for float32); replace it with a finite value, or with NaN to "
                "mark it missing."
            )
        return out

    def _as_rows(self, X: Any) -> np.ndarray:
        # Convert an array-like to the C-contiguous 2-D float32 array that the
        # kernels read, rounding to float32 as sklearn does.
        if hasattr(X, "tocsr"):
            raise TypeError(
                "CompiledForest does not take sparse matrices; pass X.toarray()."
            )
        with np.errstate(over="ignore"):  # overflow gives inf, rejected later
            rows = np.ascontiguousarray(X, dtype=np.float32)
        if rows.ndim == 1:
            rows = rows.reshape(1, -1)
        if rows.ndim != 2:
            raise ValueError(
                "X must be 2-D (n_rows, n_features) or 1-D (n_features,), got "
                f"shape {rows.shape}."
            )
        if rows.shape[1] != self.n_features:
            raise ValueError(
                f"X has {rows.shape[1]} features per row, but the forest was "
                f"fitted on {self.n_features}; embed with the model that "
                "trained it."
            )
        return rows

    def __repr__(self) -> str:
        return (
            f"CompiledForest(n_trees={self.n_trees}, n_features={self.n_features}, "
            f"n_classes={self.n_classes}, kernel={self.kernel!r})"
        )


def compile_regressor(
    estimator: Any, *, kernel: str | None = None
) -> tuple[CompiledForest, float, float]:
    """Compile a fitted forest regressor; return ``(forest, low, high)``.

    Each leaf's mean target ``v`` is stored as the two-column probability
    row ``[(v - low) / (high - low), (high - v) / (high - low)]``, where
    ``low`` and ``high`` are the smallest and largest leaf values, so the
    classifier kernel and its format checks serve regressors unchanged.
    The forest's prediction is ``low + (high - low) * predict_proba(X)[:, 0]``,
    exact to float32 precision of the leaf values.
    """
    trees, n_features, _, is_classifier = _fitted_trees(estimator)
    if is_classifier:
        raise TypeError(
            f"{type(estimator).__name__} is a classifier: use from_sklearn()"
        )
    parts = [_compile_tree(tree, 1, is_classifier=False) for tree in trees]
    # Leaf values read in float64 from the trees, not the float32 copies.
    exact = [
        tree.value[tree.children_left == -1, 0, 0].astype(np.float64) for tree in trees
    ]
    low = float(min(values.min() for values in exact))
    high = float(max(values.max() for values in exact))
    span = high - low if high > low else 1.0
    for part, values in zip(parts, exact):
        share = (values - low) / span
        part["leaf_value"] = np.stack([share, 1.0 - share], axis=1).astype(np.float32)
    forest = CompiledForest(_concatenate_trees(parts, n_features), kernel=kernel)
    return forest, low, low + span
