"""The safe router format: round trip, checks on load, versions, atomic write."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rorf_core import RouterFormatError, RouterNotFoundError
from rorf_core import format as router_format
from rorf_core.forest.sklearn_forest import RandomForestScorer
from rorf_core.router import Router

DOCS = Path(__file__).resolve().parents[1] / "docs" / "router-format.md"


def make_router(seed: int = 0, n_estimators: int = 6) -> Router:
    from rorf_wordllama.embedder import WordLlamaEmbedder

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(200, 256)).astype(np.float32)
    y = np.arange(200) % 4
    scorer = RandomForestScorer(
        n_estimators=n_estimators, max_depth=5, random_state=seed
    )
    return Router(
        embedder=WordLlamaEmbedder(),
        scorer=scorer.fit(x, y),
        model_a="big-model",
        model_b="small-model",
        calibration={"dataset": "held-out", "rows": 3, "table": []},
        training={"train_rows": 200},
    )


@pytest.fixture
def router_dir(tmp_path: Path) -> Path:
    return make_router().save_pretrained(tmp_path / "router")


def edit_metadata(directory: Path, change: Any) -> None:
    path = directory / "router.json"
    metadata = json.loads(path.read_text())
    change(metadata)
    path.write_text(json.dumps(metadata))


def rows(count: int = 20) -> np.ndarray:
    return np.random.default_rng(7).normal(size=(count, 256)).astype(np.float32)


# Round trip ------------------------------------------------------------------------


def test_round_trip_keeps_probabilities(tmp_path: Path) -> None:
    router = make_router()
    router.save_pretrained(tmp_path / "router")
    loaded = Router.from_pretrained(tmp_path / "router")
    np.testing.assert_array_equal(
        loaded.scorer.predict_proba(rows()), router.scorer.predict_proba(rows())
    )
    assert (loaded.model_a, loaded.model_b) == ("big-model", "small-model")
    assert loaded.embedder.name == "wordllama"
    assert loaded.embedder_dimension == 256
    assert loaded.calibration == router.calibration
    assert loaded.training == router.training


def test_directory_contains_two_files(router_dir: Path) -> None:
    assert sorted(p.name for p in router_dir.iterdir()) == [
        "router.json",
        "scorer.safetensors",
    ]
    metadata = json.loads((router_dir / "router.json").read_text())
    assert metadata["format"] == "rorf-router"
    assert metadata["format_version"] == router_format.FORMAT_VERSION


def _keys(value: Any, prefix: str = "") -> list[str]:
    found = []
    if isinstance(value, dict):
        for key, inner in value.items():
            found.append(prefix + key)
            if key not in ("params", "options", "training", "calibration", "labels"):
                found += _keys(inner, prefix + key + ".")
    return found


def test_docs_list_every_key(router_dir: Path) -> None:
    from safetensors.numpy import load_file

    docs = DOCS.read_text(encoding="utf-8")
    documented = set(re.findall(r"`([A-Za-z_][\w.]*)`", docs))
    metadata = json.loads((router_dir / "router.json").read_text())
    missing = [key for key in _keys(metadata) if key not in documented]
    assert missing == []
    arrays = load_file(str(router_dir / "scorer.safetensors"))
    assert [name for name in arrays if name not in documented] == []


# Corrupt inputs, each with its own error ----------------------------------------------


def test_truncated_array_file(router_dir: Path) -> None:
    path = router_dir / "scorer.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(RouterFormatError) as caught:
        Router.from_pretrained(router_dir)
    assert "scorer.safetensors" in str(caught.value)
    assert "truncated or corrupt" in str(caught.value)


def test_missing_top_level_key(router_dir: Path) -> None:
    edit_metadata(router_dir, lambda m: m.pop("model_a"))
    with pytest.raises(RouterFormatError, match="missing required keys: model_a"):
        Router.from_pretrained(router_dir)


def test_missing_nested_key(router_dir: Path) -> None:
    edit_metadata(router_dir, lambda m: m["embedder"].pop("dimension"))
    with pytest.raises(
        RouterFormatError, match=r"invalid metadata: missing or bad 'dimension'"
    ):
        Router.from_pretrained(router_dir)


def test_invalid_json(router_dir: Path) -> None:
    (router_dir / "router.json").write_text('{"format": "rorf-router",')
    with pytest.raises(RouterFormatError, match="is not valid JSON"):
        Router.from_pretrained(router_dir)


def test_other_format_name(router_dir: Path) -> None:
    edit_metadata(router_dir, lambda m: m.update(format="something-else"))
    with pytest.raises(RouterFormatError, match="is not a RoRF router"):
        Router.from_pretrained(router_dir)


def test_forest_width_differs_from_embedder(router_dir: Path) -> None:
    edit_metadata(router_dir, lambda m: m["embedder"].update(dimension=128))
    with pytest.raises(RouterFormatError) as caught:
        Router.from_pretrained(router_dir)
    assert "the forest takes 256 features" in str(caught.value)
    assert "embedder dimension is 128" in str(caught.value)


def test_embedder_options_change_width(router_dir: Path) -> None:
    router = Router.from_pretrained(router_dir, embedder_options={"trunc_dim": 128})
    with pytest.raises(
        RouterFormatError, match="returns 128 dimensions but .* trained on 256"
    ):
        router.win_rate(["a prompt"])


def test_label_count_differs_from_arrays(router_dir: Path) -> None:
    edit_metadata(router_dir, lambda m: m["scorer"]["state"].update(classes=[0, 1, 3]))
    with pytest.raises(
        RouterFormatError, match="lists 3 classes but the forest arrays hold 4"
    ):
        Router.from_pretrained(router_dir)


def test_feature_count_differs_from_arrays(router_dir: Path) -> None:
    edit_metadata(router_dir, lambda m: m["scorer"]["state"].update(n_features=300))
    with pytest.raises(
        RouterFormatError, match="says 300 features but the forest arrays use 256"
    ):
        Router.from_pretrained(router_dir)


def test_array_shape_checked(router_dir: Path) -> None:
    from safetensors.numpy import load_file, save_file

    path = router_dir / "scorer.safetensors"
    arrays = load_file(str(path))
    arrays["threshold"] = arrays["threshold"][:-1].copy()
    save_file(arrays, str(path))
    with pytest.raises(RouterFormatError, match="'threshold'"):
        Router.from_pretrained(router_dir)


def test_array_missing(router_dir: Path) -> None:
    from safetensors.numpy import load_file, save_file

    path = router_dir / "scorer.safetensors"
    arrays = load_file(str(path))
    del arrays["leaf_value"]
    save_file(arrays, str(path))
    with pytest.raises(RouterFormatError, match="'leaf_value' is missing"):
        Router.from_pretrained(router_dir)


@pytest.mark.parametrize("version", ["3.0", "10.3"])
def test_newer_major_version_rejected(router_dir: Path, version: str) -> None:
    edit_metadata(router_dir, lambda m: m.update(format_version=version))
    with pytest.raises(RouterFormatError) as caught:
        Router.from_pretrained(router_dir)
    assert f"format version {version}, newer than this rorf-core reads" in str(
        caught.value
    )
    assert "pip install -U rorf-core" in str(caught.value)


def test_newer_minor_version_loads(router_dir: Path) -> None:
    edit_metadata(
        router_dir, lambda m: m.update(format_version="2.9", future_key=[1, 2])
    )
    assert Router.from_pretrained(router_dir).model_a == "big-model"


def test_version_1_router_still_loads(router_dir: Path) -> None:
    # 1.x files predate the n-gram model and carry no "lexical" key.
    edit_metadata(router_dir, lambda m: (m.update(format_version="1.0"), m.pop("lexical", None)))
    router = Router.from_pretrained(router_dir)
    assert router.model_a == "big-model"
    assert router.lexical is None


@pytest.mark.parametrize(
    ("version", "message"),
    [("0.9", "no longer reads"), ("one", "invalid format_version")],
)
def test_old_or_invalid_version_rejected(
    router_dir: Path, version: str, message: str
) -> None:
    edit_metadata(router_dir, lambda m: m.update(format_version=version))
    with pytest.raises(RouterFormatError, match=message):
        Router.from_pretrained(router_dir)


def test_path_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "router"
    with pytest.raises(RouterNotFoundError) as caught:
        Router.from_pretrained(missing)
    assert str(missing) in str(caught.value)


def test_missing_array_file(router_dir: Path) -> None:
    (router_dir / "scorer.safetensors").unlink()
    with pytest.raises(RouterNotFoundError, match="missing scorer.safetensors"):
        Router.from_pretrained(router_dir)


# Loading runs no code from the directory ----------------------------------------------


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return Path.touch, (self.marker,)


def test_safe_router_ignores_pickle_beside_it(router_dir: Path, tmp_path: Path) -> None:
    import pickle

    marker = tmp_path / "payload-ran"
    (router_dir / "classifier.pkl").write_bytes(pickle.dumps(_Payload(marker)))
    router = Router.from_pretrained(router_dir)  # no allow_pickle
    assert router.model_a == "big-model"
    assert not marker.exists()


# Atomic write -------------------------------------------------------------------------


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_failed_write_keeps_old_router(
    router_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import safetensors.numpy

    before = {p.name: p.read_bytes() for p in router_dir.iterdir()}

    def fail(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.numpy, "save_file", fail)
    with pytest.raises(OSError, match="disk full"):
        make_router(seed=1).save_pretrained(router_dir)
    assert {p.name: p.read_bytes() for p in router_dir.iterdir()} == before
    assert _leftovers(router_dir.parent) == []


def test_rewrite_replaces_router(router_dir: Path) -> None:
    second = make_router(seed=1, n_estimators=3)
    second.save_pretrained(router_dir)
    loaded = Router.from_pretrained(router_dir)
    assert loaded.scorer.forest_.n_trees == 3
    assert _leftovers(router_dir.parent) == []


def test_write_refuses_non_router_directory(tmp_path: Path) -> None:
    target = tmp_path / "photos"
    target.mkdir()
    (target / "cat.jpg").write_bytes(b"not a router")
    with pytest.raises(RouterFormatError, match="refusing to overwrite"):
        make_router().save_pretrained(target)
    assert (target / "cat.jpg").read_bytes() == b"not a router"
    assert _leftovers(tmp_path) == []
