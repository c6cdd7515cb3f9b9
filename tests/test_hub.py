"""Routers by hub name: the local hub cache, offline mode, errors, push."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from huggingface_hub import ModelCard, constants, snapshot_download
from test_legacy import fit_forest, write_legacy

from rorf_core import (
    Controller,
    RouterFormatError,
    RouterNotFoundError,
    UnsafeRouterError,
)
from rorf_core.hub import push_router, resolve_router, stage_router
from rorf_core.legacy import PickleLoadWarning

REPO_ID = "testorg/rorf-wordllama-modela-modelb"
COMMIT = "a" * 40
OLD_COMMIT = "b" * 40

pytestmark = pytest.mark.filterwarnings("ignore::rorf_core.legacy.PickleLoadWarning")


def _blob_name(content: bytes, lfs: bool) -> str:
    # The hub names LFS blobs by their sha256 and other files by git's blob sha1.
    if lfs:
        return hashlib.sha256(content).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def add_to_hub_cache(
    cache: Path,
    repo_id: str,
    files: dict[str, bytes],
    commit: str = COMMIT,
    refs: tuple[str, ...] = ("main",),
) -> Path:
    """Lay out one commit of a model repo as huggingface_hub's cache does.

    ``models--ORG--NAME/blobs/<hash>`` contains the content,
    ``snapshots/<commit>/<file>`` links to the blob, and ``refs/<name>``
    contains the commit each branch or tag points to.
    """
    owner, name = repo_id.split("/")
    repo = cache / f"models--{owner}--{name}"
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    for filename, content in files.items():
        blob = _blob_name(content, lfs=filename.endswith((".pkl", ".safetensors")))
        (repo / "blobs" / blob).write_bytes(content)
        link = snapshot / filename
        link.symlink_to(os.path.relpath(repo / "blobs" / blob, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    for ref in refs:
        (repo / "refs" / ref).write_text(commit)
    return snapshot


def legacy_files(tmp_path: Path, seed: int = 0) -> dict[str, bytes]:
    """classifier.pkl and config.json of a RoRF-style router for wordllama.

    The config has RoRF trainer keys but no ``embedding_provider``, so the
    embedder and models come from the repo id.
    """
    config = {"trainer": "RoRF", "max_depth": 6, "n_estimators": 8}
    source = write_legacy(tmp_path / f"legacy-{seed}", fit_forest(seed=seed), config)
    return {
        name: (source / name).read_bytes() for name in ("classifier.pkl", "config.json")
    }


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty hub cache under a temporary HF_HOME, with HF_HUB_OFFLINE=1.

    huggingface_hub reads these variables once, when it is imported, so the
    constants it read are set too; the resolution itself is not replaced.
    """
    home = tmp_path / "hf-home"
    cache = home / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)  # so the repo id is not also a local directory
    return cache


@pytest.fixture
def cached_legacy(hub_cache: Path, tmp_path: Path) -> Path:
    return add_to_hub_cache(hub_cache, REPO_ID, legacy_files(tmp_path))


# Resolution through the real cache ----------------------------------------------


def test_snapshot_download_reads_test_cache(cached_legacy: Path) -> None:
    assert Path(snapshot_download(REPO_ID)) == cached_legacy
    assert resolve_router(REPO_ID) == cached_legacy


def test_controller_routes_legacy_from_cache(cached_legacy: Path) -> None:
    prompts = ["Solve 3x + 5 = 20 for x.", "Who wrote Hamlet?"]
    with pytest.warns(PickleLoadWarning):
        controller = Controller(router=REPO_ID, allow_pickle=True, threshold=0.5)
    rates = controller.batch_calculate_win_rate(prompts)
    assert rates.shape == (2,)
    assert np.all((rates >= 0) & (rates <= 1))
    routed = controller.batch_route(prompts)
    assert routed == ["modela" if rate >= 0.5 else "modelb" for rate in rates]
    # The win rate is RoRF's p0 + p1 of the pickled forest.
    forest = controller.router.scorer.estimator_
    proba = forest.predict_proba(controller.router.embed(prompts))
    np.testing.assert_allclose(rates, proba[:, 0] + proba[:, 1], atol=1e-6)


