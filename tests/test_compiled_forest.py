"""CompiledForest against scikit-learn: probabilities, safe arrays, both kernels."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import MMLU, MODEL_A, MODEL_B
from safetensors.numpy import load_file, save_file
from sklearn.ensemble import (
    ExtraTreesClassifier,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.exceptions import NotFittedError
from sklearn.tree import DecisionTreeClassifier, ExtraTreeClassifier

from rorf_core.errors import RouterFormatError
from rorf_core.forest import compiled
from rorf_core.forest.compiled import (
    KERNEL_ENV_VAR,
    CompiledForest,
    round_down_to_float32,
)

TOLERANCE = 1e-6
# Batch sizes on both sides of each kernel switch in compiled.py.
BATCH_SIZES = sorted(
    {
        1,
        compiled._BLOCK_MIN_ROWS - 1,
        compiled._BLOCK_MIN_ROWS,
        compiled._BLOCK_ROWS + 3,
        compiled._PARALLEL_MIN_ROWS - 1,
        compiled._PARALLEL_MIN_ROWS,
        3 * compiled._PARALLEL_MIN_ROWS + 5,
    }
)


def assert_matches_sklearn(estimator, forest: CompiledForest, X: np.ndarray) -> None:
    expected = estimator.predict_proba(X)
    actual = forest.predict_proba(X)
    assert actual.shape == expected.shape
    assert actual.dtype == np.float64
    np.testing.assert_allclose(actual, expected, rtol=0, atol=TOLERANCE)


def synthetic(
    n_rows: int = 400, n_features: int = 12, n_classes: int = 4, seed: int = 0
):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_rows, n_features)).astype(np.float32)
    # Labels that depend on the features, so trees grow real splits.
    score = X[:, 0] + 0.5 * X[:, 1] * X[:, 2] + 0.3 * rng.normal(size=n_rows)
    y = np.digitize(score, np.quantile(score, np.linspace(0, 1, n_classes + 1)[1:-1]))
    return X, y


@pytest.fixture(scope="module")
def small_forest():
    X, y = synthetic()
    estimator = RandomForestClassifier(
        n_estimators=15, max_depth=8, random_state=0
    ).fit(X, y)
    return estimator, X


# Agreement with scikit-learn.

ESTIMATORS = {
    "random-forest-unbounded": lambda: RandomForestClassifier(
        n_estimators=10, random_state=1
    ),
    "random-forest-shallow-big-leaves": lambda: RandomForestClassifier(
        n_estimators=10, max_depth=4, min_samples_leaf=7, random_state=2
    ),
    "random-forest-rorf-settings": lambda: RandomForestClassifier(
        n_estimators=10, max_depth=20, max_features=1.0, random_state=3
    ),
    "random-forest-balanced-weights": lambda: RandomForestClassifier(
        n_estimators=10, class_weight="balanced", random_state=4
    ),
    "random-forest-no-bootstrap": lambda: RandomForestClassifier(
        n_estimators=5, bootstrap=False, max_features=0.5, random_state=5
    ),
    "extra-trees": lambda: ExtraTreesClassifier(n_estimators=10, random_state=6),
    "extra-trees-shallow": lambda: ExtraTreesClassifier(
        n_estimators=10, max_depth=3, min_samples_leaf=3, random_state=7
    ),
    "decision-tree": lambda: DecisionTreeClassifier(random_state=8),
    "extra-tree": lambda: ExtraTreeClassifier(random_state=9),
}


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_estimator_matches_sklearn(name):
    X, y = synthetic(seed=len(name))
    estimator = ESTIMATORS[name]().fit(X, y)
    forest = CompiledForest.from_sklearn(estimator)
    fresh = np.random.default_rng(99).normal(scale=1.5, size=(300, X.shape[1]))
    assert_matches_sklearn(estimator, forest, X)
    assert_matches_sklearn(estimator, forest, fresh.astype(np.float32))
    assert_matches_sklearn(estimator, forest, fresh)  # float64 is cast like sklearn
    assert forest.n_trees == len(getattr(estimator, "estimators_", [estimator]))


@pytest.mark.parametrize("n_classes", [1, 2, 3])
def test_class_counts_match_sklearn(n_classes):
    X, y = synthetic(n_classes=n_classes, seed=n_classes)
    labels = np.array(["x", "y", "z"])[y]  # string labels; columns follow classes_
    estimator = RandomForestClassifier(n_estimators=8, random_state=0).fit(X, labels)
    forest = CompiledForest.from_sklearn(estimator)
    assert forest.n_classes == n_classes
    assert_matches_sklearn(estimator, forest, X)


def test_class_absent_from_bootstrap():
    X, y = synthetic(n_rows=300, n_classes=3)
    rare = np.flatnonzero(y == 2)[:2]
    y = np.where(y == 2, 1, y)
    y[rare] = 2  # two rows of class 2: many bootstrap samples miss both
    estimator = RandomForestClassifier(n_estimators=40, random_state=0).fit(X, y)
    root_weights = np.array([tree.tree_.value[0, 0] for tree in estimator.estimators_])
    trees_without_class = int((root_weights[:, 2] == 0).sum())
    assert trees_without_class > 0
    forest = CompiledForest.from_sklearn(estimator)
    assert forest.n_classes == 3
    assert_matches_sklearn(estimator, forest, X)


def test_single_leaf_trees():
    X, _ = synthetic(n_rows=60)
    y = np.zeros(60, dtype=int)
    y[:2] = 1  # most bootstrap samples are pure, so those trees are one leaf
    estimator = RandomForestClassifier(n_estimators=30, random_state=0).fit(X, y)
    node_counts = [tree.tree_.node_count for tree in estimator.estimators_]
    assert min(node_counts) == 1
    assert max(node_counts) > 1
    forest = CompiledForest.from_sklearn(estimator)
    assert_matches_sklearn(estimator, forest, X)
    # The last tree being a lone leaf puts its root at the end of the node arrays.
    forest_of_leaves = CompiledForest.from_sklearn(
        RandomForestClassifier(n_estimators=3, random_state=0).fit(X, np.zeros(60))
    )
    assert forest_of_leaves.max_depth == 0
    np.testing.assert_array_equal(forest_of_leaves.predict_proba(X), np.ones((60, 1)))


def test_missing_values_follow_sklearn():
    X, y = synthetic()
    rng = np.random.default_rng(3)
    X_missing = X.copy()
    X_missing[rng.random(X.shape) < 0.1] = np.nan
    queries = X.copy()
    queries[rng.random(X.shape) < 0.3] = np.nan
    # Fitted with NaN: nodes learned a side. Fitted without: the larger child.
    for train in (X_missing, X):
        estimator = RandomForestClassifier(n_estimators=10, random_state=0).fit(
            train, y
        )
        forest = CompiledForest.from_sklearn(estimator)
        assert_matches_sklearn(estimator, forest, queries)
        for row in queries[:20]:  # the one-row kernel
            assert_matches_sklearn(estimator, forest, row[np.newaxis, :])
        numpy_forest = CompiledForest.from_arrays(forest.to_arrays(), kernel="numpy")
        np.testing.assert_array_equal(
            numpy_forest.predict_proba(queries), forest.predict_proba(queries)
        )


@pytest.mark.parametrize("kernel", ["numba", "numpy"])
def test_infinite_value_raises_like_sklearn(small_forest, kernel):
    estimator, X = small_forest
    forest = CompiledForest.from_sklearn(estimator, kernel=kernel)
    rows = X[:20].copy()
    rows[13, 4] = -np.inf
    with pytest.raises(ValueError, match="infinity"):
        estimator.predict_proba(rows)
    with pytest.raises(ValueError, match="row 13 contains an infinite value"):
        forest.predict_proba(rows)
    too_large = X[:3].astype(np.float64)
    too_large[1, 0] = 1e300  # becomes inf when cast to float32
    with pytest.raises(ValueError, match="row 1 contains an infinite value"):
        forest.predict_proba(too_large)


# Threshold rounding.


def test_round_down_to_float32_is_largest_below():
    rng = np.random.default_rng(0)
    values = np.concatenate(
        [
            rng.normal(size=10_000),
            rng.normal(size=1_000) * 1e-40,  # float32 subnormals
            [0.0, -0.0, 1.0, 3.5e38, -3.5e38, 1e39, -1e39],
        ]
    )
    rounded = round_down_to_float32(values)
    assert rounded.dtype == np.float32
    assert np.all(rounded.astype(np.float64) <= values)
    with np.errstate(over="ignore"):  # the float32 maximum steps up to inf
        above = np.nextafter(rounded, np.float32(np.inf)).astype(np.float64)
    assert np.all(above > values)
    np.testing.assert_array_equal(
        round_down_to_float32(np.array([np.inf, -np.inf])), [np.inf, -np.inf]
    )


def test_round_down_keeps_float32_comparisons():
    rng = np.random.default_rng(1)
    thresholds = rng.normal(size=2_000)
    rounded = round_down_to_float32(thresholds)
    nearest = thresholds.astype(np.float32)
    candidates = np.stack(
        [
            nearest,
            np.nextafter(nearest, np.float32(-np.inf)),
            np.nextafter(nearest, np.float32(np.inf)),
        ]
    )
    # x is float32 on both sides; sklearn compares it with the float64 value.
    expected = candidates.astype(np.float64) <= thresholds
    np.testing.assert_array_equal(candidates <= rounded, expected)
    assert not np.array_equal(candidates <= nearest, expected)


def test_stored_thresholds_are_rounded_down(small_forest):
    estimator, _ = small_forest
    arrays = CompiledForest.from_sklearn(estimator).to_arrays()
    originals = np.concatenate(
        [
            tree.tree_.threshold[tree.tree_.children_left != -1]
            for tree in estimator.estimators_
        ]
    )
    np.testing.assert_array_equal(arrays["threshold"], round_down_to_float32(originals))


def test_threshold_boundary_inputs():
    # Values on a grid make thresholds midpoints such as 0.15, which float32
    # rounds up; queries sit exactly on the float32 nearest to them.
    grid = np.arange(6, dtype=np.float32) * np.float32(0.1)
    midpoints = grid[:-1].astype(np.float64) / 2 + grid[1:].astype(np.float64) / 2
    on_threshold = midpoints.astype(np.float32)
    assert np.any(on_threshold.astype(np.float64) > midpoints)
    rng = np.random.default_rng(5)
    X = rng.choice(grid, size=(500, 6))
    y = (X.sum(axis=1) > 1.5).astype(int) + (X[:, 0] > 0.25)
    estimator = RandomForestClassifier(n_estimators=20, random_state=0).fit(X, y)
    queries = rng.choice(np.concatenate([grid, on_threshold]), size=(2_000, 6))
    forest = CompiledForest.from_sklearn(estimator)
    assert_matches_sklearn(estimator, forest, queries)
    # The same forest with thresholds rounded to nearest gets rows wrong.
    arrays = forest.to_arrays()
    originals = np.concatenate(
        [
            tree.tree_.threshold[tree.tree_.children_left != -1]
            for tree in estimator.estimators_
        ]
    )
    arrays["threshold"] = originals.astype(np.float32)
    nearest = CompiledForest.from_arrays(arrays).predict_proba(queries)
    wrong = np.abs(nearest - estimator.predict_proba(queries)).max(axis=1) > TOLERANCE
    assert wrong.any()


# Inputs.


def test_one_row_input(small_forest):
    estimator, X = small_forest
    forest = CompiledForest.from_sklearn(estimator)
    proba = forest.predict_proba(X[5])
    assert proba.shape == (1, forest.n_classes)
    np.testing.assert_allclose(proba, estimator.predict_proba(X[5:6]), atol=TOLERANCE)


def test_input_layouts(small_forest):
    estimator, X = small_forest
    forest = CompiledForest.from_sklearn(estimator)
    expected = forest.predict_proba(X)
    np.testing.assert_array_equal(forest.predict_proba(np.asfortranarray(X)), expected)
    np.testing.assert_array_equal(forest.predict_proba(X.tolist()), expected)
    np.testing.assert_array_equal(
        forest.predict_proba(np.repeat(X, 2, axis=0)[::2]), expected
    )
    big_endian = X.astype(">f4")
    np.testing.assert_array_equal(forest.predict_proba(big_endian), expected)


def test_empty_batch(small_forest):
    estimator, X = small_forest
    forest = CompiledForest.from_sklearn(estimator)
    proba = forest.predict_proba(X[:0])
    assert proba.shape == (0, forest.n_classes)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((3, 11), dtype=np.float32), "has 11 features per row"),
        (np.zeros(13, dtype=np.float32), "has 13 features per row"),
        (np.zeros((2, 3, 12), dtype=np.float32), "must be 2-D"),
        (np.float32(1.0), "has 1 features per row"),
    ],
)
def test_bad_input_shape(small_forest, bad, message):
    estimator, _ = small_forest
    forest = CompiledForest.from_sklearn(estimator)
    with pytest.raises(ValueError, match=message):
        forest.predict_proba(bad)


def test_sparse_input_rejected(small_forest):
    scipy_sparse = pytest.importorskip("scipy.sparse")
    estimator, X = small_forest
    forest = CompiledForest.from_sklearn(estimator)
    with pytest.raises(TypeError, match="toarray"):
        forest.predict_proba(scipy_sparse.csr_matrix(X))


# Unsupported estimators.


def test_unsupported_estimators():
    X, y = synthetic(n_rows=50)
    with pytest.raises(TypeError, match="RandomForestRegressor"):
        CompiledForest.from_sklearn(RandomForestRegressor(n_estimators=2).fit(X, y))
    with pytest.raises(NotFittedError):
        CompiledForest.from_sklearn(RandomForestClassifier())
    two_outputs = np.stack([y, y[::-1]], axis=1)
    multi = RandomForestClassifier(n_estimators=2).fit(X, two_outputs)
    with pytest.raises(ValueError, match="2 outputs"):
        CompiledForest.from_sklearn(multi)


# Kernels.


@pytest.mark.parametrize("n_rows", BATCH_SIZES)
def test_kernels_bit_identical(small_forest, n_rows):
    estimator, _ = small_forest
    rows = np.random.default_rng(n_rows).normal(size=(n_rows, 12)).astype(np.float32)
    rows[::7, 3] = np.nan
    numba_forest = CompiledForest.from_sklearn(estimator, kernel="numba")
    numpy_forest = CompiledForest.from_sklearn(estimator, kernel="numpy")
    assert numba_forest.kernel == "numba"
    assert numpy_forest.kernel == "numpy"
    by_numba = numba_forest.predict_proba(rows)
    np.testing.assert_array_equal(numpy_forest.predict_proba(rows), by_numba)
    np.testing.assert_allclose(by_numba, estimator.predict_proba(rows), atol=TOLERANCE)


def test_every_numba_kernel_agrees(small_forest):
    estimator, _ = small_forest
    forest = CompiledForest.from_sklearn(estimator, kernel="numba")
    rows = np.random.default_rng(0).normal(size=(100, 12)).astype(np.float32)
    results = []
    for kernel in (
        compiled._predict_rows,
        compiled._predict_blocks_serial,
        compiled._predict_blocks_parallel,
    ):
        out = np.empty((100, forest.n_classes))
        assert kernel(rows, *forest._kernel_args, out) == -1
        results.append(out)
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[0], results[2])


def test_kernel_from_environment(small_forest, monkeypatch):
    estimator, _ = small_forest
    monkeypatch.setenv(KERNEL_ENV_VAR, "numpy")
    assert CompiledForest.from_sklearn(estimator).kernel == "numpy"
    monkeypatch.setenv(KERNEL_ENV_VAR, "auto")
    assert CompiledForest.from_sklearn(estimator).kernel == "numba"
    monkeypatch.setenv(KERNEL_ENV_VAR, "cuda")
    with pytest.raises(ValueError, match="RORF_FOREST_KERNEL='cuda' is invalid"):
        CompiledForest.from_sklearn(estimator)
    with pytest.raises(ValueError, match="kernel='fast' is invalid"):
        CompiledForest.from_sklearn(estimator, kernel="fast")


NO_NUMBA_SCRIPT = """
import sys
sys.modules["numba"] = None  # makes `import numba` raise ImportError
import numpy as np
from safetensors.numpy import load_file
from rorf_core.forest.compiled import CompiledForest
arrays_path, rows_path, out_path = sys.argv[1:]
forest = CompiledForest.from_arrays(load_file(arrays_path))
np.save(out_path, forest.predict_proba(np.load(rows_path)))
try:
    CompiledForest.from_arrays(load_file(arrays_path), kernel="numba")
