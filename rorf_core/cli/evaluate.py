"""``rorf evaluate``: cost-quality curves and routing metrics of routers."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import click

from rorf_core.cli.options import cache_from_option


def _price_option(flag: str, help_text: str) -> Any:
    return click.option(
        flag,
        type=click.FloatRange(min=0),
        default=0.0,
        show_default=True,
        help=help_text,
    )


@click.command()
@click.option(
    "--router",
    "routers",
    multiple=True,
    required=True,
    help="Router directory or hub repo id. Repeat it to compare several routers.",
)
@click.option(
    "--dataset",
    required=True,
    help="Table with 'Input' and '<model>/score' columns: .parquet, .csv, .jsonl "
    "or a hub dataset name.",
)
@click.option("--model-a", help="Model A's name (default: the first router's).")
@click.option("--model-b", help="Model B's name (default: the first router's).")
@click.option("--split", help="Split of a hub dataset (default: train).")
@_price_option("--price-a-per-call", "Price of one call to model A.")
@_price_option("--price-b-per-call", "Price of one call to model B.")
@_price_option("--price-a-per-mtok", "Price of model A per million input tokens.")
@_price_option("--price-b-per-mtok", "Price of model B per million input tokens.")
@click.option(
    "--random-seeds",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="Number of seeds for the simulated random router (0 leaves it out).",
)
@click.option(
    "--drop-invalid",
    is_flag=True,
    help="Drop rows with an empty prompt or a non-numeric score instead of failing.",
)
@click.option(
    "--no-cache", is_flag=True, help="Do not read or write the embedding cache."
)
@click.option(
    "--allow-pickle",
    is_flag=True,
    help="Allow legacy pickled routers. Unpickling runs code from the file.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for metrics.json, curve.csv and curve.png (created if missing).",
)
def evaluate(
    routers: tuple[str, ...],
    dataset: str,
    model_a: str | None,
    model_b: str | None,
    split: str | None,
    price_a_per_call: float,
    price_b_per_call: float,
    price_a_per_mtok: float,
    price_b_per_mtok: float,
    random_seeds: int,
    drop_invalid: bool,
    no_cache: bool,
    allow_pickle: bool,
    out: Path,
) -> None:
    """Evaluate routers against oracle and random baselines on --dataset.

    Prints the metrics table and writes metrics.json, curve.csv and
    curve.png to --out. Costs are computed when any price is set, and input
    tokens are estimated as whitespace-separated words times 1.3.
    """
    from rorf_core.data import load_battles
    from rorf_core.evaluation_report import Prices, evaluate_scores

    duplicates = sorted({name for name in routers if routers.count(name) > 1})
    if duplicates:
        raise click.BadParameter(
            f"router {duplicates[0]!r} is given more than once", param_hint="--router"
        )
    loaded = _load_routers(routers, allow_pickle)
    first = next(iter(loaded.values()))
    battles = load_battles(
        dataset,
        model_a or first.model_a,
        model_b or first.model_b,
        split=split,
        drop_invalid=drop_invalid,
    )
    for name, router in loaded.items():
        _check_models(name, router, battles.model_a, battles.model_b)
    cache = cache_from_option(no_cache)
    scores = {
        name: router.win_rate(battles.prompts, cache=cache, progress=True)
        for name, router in loaded.items()
    }
    prices = Prices(
        a_per_call=price_a_per_call,
        b_per_call=price_b_per_call,
        a_per_mtok=price_a_per_mtok,
        b_per_mtok=price_b_per_mtok,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = evaluate_scores(
            scores,
            battles.scores_a,
            battles.scores_b,
            prices=None if prices == Prices() else prices,
            prompts=battles.prompts,
            seeds=range(random_seeds),
            model_a=battles.model_a,
            model_b=battles.model_b,
            metadata={
                "dataset": battles.source,
                "split": split,
                "dropped_rows": battles.dropped,
            },
        )
    # Each router's metrics repeat the same data warning, so print it once.
    for message in dict.fromkeys(str(warning.message) for warning in caught):
        click.echo(f"Warning: {message}", err=True)
    _write_outputs(report, out)


def _load_routers(names: tuple[str, ...], allow_pickle: bool) -> dict[str, Any]:
    from rorf_core.router import Router

    return {
        name: Router.from_pretrained(name, allow_pickle=allow_pickle) for name in names
    }


def _check_models(name: str, router: Any, model_a: str, model_b: str) -> None:
    """Reject a router whose models are swapped, and warn when they differ."""
    if (router.model_a, router.model_b) == (model_a, model_b):
        return
    if (router.model_a, router.model_b) == (model_b, model_a):
        # Its scores would then rank prompts for the other model.
        raise click.UsageError(
            f"router {name!r} routes {router.model_a!r} as model A but the "
            f"evaluation takes {model_a!r} as model A. Pass --model-a "
            f"{router.model_a} --model-b {router.model_b}."
        )
    click.echo(
        f"Warning: router {name!r} was trained for {router.model_a!r} vs "
        f"{router.model_b!r} and is evaluated on {model_a!r} vs {model_b!r}.",
        err=True,
    )


def _write_outputs(report: Any, out: Path) -> None:
    from rorf_core.evaluation_report import format_table, write_csv, write_json
    from rorf_core.plotting import plot_curves

    out.mkdir(parents=True, exist_ok=True)
    click.echo(format_table(report))
    paths = [
        write_json(report, out / "metrics.json"),
        write_csv(report, out / "curve.csv"),
        plot_curves(report, out / "curve.png"),
    ]
    click.echo("")
    click.echo("wrote " + ", ".join(str(path) for path in paths))