def test_cached_legacy_needs_opt_in(cached_legacy: Path) -> None:
    with pytest.raises(UnsafeRouterError) as caught:
        Controller(router=REPO_ID)
    message = str(caught.value)
    assert "allow_pickle=True" in message
    assert f"rorf convert {REPO_ID} --out DIR --allow-pickle" in message


def test_offline_controller_in_fresh_process(
    cached_legacy: Path, tmp_path: Path
) -> None:
    # Only the environment is set here: huggingface_hub reads it on import.
    script = (
        "import json, warnings\n"
        "from rorf_core import Controller\n"
        "warnings.simplefilter('ignore')\n"
        f"c = Controller(router={REPO_ID!r}, allow_pickle=True, threshold=0.0)\n"
        "print(json.dumps([c.route('What is 2 + 2?'), c.model_b]))\n"
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("HF_", "HUGGINGFACE_"))
    }
    env.update(HF_HOME=str(tmp_path / "hf-home"), HF_HUB_OFFLINE="1")
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == ["modela", "modelb"]


def test_revision_pinned_in_cache(hub_cache: Path, tmp_path: Path) -> None:
    old = add_to_hub_cache(
        hub_cache, REPO_ID, legacy_files(tmp_path, 1), OLD_COMMIT, ("v1",)
    )
    new = add_to_hub_cache(
        hub_cache, REPO_ID, legacy_files(tmp_path, 2), COMMIT, ("main",)
    )
    assert resolve_router(REPO_ID) == new
    assert resolve_router(REPO_ID, revision="v1") == old
    assert resolve_router(REPO_ID, revision=OLD_COMMIT) == old
    assert (old / "classifier.pkl").read_bytes() != (
        new / "classifier.pkl"
    ).read_bytes()


def test_local_directory_wins_over_hub(cached_legacy: Path, tmp_path: Path) -> None:
    local = tmp_path / "testorg" / "rorf-wordllama-modela-modelb"
    local.mkdir(parents=True)
    assert resolve_router(REPO_ID) == Path(REPO_ID)
    assert resolve_router(str(local)) == local


# Errors that list what was tried ---------------------------------------------------


def test_missing_repo_offline(hub_cache: Path, tmp_path: Path) -> None:
    with pytest.raises(RouterNotFoundError) as caught:
        resolve_router("testorg/absent")
    message = str(caught.value)
    assert "'testorg/absent'" in message
    assert str(tmp_path / "testorg" / "absent") in message
    assert "revision 'main'" in message
    assert "HF_HUB_OFFLINE is set" in message
    assert "HF_HUB_OFFLINE unset" in message


def test_missing_revision_offline(cached_legacy: Path) -> None:
    with pytest.raises(RouterNotFoundError) as caught:
        resolve_router(REPO_ID, revision="v9")
    assert "revision 'v9'" in str(caught.value)
    assert "HF_HUB_OFFLINE is set" in str(caught.value)


def test_cached_repo_without_router(hub_cache: Path) -> None:
    add_to_hub_cache(hub_cache, "testorg/other", {"weights.json": b"{}"})
    with pytest.raises(RouterNotFoundError) as caught:
        resolve_router("testorg/other")
    assert "neither router.json nor classifier.pkl" in str(caught.value)
    assert "weights.json" in str(caught.value)


def test_file_is_not_router(tmp_path: Path) -> None:
    file = tmp_path / "router.json"
    file.write_text("{}")
    with pytest.raises(RouterNotFoundError, match="is a file"):
        resolve_router(file)


def test_missing_path_not_repo_id(tmp_path: Path) -> None:
    with pytest.raises(RouterNotFoundError) as caught:
        resolve_router(tmp_path / "deep" / "missing" / "router")
    assert str(tmp_path / "deep" / "missing" / "router") in str(caught.value)
    assert "owner/name" in str(caught.value)


class _NotFoundHub(http.server.BaseHTTPRequestHandler):
    """Responds to every request as the hub does for a missing repo or revision."""

    error_code = "RepoNotFound"

    def _reply(self) -> None:
        self.send_response(404)
        self.send_header("X-Error-Code", self.error_code)
        self.send_header("X-Error-Message", "not found")
        self.send_header("Content-Type", "application/json")
        body = json.dumps({"error": "not found"}).encode()
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = _reply

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def local_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[type[_NotFoundHub]]:
    """A hub endpoint on 127.0.0.1 that has no repos, with an empty cache."""
    handler = type("Handler", (_NotFoundHub,), {})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token_not_real")
    yield handler
    server.shutdown()
    server.server_close()


