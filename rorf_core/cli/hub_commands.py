"""``rorf convert`` and ``rorf push``: legacy conversion and publishing."""

from __future__ import annotations

from pathlib import Path

import click


def _size(path: Path) -> int:
    return sum(file.stat().st_size for file in path.iterdir() if file.is_file())


@click.command()
@click.argument("source")
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory to write the converted router to.",
)
@click.option(
    "--allow-pickle",
    is_flag=True,
    help=(
        "Allow unpickling the legacy classifier.pkl, which runs code from the "
        "file. Required."
    ),
)
@click.option("--revision", help="Hub branch, tag or commit of SOURCE (default: main).")
@click.option(
    "--overwrite", is_flag=True, help="Replace --out if it already holds a router."
)
def convert(
    source: str, out: Path, allow_pickle: bool, revision: str | None, overwrite: bool
) -> None:
    """Convert the legacy RoRF router SOURCE (directory or repo id) to the safe format.

    The embedder's plugin need not be installed. After conversion the router
    in --out loads without --allow-pickle.
    """
    from rorf_core.legacy import convert_legacy_router

    target = convert_legacy_router(
        source, out, allow_pickle=allow_pickle, revision=revision, overwrite=overwrite
    )
    click.echo(f"converted {source} to {target} ({_size(target):,} bytes)")


@click.command()
@click.argument(
    "directory", type=click.Path(exists=True, file_okay=False, path_type=Path)
)
@click.option(
    "--repo-id", required=True, help="Hub model repo to upload to, as owner/name."
)
@click.option(
    "--private",
    is_flag=True,
    help="Create the repo as private (an existing repo keeps its visibility).",
)
@click.option(
    "--revision",
    help="Branch to upload to; created from main when missing (default: main).",
)
@click.option("--commit-message", help="Message of the hub commit.")
def push(
    directory: Path,
    repo_id: str,
    private: bool,
    revision: str | None,
    commit_message: str | None,
) -> None:
    """Upload the safe-format router in DIRECTORY with a generated model card.

    The token is the one huggingface_hub finds: HF_TOKEN or `hf auth login`.
    """
    from rorf_core.hub import looks_like_repo_id, push_router

    if not looks_like_repo_id(repo_id):
        raise click.BadParameter(
            f"expected owner/name, got {repo_id!r}", param_hint="--repo-id"
        )
    commit = push_router(
        directory,
        repo_id,
        private=private,
        revision=revision,
        commit_message=commit_message,
    )
    url = getattr(commit, "commit_url", None) or commit
    click.echo(f"pushed {directory} to {repo_id}: {url}")