except ImportError as error:
    print("numba kernel refused:", error)
print("kernel:", forest.kernel)
"""


def test_numpy_kernel_without_numba(small_forest, tmp_path):
    estimator, X = small_forest
    forest = CompiledForest.from_sklearn(estimator)
    save_file(forest.to_arrays(), tmp_path / "forest.safetensors")
    np.save(tmp_path / "rows.npy", X)
    env = {key: value for key, value in os.environ.items() if key != KERNEL_ENV_VAR}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            NO_NUMBA_SCRIPT,
            str(tmp_path / "forest.safetensors"),
            str(tmp_path / "rows.npy"),
            str(tmp_path / "out.npy"),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert "kernel: numpy" in result.stdout
    assert "refused: kernel='numba' but numba failed to import" in result.stdout
    np.testing.assert_array_equal(
        np.load(tmp_path / "out.npy"), forest.predict_proba(X)
    )


def test_parallel_calls_from_threads(small_forest):
    estimator, _ = small_forest
    forest = CompiledForest.from_sklearn(estimator)
    n_rows = compiled._PARALLEL_MIN_ROWS + 100  # takes the parallel kernel
    rows = np.random.default_rng(1).normal(size=(n_rows, 12)).astype(np.float32)
    expected = forest.predict_proba(rows)
    results: list[np.ndarray] = []
    errors: list[BaseException] = []

    def predict() -> None:
        try:
            for _ in range(5):
                results.append(forest.predict_proba(rows))
        except Exception as error:  # noqa: BLE001 - the main thread asserts on it
            errors.append(error)

    threads = [threading.Thread(target=predict) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(results) == 20
    for result in results:
        np.testing.assert_array_equal(result, expected)


THREADS_SCRIPT = """
import sys, threading
import numpy as np
from safetensors.numpy import load_file
from rorf_core.forest.compiled import CompiledForest
forest = CompiledForest.from_arrays(load_file(sys.argv[1]))
rows = np.random.default_rng(0).normal(size=(5_000, forest.n_features))  # > 2048
rows = rows.astype(np.float32)
expected = forest.predict_proba(rows)
def predict():
    for _ in range(20):
        assert np.array_equal(forest.predict_proba(rows), expected)