def test_missing_repo_online(local_hub: type[_NotFoundHub]) -> None:
    with pytest.raises(RouterNotFoundError) as caught:
        resolve_router("testorg/absent", revision="v2")
    message = str(caught.value)
    assert "the Hugging Face hub has no repo 'testorg/absent'" in message
    assert "revision 'v2'" in message
    assert "HF_TOKEN" in message
    assert "RepositoryNotFoundError" in message


def test_missing_revision_online(local_hub: type[_NotFoundHub]) -> None:
    local_hub.error_code = "RevisionNotFound"
    with pytest.raises(RouterNotFoundError) as caught:
        resolve_router("testorg/present", revision="v2")
    assert "RevisionNotFoundError" in str(caught.value)
    assert "check the branch, tag or commit" in str(caught.value)


# Push ---------------------------------------------------------------------------------


@pytest.fixture
def safe_router(tmp_path: Path) -> Path:
    """A converted router with training metrics and a calibration table."""
    from rorf_core.calibration import calibration_table
    from rorf_core.legacy import convert_legacy_router

    source = write_legacy(tmp_path / "rorf-wordllama-modela-modelb", fit_forest())
    out = convert_legacy_router(source, tmp_path / "safe", allow_pickle=True)
    metadata = json.loads((out / "router.json").read_text())
    scores = np.random.default_rng(0).random(200)
    metadata["calibration"] = {
        "dataset": "held-out rows",
        "rows": 200,
        "table": calibration_table(scores),
    }
    metadata["training"].update(
        config={"dataset": "testorg/battles", "eval_fraction": 0.2, "seed": 0},
        train_rows=800,
        eval_rows=200,
        metrics={"apgr": 0.6123, "cpt_50": 0.31, "score_a": 0.8},
    )
    (out / "router.json").write_text(json.dumps(metadata))
    (out / "calibration-cache").mkdir()
    (out / "calibration-cache" / "scores.npy").write_bytes(b"local only")
    return out


