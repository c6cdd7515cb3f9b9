"""``rorf split``: write the training and held-out rows of a table to files."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option("--dataset", required=True, help="Table to split: .parquet, .csv, .jsonl or a hub dataset name.")
@click.option("--eval-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.2, show_default=True, help="Share of rows held out.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the permutation.")
@click.option("--out-dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Folder for train.parquet and eval.parquet.")
def split(dataset: str, eval_fraction: float, seed: int, out_dir: Path) -> None:
    """Split a table into train.parquet and eval.parquet.

    The rows are the ones `rorf train --eval-fraction F --seed S` holds out
    on the same table when no row is dropped, so a router trained with
    --eval-dataset on these files is evaluated on the same rows.
    """
    import numpy as np

    from rorf_core.data import load_table
    from rorf_core.training import held_out_positions

    table = load_table(dataset)
    held_out = held_out_positions(len(table), eval_fraction, seed)
    training = np.setdiff1d(np.arange(len(table)), held_out)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", training), ("eval", held_out)):
        path = out_dir / f"{name}.parquet"
        table.select(rows.tolist()).to_parquet(str(path))
        click.echo(f"wrote {len(rows)} rows to {path}")
