"""``rorf train``: train a router on a battles table."""

from __future__ import annotations

from pathlib import Path

import click

from rorf_core.cli.options import cache_from_option, parse_key_values


@click.command()
@click.option("--dataset", required=True, help="Training table: .parquet, .csv, .jsonl or a hub dataset name.")
@click.option("--model-a", help="Model A (usually the stronger one), as in its '<model>/score' column.")
@click.option("--model-b", help="Model B, as in its '<model>/score' column.")
@click.option("--recipe", type=click.Choice(["default", "rorf"]), default="default", show_default=True, help="Settings to start from: 'default' (extra-trees regressor on the score gap over 32 embedding columns plus text features, blended with an n-gram ridge model) or 'rorf' (RoRF's 4-class random forest).")
@click.option("--embedder", default="wordllama", show_default=True, help="Registered embedder name (see `rorf plugins`).")
@click.option("--embedder-option", "embedder_options", multiple=True, metavar="KEY=VALUE", help="Embedder option; repeat for more. Values are parsed as JSON when possible.")
@click.option("--scorer", help="Registered forest backend name (default: the recipe's).")
@click.option("--scorer-option", "scorer_options", multiple=True, metavar="KEY=VALUE", help="Extra forest parameter; repeat for more.")
@click.option("--max-depth", type=click.IntRange(min=1), help="Maximum depth of each tree (recipe default: none for 'default', 20 for 'rorf').")
@click.option("--n-estimators", type=click.IntRange(min=1), help="Number of trees (recipe default: 300 / 100).")
@click.option("--max-features", help="Features tried per split: a fraction (0-1], a count, or 'sqrt'/'log2' (recipe default: 0.5 / 1.0).")
@click.option("--min-samples-leaf", type=click.IntRange(min=1), help="Minimum training rows in a leaf (recipe default: 10 / 1).")
@click.option("--group-column", help="Column that groups the training rows, such as an MMLU subject. The score-gap target is smoothed toward each group's mean gap, and routing never reads the column. Default: the recipe's ('subject' for 'default', used only if the table has it).")
@click.option("--group-weight", type=click.FloatRange(0, 1), help="Share of each row's target taken from its group's mean gap; 0 trains on the plain gap (recipe default: 0.5 / 0).")
@click.option("--lexical-weight", type=click.FloatRange(0, 1), help="Share of the predicted gap taken from a ridge model on the prompt's words and word pairs, fitted beside the forest; 0 leaves it out (recipe default: 0.3 / 0).")
@click.option("--search", is_flag=True, help="Choose forest settings by cross-validation on the training rows before the final fit.")
@click.option("--search-budget", type=click.FloatRange(min=1), default=600, show_default=True, help="Time budget for --search, in seconds.")
@click.option("--eval-dataset", help="Held-out table to evaluate on instead of a split of --dataset.")
@click.option("--eval-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.2, show_default=True, help="Share of --dataset held out for evaluation.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the split and the forest.")
@click.option("--drop-invalid", is_flag=True, help="Drop rows with an empty prompt or a non-numeric score instead of failing.")
@click.option("--no-cache", is_flag=True, help="Do not read or write the embedding cache.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Directory to write the router to.")
def train(
    dataset: str,
    model_a: str | None,
    model_b: str | None,
    recipe: str,
    embedder: str,
    embedder_options: tuple[str, ...],
    scorer: str | None,
    scorer_options: tuple[str, ...],
    max_depth: int | None,
    n_estimators: int | None,
    max_features: str | None,
    min_samples_leaf: int | None,
    group_column: str | None,
    group_weight: float | None,
    lexical_weight: float | None,
    search: bool,
    search_budget: float,
    eval_dataset: str | None,
    eval_fraction: float,
    seed: int,
    drop_invalid: bool,
    no_cache: bool,
    out: str,
) -> None:
    """Train a router, report it on held-out rows, and save it to --out."""
    from rorf_core.training import TrainingConfig, train_router

    given = {
        "max_depth": max_depth,
        "n_estimators": n_estimators,
        "max_features": None if max_features is None else _parse_max_features(max_features),
        "min_samples_leaf": min_samples_leaf,
    }
    scorer_params = {key: value for key, value in given.items() if value is not None}
    scorer_params.update(parse_key_values(scorer_options, "--scorer-option"))
    config = TrainingConfig(
        dataset=dataset,
        recipe=recipe,
        model_a=model_a,
        model_b=model_b,
        embedder=embedder,
        embedder_options=parse_key_values(embedder_options, "--embedder-option"),
        scorer=scorer,
        scorer_params=scorer_params,
        group_column=group_column,
        group_weight=group_weight,
        lexical_weight=lexical_weight,
        eval_dataset=eval_dataset,
        eval_fraction=eval_fraction,
        seed=seed,
        drop_invalid=drop_invalid,
    )
    cache = cache_from_option(no_cache)
    result = train_router(
        config, cache=cache, out=Path(out), search_budget=search_budget if search else None
    )
    if result.search is not None:
        click.echo(result.search.summary())
    stats = cache.last_stats
    if stats is not None:
        click.echo(
            f"embedded {stats.misses} of {stats.total} prompts "
            f"({stats.hits} from the embedding cache)"
        )
    click.echo(
        f"trained on {result.train_rows} rows, evaluated on {result.eval_rows} held-out rows"
    )
    group = result.router.training.get("group_target")
    if group:
        click.echo(
            f"target smoothed toward the mean gap of {group['groups']} {group['column']!r} "
            f"groups (weight {group['weight']})"
        )
    lexical = result.router.lexical
    if lexical is not None:
        click.echo(
            f"predicted gap blended with an n-gram model over {lexical.keys.size} "
            f"words and pairs (weight {result.router.lexical_weight})"
        )
    click.echo(result.report.training_summary())
    click.echo(f"router saved to {out}")


def _parse_max_features(value: str) -> float | int | str:
    if value in ("sqrt", "log2"):
        return value
    try:
        number = float(value)
    except ValueError:
        raise click.BadParameter(
            f"expected a fraction, a count, 'sqrt' or 'log2', got {value!r}",
            param_hint="--max-features",
        ) from None
    if number.is_integer() and number > 1:
        return int(number)
    if not 0 < number <= 1:
        raise click.BadParameter(
            f"a fraction must be in (0, 1], got {value!r}", param_hint="--max-features"
        )
    return number
