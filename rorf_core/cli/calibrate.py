"""``rorf calibrate``: find the threshold for a share of calls to model A."""

from __future__ import annotations

import json
import warnings

import click

from rorf_core.cli.options import cache_from_option


@click.command()
@click.option("--router", required=True, help="Router directory or hub repo id.")
@click.option("--dataset", required=True, help="Table with an 'Input' column of prompts.")
@click.option("--model-a-pct", "share", type=float, required=True, help="Share of prompts to send to model A, in [0, 1] (0.5 = half).")
@click.option("--drop-invalid", is_flag=True, help="Skip empty prompts instead of failing.")
@click.option("--no-cache", is_flag=True, help="Do not read or write the embedding cache.")
def calibrate(router: str, dataset: str, share: float, drop_invalid: bool, no_cache: bool) -> None:
    """Print the threshold that sends --model-a-pct of the prompts to model A.

    Win rates are computed once and stored beside the router, so asking for
    another share on the same dataset is instant.
    """
    from rorf_core.calibration import ShareNotReachedWarning
    from rorf_core.calibration import calibrate as run_calibration

    if not 0.0 <= share <= 1.0:
        raise click.BadParameter(
            f"must be in [0, 1], got {share} (0.5 sends half the prompts to model A)",
            param_hint="--model-a-pct",
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ShareNotReachedWarning)
        result = run_calibration(
            router, dataset, share, cache=cache_from_option(no_cache), drop_invalid=drop_invalid
        )
    for warning in caught:
        click.echo(f"Warning: {warning.message}", err=True)
    click.echo(
        json.dumps(
            {
                "threshold": result.threshold,
                "model_a_pct": result.requested_share,
                "reached_pct": result.reached_share,
                "dataset": result.dataset,
                "rows": result.rows,
            }
        )
    )