threads = [threading.Thread(target=predict) for _ in range(4)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print("threads done")
"""


def test_threads_with_workqueue_layer(small_forest, tmp_path):
    # numba's workqueue layer aborts the process on concurrent parallel
    # launches, which the lock in compiled.py prevents.
    estimator, _ = small_forest
    save_file(CompiledForest.from_sklearn(estimator).to_arrays(), tmp_path / "f.st")
    env = {**os.environ, "NUMBA_THREADING_LAYER": "workqueue"}
    env.pop(KERNEL_ENV_VAR, None)
    result = subprocess.run(
        [sys.executable, "-c", THREADS_SCRIPT, str(tmp_path / "f.st")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "threads done" in result.stdout


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_after_parallel_call(small_forest):
    estimator, _ = small_forest
    forest = CompiledForest.from_sklearn(estimator)
    n_rows = compiled._PARALLEL_MIN_ROWS + 100
    rows = np.random.default_rng(2).normal(size=(n_rows, 12)).astype(np.float32)
    expected = forest.predict_proba(rows)  # runs the parallel kernel here
    assert compiled._parallel_used
    pid = os.fork()
    if pid == 0:  # child: exit code 0 only if prediction works and agrees
        code = 2
        try:
            ok = np.array_equal(forest.predict_proba(rows), expected)
            code = 0 if ok and compiled._parallel_forbidden else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


# Arrays and storage.


def test_array_layout(small_forest):
    estimator, _ = small_forest
    forest = CompiledForest.from_sklearn(estimator)
    arrays = forest.to_arrays()
    n_internal = sum(
        int((tree.tree_.children_left != -1).sum()) for tree in estimator.estimators_
    )
    assert set(arrays) == set(compiled._ARRAY_NAMES)
    assert arrays["feature"].dtype == np.uint16
    assert arrays["children"].dtype == np.int16
    assert arrays["threshold"].dtype == np.float32
    assert arrays["leaf_value"].dtype == np.float32
    assert arrays["node_offset"].dtype == np.int32
    assert arrays["missing_go_to_left"].dtype == np.bool_
    assert arrays["feature"].shape == (n_internal,)
    assert arrays["children"].shape == (n_internal, 2)
    # Leaf values are stored for leaves only.
    assert arrays["leaf_value"].shape == (n_internal + forest.n_trees, 4)
    assert int(arrays["n_features"]) == 12
    assert forest.nbytes == sum(array.nbytes for array in arrays.values())


def test_safetensors_round_trip(small_forest, tmp_path):
    estimator, X = small_forest
    forest = CompiledForest.from_sklearn(estimator)
    path = tmp_path / "forest.safetensors"
    save_file(forest.to_arrays(), path)
    loaded = CompiledForest.from_arrays(load_file(path))
    np.testing.assert_array_equal(loaded.predict_proba(X), forest.predict_proba(X))
    npz_path = tmp_path / "forest.npz"
    np.savez(npz_path, **forest.to_arrays())
    with np.load(npz_path, allow_pickle=False) as stored:
        from_npz = CompiledForest.from_arrays(dict(stored))
    np.testing.assert_array_equal(from_npz.predict_proba(X), forest.predict_proba(X))


def test_to_arrays_returns_copies(small_forest):
    estimator, X = small_forest
    forest = CompiledForest.from_sklearn(estimator)
    expected = forest.predict_proba(X)
    arrays = forest.to_arrays()
    arrays["children"][:] = 10_000
    arrays["leaf_value"][:] = 0.0
    np.testing.assert_array_equal(forest.predict_proba(X), expected)


def test_from_arrays_copies_input(small_forest):
    estimator, X = small_forest
    arrays = CompiledForest.from_sklearn(estimator).to_arrays()
    forest = CompiledForest.from_arrays(arrays)
    expected = forest.predict_proba(X)
    arrays["feature"][:] = 60_000  # would read past each row if shared
    np.testing.assert_array_equal(forest.predict_proba(X), expected)


def test_wide_input_uses_int32_features():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 70_000)).astype(np.float32)
    y = (X[:, 69_999] > 0).astype(int)
    estimator = DecisionTreeClassifier(random_state=0).fit(X, y)
    forest = CompiledForest.from_sklearn(estimator)
    assert forest.to_arrays()["feature"].dtype == np.int32
    assert_matches_sklearn(estimator, forest, X)


def test_large_tree_uses_int32_children():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120_000, 2)).astype(np.float32)
    y = rng.integers(0, 2, size=120_000)  # noise: about one leaf per 3 rows
    estimator = DecisionTreeClassifier(random_state=0).fit(X, y)
    assert estimator.get_n_leaves() > 2**15
    forest = CompiledForest.from_sklearn(estimator)
    assert forest.to_arrays()["children"].dtype == np.int32
    assert_matches_sklearn(estimator, forest, X[:5_000])


# Validation of stored arrays.


def corrupt_missing_key(arrays):
    del arrays["threshold"]


def corrupt_extra_key(arrays):
    arrays["classes"] = np.arange(4)


def corrupt_dtype(arrays):
    arrays["feature"] = arrays["feature"].astype(np.float32)


def corrupt_not_array(arrays):
    arrays["leaf_value"] = arrays["leaf_value"].tolist()


def corrupt_threshold_length(arrays):
    arrays["threshold"] = arrays["threshold"][:-1]


def corrupt_children_shape(arrays):
    arrays["children"] = arrays["children"][:, :1].copy()


def corrupt_n_features_shape(arrays):
    arrays["n_features"] = arrays["n_features"].reshape(1)


def corrupt_feature_range(arrays):
    arrays["feature"][3] = int(arrays["n_features"])


def corrupt_n_features_smaller(arrays):
    arrays["n_features"] = np.array(2, dtype=np.int64)


def corrupt_child_past_tree(arrays):
    n_internal = int(arrays["node_offset"][1])
    arrays["children"][0, 0] = n_internal  # first node past tree 0


def corrupt_child_backwards(arrays):
    parent = int(np.flatnonzero(arrays["children"][:, 1] > 0)[0])
    arrays["children"][parent, 1] = 0  # back to the root: a cycle


def corrupt_leaf_code(arrays):
    n_leaves = int(arrays["leaf_offset"][1])
    leaf_slot = np.argwhere(arrays["children"][: n_leaves - 1] < 0)[0]
    arrays["children"][tuple(leaf_slot)] = -n_leaves - 1


def corrupt_shared_child(arrays):
    # Both children of the root point at the left one: the right subtree is lost.
    arrays["children"][0, 1] = arrays["children"][0, 0]


def corrupt_node_offset_end(arrays):
    arrays["node_offset"][-1] -= 1


def corrupt_node_offset_order(arrays):
    arrays["node_offset"][1], arrays["node_offset"][2] = (
        arrays["node_offset"][2],
        arrays["node_offset"][1],
    )


def corrupt_leaf_offset(arrays):
    arrays["leaf_offset"][1] += 1


def corrupt_offset_lengths(arrays):
    arrays["leaf_offset"] = arrays["leaf_offset"][:-1]


def corrupt_leaf_nan(arrays):
    arrays["leaf_value"][5, 0] = np.nan


def corrupt_leaf_negative(arrays):
    arrays["leaf_value"][5, 0] = -0.5


def corrupt_leaf_sum(arrays):
    arrays["leaf_value"][5] = 0.5


def corrupt_threshold_nan(arrays):
    arrays["threshold"][2] = np.nan


CORRUPTIONS = {
    "missing key": (corrupt_missing_key, "'threshold' is missing"),
    "extra key": (corrupt_extra_key, "unexpected forest array 'classes'"),
    "dtype": (corrupt_dtype, "'feature' is invalid: dtype is float32"),
    "not an array": (corrupt_not_array, "'leaf_value' is invalid: expected a numpy"),
    "threshold length": (corrupt_threshold_length, "'threshold' is invalid: shape"),
    "children shape": (corrupt_children_shape, "'children' is invalid: shape"),
    "n_features shape": (corrupt_n_features_shape, "'n_features' is invalid"),
    "feature range": (corrupt_feature_range, "'feature' is invalid: values"),
    "n_features smaller": (corrupt_n_features_smaller, "'feature' is invalid"),
    "child past tree": (corrupt_child_past_tree, "node 0 of tree 0 has child code"),
    "child backwards": (corrupt_child_backwards, "has child code 0, which is out"),
    "leaf code": (corrupt_leaf_code, "of tree 0 has child code -"),
    "shared child": (corrupt_shared_child, "of tree 0 has [02] parents"),
    "node_offset end": (corrupt_node_offset_end, "'node_offset' is invalid"),
    "node_offset order": (corrupt_node_offset_order, "'node_offset' is invalid"),
    "leaf_offset": (corrupt_leaf_offset, "'leaf_offset' is invalid"),
    "offset lengths": (corrupt_offset_lengths, "'leaf_offset' is invalid"),
    "leaf NaN": (corrupt_leaf_nan, "'leaf_value' is invalid: contains NaN"),
    "leaf negative": (corrupt_leaf_negative, "'leaf_value' is invalid"),
    "leaf sum": (corrupt_leaf_sum, "'leaf_value' is invalid: each row"),
    "threshold NaN": (corrupt_threshold_nan, "'threshold' is invalid: contains NaN"),
}


@pytest.mark.parametrize("kernel", ["numba", "numpy"])  # each has its own checks
@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_from_arrays_rejects(small_forest, case, kernel):
    estimator, _ = small_forest
    arrays = CompiledForest.from_sklearn(estimator).to_arrays()
    corrupt, message = CORRUPTIONS[case]
    corrupt(arrays)
    with pytest.raises(RouterFormatError, match=message):
        CompiledForest.from_arrays(arrays, kernel=kernel)


def test_from_arrays_rejects_non_mapping():
    with pytest.raises(RouterFormatError, match="mapping of name to numpy array"):
        CompiledForest.from_arrays([("feature", np.zeros(1))])


# The MMLU battles table, embedded with wordllama.

MMLU_ROWS = 3_000


def load_wordllama():
    wordllama = pytest.importorskip("wordllama")
    # wordllama 0.4.0.post1 looks for the tokenizer in "tokenizer/" but its
    # wheel ships "tokenizers/"; its cache_dir layout matches the package.
    return wordllama.WordLlama.load(
        cache_dir=Path(wordllama.__file__).parent, disable_download=True
    )


@pytest.fixture(scope="module")
def mmlu_embedded():
    if not MMLU.is_file():
        pytest.skip(f"MMLU battles table not found at {MMLU}")
    pandas = pytest.importorskip("pandas")
    table = pandas.read_parquet(MMLU)
    table = table.sample(n=MMLU_ROWS, random_state=0)
    from rorf_core.labels import get_label_scheme

    labels = get_label_scheme("rorf")(
        table[f"{MODEL_A}/score"].to_numpy(), table[f"{MODEL_B}/score"].to_numpy()
    )
    return load_wordllama().embed(table["Input"].tolist()), labels


@pytest.fixture(scope="module")
def mmlu_forest(mmlu_embedded):
    X, y = mmlu_embedded
    estimator = RandomForestClassifier(
        n_estimators=20, max_depth=20, max_features="sqrt", random_state=0, n_jobs=-1
    ).fit(X[:2_000], y[:2_000])
    return estimator, X


def test_mmlu_every_row_matches(mmlu_forest):
    estimator, X = mmlu_forest
    assert X.dtype == np.float32
    for kernel in ("numba", "numpy"):
        forest = CompiledForest.from_sklearn(estimator, kernel=kernel)
        # Training rows and held-out rows, as a batch and one by one.
        assert_matches_sklearn(estimator, forest, X)
        one_by_one = np.concatenate([forest.predict_proba(row) for row in X[:300]])
        np.testing.assert_array_equal(one_by_one, forest.predict_proba(X[:300]))


def test_mmlu_size_against_pickle(mmlu_forest):
    estimator, _ = mmlu_forest
    forest = CompiledForest.from_sklearn(estimator)
    pickled = len(pickle.dumps(estimator, protocol=pickle.HIGHEST_PROTOCOL))
    assert forest.nbytes * 4 < pickled


def test_repr(small_forest):
    estimator, _ = small_forest
    text = repr(CompiledForest.from_sklearn(estimator, kernel="numpy"))
    assert (
        text == "CompiledForest(n_trees=15, n_features=12, n_classes=4, kernel='numpy')"
    )