class _Uploads:
    """Records the HfApi calls that push_router makes, in place of the hub."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from huggingface_hub import HfApi

        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.staged: dict[str, bytes] = {}
        uploads = self

        def create_repo(api: Any, repo_id: str, **kwargs: Any) -> str:
            uploads.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))
            return f"https://huggingface.co/{repo_id}"

        def create_branch(api: Any, repo_id: str, **kwargs: Any) -> None:
            uploads.calls.append(("create_branch", {"repo_id": repo_id, **kwargs}))

        def upload_folder(api: Any, **kwargs: Any) -> Any:
            uploads.calls.append(("upload_folder", kwargs))
            # The staging folder is removed after the call, so read it now.
            folder = Path(kwargs["folder_path"])
            uploads.staged = {p.name: p.read_bytes() for p in folder.iterdir()}
            return type("Commit", (), {"commit_url": "https://huggingface.co/c/1"})()

        monkeypatch.setattr(HfApi, "create_repo", create_repo)
        monkeypatch.setattr(HfApi, "create_branch", create_branch)
        monkeypatch.setattr(HfApi, "upload_folder", upload_folder)

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


def test_push_uploads_router_and_card(
    safe_router: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uploads = _Uploads(monkeypatch)
    commit = push_router(safe_router, "testorg/my-router", private=True, revision="dev")
    assert commit.commit_url == "https://huggingface.co/c/1"
    assert uploads.names() == ["create_repo", "create_branch", "upload_folder"]
    assert uploads.calls[0][1]["private"] is True
    assert uploads.calls[1][1]["branch"] == "dev"
    upload = uploads.calls[2][1]
    assert upload["repo_id"] == "testorg/my-router"
    assert upload["revision"] == "dev"
    assert upload["repo_type"] == "model"
    assert sorted(uploads.staged) == ["README.md", "router.json", "scorer.safetensors"]
    assert uploads.staged["router.json"] == (safe_router / "router.json").read_bytes()


def test_public_push_leaves_visibility_to_hub(
    safe_router: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uploads = _Uploads(monkeypatch)
    push_router(safe_router, "testorg/my-router")
    assert uploads.names() == ["create_repo", "upload_folder"]
    assert uploads.calls[0][1]["private"] is None
    assert uploads.calls[1][1]["revision"] is None


def test_model_card_content(safe_router: Path, tmp_path: Path) -> None:
    staged = stage_router(safe_router, "testorg/my-router", tmp_path / "staging")
    assert "README.md" in staged
    text = (tmp_path / "staging" / "README.md").read_text()
    card = ModelCard(text)
    assert card.data.library_name == "rorf"
    assert {"rorf", "llm-router", "random-forest", "wordllama"} <= set(card.data.tags)
    assert card.data.datasets == ["testorg/battles"]
    body = card.text
    assert "**modela** (model A)" in body
    assert "**modelb** (model B)" in body
    assert "wordllama (l2_supercat)" in body
    assert "Controller(router='testorg/my-router'" in body
    assert "| apgr | 0.6123 |" in body
    assert "| training rows | 800 |" in body
    metadata = json.loads((safe_router / "router.json").read_text())
    by_percent = {row["percent"]: row for row in metadata["calibration"]["table"]}
    for percent in (0, 50, 100):
        threshold = by_percent[percent]["threshold"]
        reached = 100 * by_percent[percent]["reached"]
        assert f"| {percent}% | {threshold:.6f} | {reached:.1f}% |" in body
    assert "| 55% |" not in body


def test_model_card_skips_local_dataset(safe_router: Path, tmp_path: Path) -> None:
    metadata = json.loads((safe_router / "router.json").read_text())
    metadata["training"]["config"]["dataset"] = "data/battles.parquet"
    (safe_router / "router.json").write_text(json.dumps(metadata))
    stage_router(safe_router, "testorg/my-router", tmp_path / "staging")
    card = ModelCard((tmp_path / "staging" / "README.md").read_text())
    assert card.data.datasets is None
    assert "data/battles.parquet" in card.text


def test_push_of_legacy_router_rejected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uploads = _Uploads(monkeypatch)
    source = write_legacy(tmp_path / "rorf-wordllama-a-b", fit_forest())
    with pytest.raises(RouterFormatError, match="convert it first"):
        push_router(source, "testorg/my-router")
    assert uploads.calls == []


def test_push_of_corrupt_router_rejected(
    safe_router: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uploads = _Uploads(monkeypatch)
    arrays = safe_router / "scorer.safetensors"
    arrays.write_bytes(arrays.read_bytes()[:100])
    with pytest.raises(RouterFormatError, match="truncated or corrupt"):
        push_router(safe_router, "testorg/my-router")
    assert uploads.calls == []


def test_push_command(safe_router: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from rorf_core.cli import _add_commands, cli

    uploads = _Uploads(monkeypatch)
    _add_commands()
    bad = CliRunner().invoke(cli, ["push", str(safe_router), "--repo-id", "no-owner"])
    assert bad.exit_code == 2
    assert "owner/name" in bad.output
    result = CliRunner().invoke(
        cli, ["push", str(safe_router), "--repo-id", "testorg/my-router", "--private"]
    )
    assert result.exit_code == 0, result.output
    assert "https://huggingface.co/c/1" in result.output
    assert uploads.calls[0][1]["private"] is True


def test_unreachable_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    # A port that was just free and has no listener refuses the connection.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(RouterNotFoundError) as caught:
        resolve_router("testorg/anything")
    message = str(caught.value)
    assert "could not be reached and the local cache has no repo" in message
    assert "check the network connection" in message


def test_push_accepts_ngram_router(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rorf_wordllama import EXAMPLE_ROUTER

    # The example router carries the n-gram model's lexical.* arrays.
    uploads = _Uploads(monkeypatch)
    push_router(EXAMPLE_ROUTER, "testorg/example")
    assert uploads.names() == ["create_repo", "upload_folder"]
    lexical = json.loads((EXAMPLE_ROUTER / "router.json").read_text())["lexical"]
    card = uploads.staged["README.md"].decode("utf-8")
    assert f"ridge on {lexical['ngrams']} hashed word n-grams, weight {lexical['weight']}" in card
