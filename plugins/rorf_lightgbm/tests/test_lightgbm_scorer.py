"""Fitting, prediction, saved state and registration of the lightgbm-rf scorer."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from rorf_core.labels import class_probability
from rorf_core.plugins import get_scorer_class, scorer_entries
from rorf_lightgbm.scorer import MODEL_ARRAY, LightGBMForestScorer

# Small forests keep each fit well under a second.
FAST = {"n_estimators": 10, "num_leaves": 8, "n_jobs": 1}


def make_data(
    labels: tuple[int, ...] = (0, 1, 2, 3), n_per_label: int = 60, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Return float32 points around one centre per label, and their labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(max(labels) + 1, 5))
    X = np.concatenate(
        [centres[label] + rng.normal(size=(n_per_label, 5)) for label in labels]
    )
    y = np.repeat(np.asarray(labels), n_per_label)
    order = rng.permutation(len(y))
    return X[order].astype(np.float32), y[order]


def round_trip(scorer: LightGBMForestScorer) -> LightGBMForestScorer:
    """Save through JSON and an .npz read with allow_pickle=False, then load."""
    meta, arrays = scorer.to_state()
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as loaded:
        loaded_arrays = {key: loaded[key] for key in loaded.files}
    params = json.loads(json.dumps(scorer.get_params()))
    return LightGBMForestScorer.from_state(
        params, json.loads(json.dumps(meta)), loaded_arrays
    )


def test_fit_returns_self_and_learns():
    X, y = make_data()
    scorer = LightGBMForestScorer(**FAST)

    assert scorer.fit(X, y) is scorer
    proba = scorer.predict_proba(X)

    assert scorer.is_fitted
    assert scorer.n_features_in_ == 5
    assert scorer.classes_.tolist() == [0, 1, 2, 3]
    assert proba.shape == (len(y), 4)
    assert proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert (scorer.classes_[proba.argmax(axis=1)] == y).mean() > 0.9


def test_constructor_stores_json_ready_defaults():
    scorer = LightGBMForestScorer(num_leaves=63)
    params = scorer.get_params()

    assert json.loads(json.dumps(params)) == params
    assert params["num_leaves"] == 63
    assert params["n_estimators"] == 100
    assert params["max_depth"] == 20
    assert params["random_state"] == 0
    assert "n_jobs" not in params
    assert not scorer.is_fitted


def test_absent_label_has_no_column():
    X, y = make_data(labels=(0, 1, 3))
    scorer = LightGBMForestScorer(**FAST).fit(X, y)
    proba = scorer.predict_proba(X)

    assert scorer.classes_.tolist() == [0, 1, 3]
    assert proba.shape == (len(y), 3)
    # Rows of label 3 must get their weight in the column of label 3, not in
    # the third column by position only by accident of the label numbers.
    p3 = class_probability(proba, scorer.classes_, 3)
    assert p3[y == 3].mean() > 0.8
    assert p3[y != 3].mean() < 0.2
    assert not class_probability(proba, scorer.classes_, 2).any()


def test_non_contiguous_labels_map_by_value():
    X, y = make_data(labels=(1, 3))
    scorer = LightGBMForestScorer(**FAST).fit(X, y)
    proba = scorer.predict_proba(X)

    assert scorer.classes_.tolist() == [1, 3]
    assert (scorer.classes_[proba.argmax(axis=1)] == y).mean() > 0.9


def test_single_label_predicts_probability_one():
    X, _ = make_data(labels=(2,))
    y = np.full(len(X), 2)
    scorer = LightGBMForestScorer(**FAST).fit(X, y)

    assert scorer.classes_.tolist() == [2]
    np.testing.assert_array_equal(scorer.predict_proba(X[:4]), np.ones((4, 1)))
    restored = round_trip(scorer)
    np.testing.assert_array_equal(restored.predict_proba(X[:4]), np.ones((4, 1)))


def test_round_trip_gives_identical_probabilities():
    X, y = make_data()
    scorer = LightGBMForestScorer(**FAST).fit(X, y)
    restored = round_trip(scorer)

    assert restored.classes_.tolist() == scorer.classes_.tolist()
    assert restored.n_features_in_ == scorer.n_features_in_
    assert restored.get_params() == scorer.get_params()
    np.testing.assert_array_equal(restored.predict_proba(X), scorer.predict_proba(X))


def test_state_is_json_and_one_uint8_array():
    X, y = make_data(labels=(0, 3))
    meta, arrays = LightGBMForestScorer(**FAST).fit(X, y).to_state()

    assert json.loads(json.dumps(meta)) == meta
    assert meta["classes"] == [0, 3]
    assert meta["n_features"] == 5
    assert list(arrays) == [MODEL_ARRAY]
    assert arrays[MODEL_ARRAY].dtype == np.uint8
    text = arrays[MODEL_ARRAY].tobytes().decode("ascii")
    assert text.startswith("tree\n")
    assert text.endswith("end of trees\n")


def test_same_seed_same_model_other_seed_differs():
    X, y = make_data()
    first = LightGBMForestScorer(**FAST).fit(X, y).predict_proba(X)
    again = LightGBMForestScorer(**FAST).fit(X, y).predict_proba(X)
    other = (
        LightGBMForestScorer(**{**FAST, "random_state": 7}).fit(X, y).predict_proba(X)
    )

    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_thread_count_does_not_change_model():
    X, y = make_data()
    one = LightGBMForestScorer(**FAST).fit(X, y)
    two = LightGBMForestScorer(**{**FAST, "n_jobs": 2}).fit(X, y)

    assert one.to_state()[0]["model_sha256"] == two.to_state()[0]["model_sha256"]


def test_single_row_matches_batch():
    X, y = make_data()
    scorer = LightGBMForestScorer(**{**FAST, "n_jobs": 2}).fit(X, y)
    batch = scorer.predict_proba(X[:5])

    for index in range(5):
        row = scorer.predict_proba(X[index : index + 1])
        np.testing.assert_array_equal(row[0], batch[index])


def test_predict_accepts_empty_batch():
    X, y = make_data()
    scorer = LightGBMForestScorer(**FAST).fit(X, y)

    assert scorer.predict_proba(X[:0]).shape == (0, 4)


def test_predict_rejects_wrong_feature_count():
    X, y = make_data()
    scorer = LightGBMForestScorer(**FAST).fit(X, y)

    with pytest.raises(ValueError, match="fitted on 5 features but X has 4"):
        scorer.predict_proba(X[:, :4])
    with pytest.raises(ValueError, match="reshape"):
        scorer.predict_proba(X[0])


def test_predict_before_fit_raises():
    with pytest.raises(RuntimeError, match="not fitted"):
        LightGBMForestScorer().predict_proba(np.zeros((1, 5), dtype=np.float32))


def test_fit_rejects_bad_inputs():
    X, y = make_data()

    with pytest.raises(ValueError, match="one label per row"):
        LightGBMForestScorer(**FAST).fit(X, y[:-1])
    with pytest.raises(ValueError, match="integer class labels"):
        LightGBMForestScorer(**FAST).fit(X, y + 0.5)
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="row 3"):
        LightGBMForestScorer(**FAST).fit(bad, y)
    with pytest.raises(ValueError, match="zero rows"):
        LightGBMForestScorer(**FAST).fit(X[:0], y[:0])


def test_unknown_parameter_raises_type_error():
    with pytest.raises(TypeError, match="unknown parameters \\['max_features'\\]"):
        LightGBMForestScorer(max_features=1.0)


INVALID_PARAMS = [
    ({"n_estimators": 0}, ValueError, "n_estimators must be in 1..inf"),
    ({"num_leaves": 1}, ValueError, "num_leaves must be in 2..131072"),
    ({"max_depth": 2.5}, TypeError, "max_depth must be an integer"),
    ({"min_child_samples": True}, TypeError, "min_child_samples must be an integer"),
    ({"bagging_fraction": 0.0}, ValueError, "bagging_fraction must be in"),
    ({"feature_fraction": "1"}, TypeError, "feature_fraction must be a number"),
    ({"feature_fraction": 1.5}, ValueError, "feature_fraction must be in"),
    ({"bagging_fraction": 1.0}, ValueError, "bagging_fraction or feature_fraction"),
    ({"random_state": -1}, ValueError, "random_state must be in 0..2147483647"),
    ({"n_jobs": 0}, ValueError, "n_jobs must be in 1..inf"),
]


@pytest.mark.parametrize(("params", "error", "message"), INVALID_PARAMS)
def test_fit_rejects_invalid_parameters(params, error, message):
    X, y = make_data()

    with pytest.raises(error, match=message):
        LightGBMForestScorer(**{**FAST, **params}).fit(X, y)


def test_feature_fraction_alone_is_enough_sampling():
    X, y = make_data()
    params = {**FAST, "bagging_fraction": 1.0, "feature_fraction": 0.6}

    assert LightGBMForestScorer(**params).fit(X, y).classes_.size == 4


def test_no_depth_limit_is_accepted():
    X, y = make_data()
    scorer = LightGBMForestScorer(**{**FAST, "max_depth": None}).fit(X, y)

    np.testing.assert_array_equal(
        round_trip(scorer).predict_proba(X), scorer.predict_proba(X)
    )


def test_entry_point_registers_scorer():
    entry = scorer_entries()["lightgbm-rf"]

    assert entry.distribution == "rorf-lightgbm"
    assert entry.plugin == "lightgbm"
    assert entry.factory is LightGBMForestScorer
    assert get_scorer_class("lightgbm-rf") is LightGBMForestScorer
