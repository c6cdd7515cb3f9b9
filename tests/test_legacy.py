"""Legacy RoRF routers: classifier.pkl, the opt-in, and conversion."""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import MMLU, MODEL_A, MODEL_B
from sklearn.ensemble import RandomForestClassifier

from rorf_core import Controller, RouterFormatError, UnknownNameError, UnsafeRouterError
from rorf_core.errors import EmbeddingError
from rorf_core.labels import get_label_scheme
from rorf_core.legacy import (
    LEGACY_EMBEDDERS,
    LegacyEmbedderSpec,
    PickleLoadWarning,
    UnavailableEmbedder,
    convert_legacy_router,
    legacy_identity,
    load_legacy_router,
    pickled_sklearn_versions,
)
from rorf_core.router import Router

LEGACY_NAME = "rorf-wordllama-modela-modelb"

# Tests that check the warning catch it with pytest.warns; the rest need not
# repeat it in the report.
pytestmark = pytest.mark.filterwarnings("ignore::rorf_core.legacy.PickleLoadWarning")


def fit_forest(
    n_features: int = 256, labels: int = 4, rows: int = 300, seed: int = 0
) -> RandomForestClassifier:
    """A small forest on random data, as a stand-in for a RoRF classifier."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, n_features)).astype(np.float32)
    y = np.arange(rows) % labels
    forest = RandomForestClassifier(n_estimators=8, max_depth=6, random_state=seed)
    return forest.fit(x, y)


def write_legacy(
    directory: Path,
    forest: Any,
    config: dict[str, Any] | None = None,
    protocol: int = 4,
) -> Path:
    """Write a RoRF-style router: classifier.pkl and, if given, config.json."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "classifier.pkl").write_bytes(pickle.dumps(forest, protocol=protocol))
    if config is not None:
        (directory / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return directory


def pickle_as_version(
    forest: Any, version: str, monkeypatch: pytest.MonkeyPatch
) -> bytes:
    """Pickle ``forest`` as if scikit-learn ``version`` wrote it."""
    import sklearn.base

    # BaseEstimator.__getstate__ stores sklearn.base.__version__ in the state.
    with monkeypatch.context() as patch:
        patch.setattr(sklearn.base, "__version__", version)
        return pickle.dumps(forest)


def pickle_without_missing_values(forest: Any) -> bytes:
    """Pickle ``forest`` with tree nodes as scikit-learn before 1.3 wrote them.

    Those releases had no ``missing_go_to_left`` field in the node records,
    which is what makes their pickles fail to load in later releases.
    """
    from sklearn.tree._tree import Tree

    class OldNodes(pickle.Pickler):
        def reducer_override(self, obj: Any) -> Any:
            if not isinstance(obj, Tree):
                return NotImplemented
            cls, args, state = obj.__reduce__()
            nodes = state["nodes"]
            names = [name for name in nodes.dtype.names if name != "missing_go_to_left"]
            old = np.zeros(
                nodes.shape, dtype=[(name, nodes.dtype[name]) for name in names]
            )
            for name in names:
                old[name] = nodes[name]
            return cls, args, {**state, "nodes": old}

    buffer = io.BytesIO()
    OldNodes(buffer).dump(forest)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def mmlu_forest() -> tuple[RandomForestClassifier, np.ndarray]:
    """A forest fitted on wordllama embeddings of MMLU prompts with RoRF labels,
    and the 1,000 embeddings it is compared on (the first 600 trained it)."""
    if not MMLU.is_file():
        pytest.skip(f"shared MMLU data not found at {MMLU}")
    import pyarrow.parquet as pq
    from rorf_wordllama.embedder import WordLlamaEmbedder

    table = pq.read_table(MMLU).to_pydict()
    rows = slice(0, 1000)
    labels = get_label_scheme("rorf")(
        np.asarray(table[f"{MODEL_A}/score"][rows]),
        np.asarray(table[f"{MODEL_B}/score"][rows]),
    )
    embeddings = WordLlamaEmbedder().embed(table["Input"][rows])
    forest = RandomForestClassifier(n_estimators=20, max_depth=12, random_state=0)
    forest.fit(embeddings[:600], labels[:600])
    return forest, embeddings


@pytest.fixture
def legacy_dir(tmp_path: Path) -> Path:
    return write_legacy(tmp_path / LEGACY_NAME, fit_forest())


# The opt-in -------------------------------------------------------------------


def test_directory_without_pickle_is_not_legacy(tmp_path: Path) -> None:
    assert load_legacy_router(tmp_path, name="x", allow_pickle=True) is None


def test_pickle_needs_opt_in(legacy_dir: Path) -> None:
    with pytest.raises(UnsafeRouterError) as caught:
        load_legacy_router(legacy_dir, name=str(legacy_dir), allow_pickle=False)
    message = str(caught.value)
    assert "allow_pickle=True" in message
    assert "--allow-pickle" in message
    assert f"rorf convert {legacy_dir} --out DIR --allow-pickle" in message
    assert "runs code" in message


def test_opt_in_warns_and_logs(
    legacy_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="rorf_core.legacy"):
        with pytest.warns(PickleLoadWarning, match="runs code from the file"):
            router = load_legacy_router(legacy_dir, name=LEGACY_NAME, allow_pickle=True)
    assert isinstance(router, Router)
    assert any("runs code from the file" in record.message for record in caplog.records)


def test_opt_in_router_routes(legacy_dir: Path) -> None:
    with pytest.warns(PickleLoadWarning):
        controller = Controller(
            router=str(legacy_dir), allow_pickle=True, threshold=0.0
        )
    assert controller.model_a == "modela"
    assert controller.model_b == "modelb"
    assert controller.route("What is the derivative of x squared?") == "modela"


# Identity -------------------------------------------------------------------------


def test_config_json_wins_over_name(tmp_path: Path) -> None:
    config = {"embedding_provider": "wordllama", "llms": ["gpt-4o", "llama-3.1-8b"]}
    directory = write_legacy(tmp_path / "rorf-jina-x-y", fit_forest(), config)
    identity = legacy_identity(directory, str(directory))
    assert identity.embedder == "wordllama"
    assert (identity.model_a, identity.model_b) == ("gpt-4o", "llama-3.1-8b")
    assert identity.source == "config.json"


@pytest.mark.parametrize(
    ("repo_id", "registry", "model"),
    [
        (
            "notdiamond/rorf-jina-llama31405b-llama3170b",
            "jina",
            "jinaai/jina-embeddings-v3",
        ),
        (
            "notdiamond/rorf-voyage-gpt4o-claude35sonnet",
            "voyage",
            "voyage-large-2-instruct",
        ),
    ],
)
def test_repo_name_names_embedder(
    tmp_path: Path, repo_id: str, registry: str, model: str
) -> None:
    identity = legacy_identity(tmp_path, repo_id)
    assert identity.spec.registry_name == registry
    assert identity.spec.model == model
    short_a, short_b = repo_id.split("/")[1].split("-")[2:]
    assert (identity.model_a, identity.model_b) == (short_a, short_b)
    assert identity.source == "the repo name"


def test_unparsable_name_without_config(tmp_path: Path) -> None:
    directory = write_legacy(tmp_path / "my-router", fit_forest())
    with pytest.raises(RouterFormatError, match=r"rorf-<embedder>-<model_a>-<model_b>"):
        load_legacy_router(directory, name=str(directory), allow_pickle=True)


def test_unknown_legacy_embedder(tmp_path: Path) -> None:
    directory = write_legacy(tmp_path / "rorf-cohere-a-b", fit_forest())
    with pytest.raises(RouterFormatError) as caught:
        load_legacy_router(directory, name=str(directory), allow_pickle=True)
    assert "'cohere'" in str(caught.value)
    for known in LEGACY_EMBEDDERS:
        assert known in str(caught.value)


# Checks on the unpickled forest -----------------------------------------------------


def test_feature_count_must_match_embedder(tmp_path: Path) -> None:
    directory = write_legacy(tmp_path / LEGACY_NAME, fit_forest(n_features=100))
    with pytest.raises(RouterFormatError) as caught:
        load_legacy_router(directory, name=str(directory), allow_pickle=True)
    assert "takes 100 features" in str(caught.value)
    assert "returns 256" in str(caught.value)


def test_labels_outside_rorf_scheme(tmp_path: Path) -> None:
    directory = write_legacy(tmp_path / LEGACY_NAME, fit_forest(labels=6))
    with pytest.raises(RouterFormatError, match=r"classes are \[0, 1, 2, 3, 4, 5\]"):
        load_legacy_router(directory, name=str(directory), allow_pickle=True)


def test_pickle_of_something_else(tmp_path: Path) -> None:
    directory = write_legacy(tmp_path / LEGACY_NAME, {"not": "a forest"})
    with pytest.raises(RouterFormatError, match=r"builtins\.dict, not a RandomForest"):
        load_legacy_router(directory, name=str(directory), allow_pickle=True)


class _MakesDirectory:
    """Unpickles into a call of os.makedirs: a stand-in for a hostile payload."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> Any:
        return os.makedirs, (str(self.path),)


def test_hostile_global_not_called(tmp_path: Path) -> None:
    marker = tmp_path / "payload-ran"
    directory = write_legacy(tmp_path / LEGACY_NAME, _MakesDirectory(marker))
    with pytest.raises(UnsafeRouterError, match=r"imports (posix|nt|os)\.makedirs"):
        load_legacy_router(directory, name=str(directory), allow_pickle=True)
    assert not marker.exists()


# scikit-learn versions ----------------------------------------------------------------


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_version_read_from_opcodes(
    protocol: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sklearn.base

    with monkeypatch.context() as patch:
        patch.setattr(sklearn.base, "__version__", "1.2.2")
        data = pickle.dumps(fit_forest(n_features=4), protocol=protocol)
    assert pickled_sklearn_versions(data) == ["1.2.2"]


def test_version_read_from_truncated_pickle(monkeypatch: pytest.MonkeyPatch) -> None:
    data = pickle_as_version(fit_forest(n_features=4), "1.4.0", monkeypatch)
    assert pickled_sklearn_versions(data[: len(data) // 2]) == ["1.4.0"]


def test_pickle_from_older_sklearn_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    forest = fit_forest()
    directory = tmp_path / LEGACY_NAME
    directory.mkdir()
    (directory / "classifier.pkl").write_bytes(
        pickle_as_version(forest, "1.5.2", monkeypatch)
    )
    with caplog.at_level(logging.WARNING, logger="rorf_core.legacy"):
        with pytest.warns(PickleLoadWarning):
            router = load_legacy_router(
                directory, name=str(directory), allow_pickle=True
            )
    assert router.training["pickled_with_sklearn"] == "1.5.2"
    # sklearn's InconsistentVersionWarning is passed on to the log.
    assert any("1.5.2" in record.getMessage() for record in caplog.records)
    rows = np.random.default_rng(1).normal(size=(50, 256)).astype(np.float32)
    np.testing.assert_allclose(
        router.scorer.predict_proba(rows), forest.predict_proba(rows), atol=1e-6
    )


def test_pickle_from_sklearn_before_1_3_names_versions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sklearn
    import sklearn.base

    with monkeypatch.context() as patch:
        patch.setattr(sklearn.base, "__version__", "1.2.2")
        data = pickle_without_missing_values(fit_forest())
    directory = tmp_path / LEGACY_NAME
    directory.mkdir()
    (directory / "classifier.pkl").write_bytes(data)
    with pytest.raises(RouterFormatError) as caught:
        with pytest.warns(PickleLoadWarning):
            load_legacy_router(directory, name=str(directory), allow_pickle=True)
    message = str(caught.value)
    assert "written by scikit-learn 1.2.2" in message
    assert f"installed scikit-learn {sklearn.__version__}" in message
    assert "scikit-learn==1.2.2" in message
    assert "rorf convert" in message


def test_truncated_pickle_same_version(legacy_dir: Path) -> None:
    path = legacy_dir / "classifier.pkl"
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(
        RouterFormatError, match=r"not a loadable scikit-learn forest pickle"
    ):
        with pytest.warns(PickleLoadWarning):
            load_legacy_router(legacy_dir, name=LEGACY_NAME, allow_pickle=True)


# Conversion -------------------------------------------------------------------------


def test_converted_router_matches_pickle(
    tmp_path: Path, mmlu_forest: tuple[RandomForestClassifier, np.ndarray]
) -> None:
    forest, embeddings = mmlu_forest
    assert embeddings.shape == (1000, 256)
    source = write_legacy(tmp_path / LEGACY_NAME, forest)
    with pytest.warns(PickleLoadWarning):
        convert_legacy_router(source, tmp_path / "safe", allow_pickle=True)
    router = Router.from_pretrained(tmp_path / "safe")  # no opt-in needed now
    expected = forest.predict_proba(embeddings)
    np.testing.assert_allclose(
        router.scorer.predict_proba(embeddings), expected, atol=1e-6, rtol=0
    )
    classes = list(forest.classes_)
    win_rate = expected[:, classes.index(0)] + expected[:, classes.index(1)]
    np.testing.assert_allclose(
        router.win_rate_from_embeddings(embeddings), win_rate, atol=1e-6
    )


def test_conversion_records_provenance(legacy_dir: Path, tmp_path: Path) -> None:
    with pytest.warns(PickleLoadWarning):
        convert_legacy_router(legacy_dir, tmp_path / "safe", allow_pickle=True)
    metadata = json.loads((tmp_path / "safe" / "router.json").read_text())
    assert metadata["embedder"]["name"] == "wordllama"
    assert metadata["embedder"]["dimension"] == 256
    assert (metadata["model_a"], metadata["model_b"]) == ("modela", "modelb")
    assert metadata["label_scheme"] == "rorf"
    assert metadata["training"]["source"] == "legacy RoRF classifier.pkl"
    assert metadata["training"]["converted"]


def test_conversion_needs_opt_in(legacy_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(UnsafeRouterError, match="--allow-pickle"):
        convert_legacy_router(legacy_dir, tmp_path / "safe")
    assert not (tmp_path / "safe").exists()


def test_conversion_of_safe_router_rejected(legacy_dir: Path, tmp_path: Path) -> None:
    with pytest.warns(PickleLoadWarning):
        convert_legacy_router(legacy_dir, tmp_path / "safe", allow_pickle=True)
    with pytest.raises(RouterFormatError, match="already in the safe format"):
        convert_legacy_router(tmp_path / "safe", tmp_path / "again", allow_pickle=True)


def test_conversion_keeps_existing_output(legacy_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "safe"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(RouterFormatError, match="--overwrite"):
        convert_legacy_router(legacy_dir, out, allow_pickle=True)
    assert (out / "notes.txt").read_text() == "mine"


@pytest.fixture
def absent_embedder(monkeypatch: pytest.MonkeyPatch) -> str:
    """A legacy embedder name whose registry name no plugin provides."""
    spec = LegacyEmbedderSpec(
        registry_name="absent-embedder",
        model="absent-model",
        dimension=64,
        options={"prefix": "Cluster: "},
    )
    monkeypatch.setitem(LEGACY_EMBEDDERS, "absent", spec)
    return "rorf-absent-modela-modelb"


def test_conversion_without_embedder_plugin(
    tmp_path: Path, absent_embedder: str
) -> None:
    source = write_legacy(tmp_path / absent_embedder, fit_forest(n_features=64))
    with pytest.warns(PickleLoadWarning):
        router = load_legacy_router(
            source, name=str(source), allow_pickle=True, require_embedder=False
        )
    assert isinstance(router.embedder, UnavailableEmbedder)
    with pytest.raises(EmbeddingError, match="not installed"):
        router.win_rate(["hello"])
    with pytest.warns(PickleLoadWarning):
        convert_legacy_router(source, tmp_path / "safe", allow_pickle=True)
    metadata = json.loads((tmp_path / "safe" / "router.json").read_text())
    assert metadata["embedder"]["name"] == "absent-embedder"
    assert metadata["embedder"]["model"] == "absent-model"
    assert metadata["embedder"]["dimension"] == 64
    assert metadata["embedder"]["options"] == {"prefix": "Cluster: "}
    # Loading the converted router names the missing plugin.
    with pytest.raises(UnknownNameError, match="'absent-embedder'"):
        Router.from_pretrained(tmp_path / "safe")


def test_routing_needs_embedder_plugin(tmp_path: Path, absent_embedder: str) -> None:
    source = write_legacy(tmp_path / absent_embedder, fit_forest(n_features=64))
    with pytest.raises(UnknownNameError, match="'absent-embedder'"):
        with pytest.warns(PickleLoadWarning):
            Controller(router=str(source), allow_pickle=True)


def test_jina_conversion_keeps_rorf_options(tmp_path: Path) -> None:
    # Works whether or not rorf-jina is installed: conversion never embeds.
    source = write_legacy(
        tmp_path / "rorf-jina-llama31405b-llama3170b", fit_forest(n_features=1024)
    )
    with pytest.warns(PickleLoadWarning):
        convert_legacy_router(source, tmp_path / "safe", allow_pickle=True)
    embedder = json.loads((tmp_path / "safe" / "router.json").read_text())["embedder"]
    assert embedder["name"] == "jina"
    assert embedder["model"] == "jinaai/jina-embeddings-v3"
    assert embedder["dimension"] == 1024
    assert embedder["options"]["task"] == "classification"


# The command --------------------------------------------------------------------------


def test_convert_command(legacy_dir: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from rorf_core.cli import _add_commands, cli

    _add_commands()
    out = tmp_path / "safe"
    refused = CliRunner().invoke(cli, ["convert", str(legacy_dir), "--out", str(out)])
    assert isinstance(refused.exception, UnsafeRouterError)
    assert not out.exists()
    with pytest.warns(PickleLoadWarning):
        result = CliRunner().invoke(
            cli, ["convert", str(legacy_dir), "--out", str(out), "--allow-pickle"]
        )
    assert result.exit_code == 0, result.output
    assert f"to {out}" in result.output
    controller = Controller(router=str(out))
    assert controller.route("a prompt") in ("modela", "modelb")
