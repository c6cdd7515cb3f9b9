"""Routers on the Hugging Face hub: resolving a name, and publishing.

A router name is a local directory, or else a hub repo id (``owner/name``)
that :func:`resolve_router` downloads with ``huggingface_hub``. The token
comes from where ``huggingface_hub`` looks for it (``HF_TOKEN`` or
``hf auth login``), and with ``HF_HUB_OFFLINE=1`` the router is read from
the local hub cache only.

:func:`push_router` publishes a router in the safe format with a generated
model card. Publishing is its own step: training never pushes.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from rorf_core.errors import RouterFormatError, RouterNotFoundError

logger = logging.getLogger(__name__)

__all__ = [
    "ROUTER_FILE_PATTERNS",
    "looks_like_repo_id",
    "hub_offline",
    "resolve_router",
    "stage_router",
    "push_router",
]

#: Files fetched from a router repo: the safe format, extra JSON and array
#: files it may carry, and the two files of a legacy RoRF router.
ROUTER_FILE_PATTERNS = ("*.json", "*.safetensors", "classifier.pkl")
MODEL_CARD_FILE = "README.md"
# Written beside a router by `rorf calibrate`; local scores, not for upload.
_NOT_UPLOADED = ("calibration-cache",)


def looks_like_repo_id(name: str) -> bool:
    """Return whether ``name`` has the ``owner/name`` shape of a hub repo id."""
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "~"))


def hub_offline() -> bool:
    """Return whether ``huggingface_hub`` runs offline (``HF_HUB_OFFLINE`` is set)."""
    from huggingface_hub import constants

    # huggingface_hub reads HF_HUB_OFFLINE once, at import; ask it rather
    # than the environment, so the result matches what the download does.
    check = getattr(constants, "is_offline_mode", None)
    return bool(check() if callable(check) else constants.HF_HUB_OFFLINE)


def resolve_router(
    name_or_path: str | os.PathLike[str], revision: str | None = None
) -> Path:
    """Return the local directory of the router called ``name_or_path``.

    An existing directory is returned as it is. Otherwise a name of the form
    ``owner/name`` is downloaded from the hub at ``revision``, which is a
    branch, tag or commit (default ``main``). When offline, it is read from
    the hub cache.

    :raises RouterNotFoundError: neither a directory nor a hub repo contains
        a router of that name. The message lists what was tried.
    """
    name = os.fspath(name_or_path)
    path = Path(name).expanduser()
    if path.is_dir():
        if revision is not None:
            logger.warning(
                "ignoring revision %r: %s is a local directory", revision, path
            )
        return path
    if path.exists():
        raise RouterNotFoundError(
            f"router {name!r} is a file; a router is a directory holding "
            "router.json and scorer.safetensors (or a legacy classifier.pkl)"
        )
    if not looks_like_repo_id(name):
        raise RouterNotFoundError(
            f"router {name!r} not found: there is no directory "
            f"{str(path.absolute())!r}, and the name is not a hub repo id of the "
            "form owner/name"
        )
    return _download(name, revision, path)


def _where(offline: bool) -> str:
    if offline:
        return "the local hub cache (HF_HUB_OFFLINE is set, so the hub was not asked)"
    return "the Hugging Face hub"


def _not_found(
    repo_id: str, revision: str | None, local: Path, error: Exception
) -> RouterNotFoundError:
    from huggingface_hub.utils import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RevisionNotFoundError,
    )

    offline = hub_offline()
    repo_at_revision = f"repo {repo_id!r} at revision {revision or 'main'!r}"
    # snapshot_download raises LocalEntryNotFoundError online too, when the
    # hub cannot be reached and the cache has no copy.
    unreachable = isinstance(error, LocalEntryNotFoundError) and not offline
    if unreachable:
        where = (
            "the Hugging Face hub could not be reached and the local cache has no "
            + repo_at_revision
        )
    else:
        where = f"{_where(offline)} has no {repo_at_revision}"
    if isinstance(error, GatedRepoError):
        hint = (
            "the repo is gated: accept its terms on the hub and log in (hf auth login)"
        )
    elif isinstance(error, RevisionNotFoundError):
        hint = "the repo exists but not that revision: check the branch, tag or commit"
    elif offline:
        hint = "download it once with HF_HUB_OFFLINE unset, or pass a local directory"
    elif unreachable:
        hint = "check the network connection (or HF_ENDPOINT) and retry"
    else:
        hint = "check the name; for a private repo set HF_TOKEN or run hf auth login"
    return RouterNotFoundError(
        f"router {repo_id!r} not found: no directory {str(local.absolute())!r}, and "
        f"{where} ({type(error).__name__}); {hint}"
    )


def _download(repo_id: str, revision: str | None, local: Path) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    logger.info(
        "fetching router %s at revision %s from %s",
        repo_id,
        revision or "main",
        _where(hub_offline()),
    )
    try:
        directory = Path(
            snapshot_download(
                repo_id,
                revision=revision,
                allow_patterns=list(ROUTER_FILE_PATTERNS),
            )
        )
    except (
        RepositoryNotFoundError,
        RevisionNotFoundError,
        LocalEntryNotFoundError,
        EntryNotFoundError,
    ) as error:
        raise _not_found(repo_id, revision, local, error) from error
    except HfHubHTTPError as error:
        raise RouterNotFoundError(
            f"router {repo_id!r} at revision {revision or 'main'!r}: the hub request "
            f"failed ({error}); retry, or set HF_HUB_OFFLINE=1 to use the local cache"
        ) from error
    _check_router_files(directory, repo_id, revision)
    return directory


def _check_router_files(directory: Path, repo_id: str, revision: str | None) -> None:
    from rorf_core.format import METADATA_FILE
    from rorf_core.legacy import LEGACY_FILE

    if (directory / METADATA_FILE).is_file() or (directory / LEGACY_FILE).is_file():
        return
    present = ", ".join(sorted(p.name for p in directory.iterdir())) or "no files"
    raise RouterNotFoundError(
        f"hub repo {repo_id!r} at revision {revision or 'main'!r} contains no router: "
        f"neither {METADATA_FILE} nor {LEGACY_FILE} is there (it has {present})"
    )


# Publishing ---------------------------------------------------------------------


def _validated_metadata(directory: Path) -> dict[str, Any]:
    """Read a safe-format router and rebuild its scorer, raising if it is invalid."""
    from rorf_core import format as router_format
    from rorf_core import plugins
    from rorf_core.legacy import LEGACY_FILE
    from rorf_core.lexical import load_lexical, split_arrays

    if (
        not (directory / router_format.METADATA_FILE).is_file()
        and (directory / LEGACY_FILE).is_file()
    ):
        raise RouterFormatError(
            f"{str(directory)!r} is a legacy pickled router; convert it first with "
            f"`rorf convert {directory} --out DIR --allow-pickle` and push DIR"
        )
    metadata, arrays = router_format.read_router_dir(directory)
    scorer_arrays, lexical_arrays = split_arrays(arrays)
    try:
        scorer_meta = metadata["scorer"]
        scorer_class = plugins.get_scorer_class(scorer_meta["name"])
        scorer_class.from_state(
            scorer_meta.get("params", {}), scorer_meta["state"], scorer_arrays
        )
    except (KeyError, TypeError) as error:
        raise RouterFormatError(
            f"router {str(directory)!r} has invalid scorer metadata: missing or "
            f"bad {error}"
        ) from error
    load_lexical(metadata.get("lexical"), lexical_arrays, f"router {str(directory)!r}")
    return metadata


def stage_router(
    directory: str | os.PathLike[str], repo_id: str, staging: Path
) -> list[str]:
    """Copy a router and its generated model card into ``staging`` for upload.

    Only files of the router are copied (``calibration-cache`` and hidden
    files stay behind), and any ``README.md`` in the router directory is
    replaced by the generated card. Returns the staged file names.
    """
    from rorf_core.model_card import render_model_card

    source = Path(directory)
    metadata = _validated_metadata(source)
    staging.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.iterdir()):
        if path.name.startswith(".") or path.name in _NOT_UPLOADED:
            continue
        if path.name == MODEL_CARD_FILE or not path.is_file():
            continue
        shutil.copy2(path, staging / path.name)
    card = render_model_card(metadata, repo_id=repo_id)
    (staging / MODEL_CARD_FILE).write_text(card, encoding="utf-8")
    return sorted(p.name for p in staging.iterdir())


def push_router(
    directory: str | os.PathLike[str],
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
) -> Any:
    """Upload a safe-format router with a generated model card to ``repo_id``.

    The repo is created when missing (``private`` applies only then); a
    ``revision`` names a branch, created from ``main`` when missing. The
    token is ``token`` or, when None, whatever ``huggingface_hub`` finds.
    Returns the ``CommitInfo`` of the upload.

    :raises RouterFormatError: the directory is not a valid safe-format
        router (a legacy one must be converted first).
    """
    from huggingface_hub import HfApi

    if not looks_like_repo_id(repo_id):
        raise ValueError(f"repo id must have the form owner/name, got {repo_id!r}")
    with tempfile.TemporaryDirectory(prefix="rorf-push-") as temp:
        staging = Path(temp) / "router"
        files = stage_router(directory, repo_id, staging)
        api = HfApi(token=token)
        # private=None leaves the visibility of a new repo to the hub's default.
        repo = api.create_repo(
            repo_id, repo_type="model", private=True if private else None, exist_ok=True
        )
        logger.info("pushing %s to %s: %s", directory, repo, ", ".join(files))
        if revision is not None:
            api.create_branch(
                repo_id, branch=revision, repo_type="model", exist_ok=True
            )
        return api.upload_folder(
            folder_path=staging,
            repo_id=repo_id,
            repo_type="model",
            revision=revision,
            commit_message=commit_message or f"Upload RoRF router ({len(files)} files)",
        )
