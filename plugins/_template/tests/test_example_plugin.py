"""Tests to copy for a new plugin: registration, embedding, save and load."""

from __future__ import annotations

import numpy as np
import pytest

import rorf_example
from rorf_core import get_embedder, get_scorer_class, register_plugin, unregister_plugin


@pytest.fixture
def plugin():
    # Registered at run time, so the tests pass whether or not the plugin is
    # installed; an installed plugin is found through its entry point.
    try:
        name = register_plugin(rorf_example, name="example-under-test")
    except Exception:
        name = None
    yield
    if name:
        unregister_plugin(name)


def test_embedder_shape_and_order(plugin) -> None:
    embedder = get_embedder("example-chars")
    vectors = embedder.embed(["aaa", "bbb b"])
    assert vectors.shape == (2, 26)
    assert vectors[0, 0] == pytest.approx(1.0)
    assert vectors[1, 1] == pytest.approx(0.8)


def test_scorer_round_trip(plugin) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    y = np.repeat([0, 3], 30)
    X[y == 3] += 3
    scorer = get_scorer_class("example-nearest-centroid")().fit(X, y)
    meta, arrays = scorer.to_state()
    restored = type(scorer).from_state(scorer.get_params(), meta, arrays)
    np.testing.assert_allclose(restored.predict_proba(X), scorer.predict_proba(X), atol=1e-5)
    assert list(restored.classes_) == [0, 3]
