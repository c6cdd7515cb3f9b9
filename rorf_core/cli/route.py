"""``rorf route``: route prompts and print one JSON line each."""

from __future__ import annotations

import json
from pathlib import Path

import click

from rorf_core.errors import DatasetError, RouterNotFoundError


def default_router() -> Path:
    """Return the example router that ships with rorf-wordllama."""
    try:
        from rorf_wordllama import EXAMPLE_ROUTER
    except ImportError:
        raise RouterNotFoundError(
            "no --router given and the example router is missing: install rorf-wordllama "
            "or pass --router DIR"
        ) from None
    return EXAMPLE_ROUTER


def read_prompts(path: Path) -> list[str]:
    """Read prompts from text lines or JSON Lines with an ``Input`` field.

    A file whose first non-blank line starts with ``{`` is read as JSON
    Lines. Blank lines are skipped in both forms.
    """
    if not path.is_file():
        raise DatasetError(f"input file {str(path)!r} does not exist")
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines or not lines[0].lstrip().startswith("{"):
        return lines
    prompts = []
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DatasetError(f"{str(path)!r} line {number}: invalid JSON ({error})") from None
        if not isinstance(record, dict) or "Input" not in record:
            raise DatasetError(f"{str(path)!r} line {number}: no 'Input' field")
        prompts.append(record["Input"])
    return prompts


def calibrated_threshold(router: object, share: float = 0.5) -> float:
    """Return the saved threshold for ``share`` of calls to A, else 0.5."""
    calibration = getattr(router, "calibration", None) or {}
    for row in calibration.get("table", []):
        if row["percent"] == round(share * 100):
            return float(row["threshold"])
    return 0.5


@click.command()
@click.argument("prompts", nargs=-1)
@click.option("--router", help="Router directory or hub repo id (default: the example router of rorf-wordllama).")
@click.option("--threshold", type=float, help="Send a prompt to model A when its win rate is at least this, in [0, 1]. Default: the router's calibrated threshold for 50% of calls to A.")
@click.option("--input", "input_file", type=click.Path(dir_okay=False, path_type=Path), help="Read prompts from a text file (one a line) or JSON Lines with 'Input'.")
@click.option("--allow-pickle", is_flag=True, help="Allow a legacy pickled router; unpickling runs code from the file.")
def route(prompts: tuple[str, ...], router: str | None, threshold: float | None, input_file: Path | None, allow_pickle: bool) -> None:
    """Print the chosen model and the win rate of each PROMPT as JSON lines."""
    from rorf_core.controller import Controller
    from rorf_core.router import check_threshold

    texts = list(prompts) + (read_prompts(input_file) if input_file else [])
    if not texts:
        raise click.UsageError("give prompts as arguments or with --input FILE")
    controller = Controller(router or default_router(), threshold=0.5, allow_pickle=allow_pickle)
    limit = calibrated_threshold(controller.router) if threshold is None else threshold
    limit = check_threshold(limit)
    rates = controller.batch_calculate_win_rate(texts)
    for index, rate in enumerate(rates):
        model = controller.model_a if rate >= limit else controller.model_b
        line = {"index": index, "model": model, "win_rate": round(float(rate), 6), "threshold": limit}
        click.echo(json.dumps(line))
