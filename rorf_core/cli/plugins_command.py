"""``rorf plugins``: list registered embedders and scorers."""

from __future__ import annotations

import json

import click


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def plugins(as_json: bool) -> None:
    """List every registered embedder and scorer and the plugin it came from."""
    from rorf_core.plugins import embedder_entries, plugin_failures, scorer_entries

    rows = []
    for entries in (embedder_entries(), scorer_entries()):
        for key, entry in sorted(entries.items()):
            if key != entry.name:
                continue  # aliases are listed with their entry
            rows.append(
                {
                    "kind": entry.kind,
                    "name": entry.name,
                    "aliases": list(entry.aliases),
                    "plugin": entry.plugin,
                    "distribution": entry.distribution,
                    "version": entry.version,
                }
            )
    failures = [
        {"plugin": f.plugin, "distribution": f.distribution, "error": f.error}
        for f in plugin_failures()
    ]
    if as_json:
        click.echo(json.dumps({"registered": rows, "failed": failures}, indent=2))
        return
    table = [["kind", "name", "distribution", "version", "plugin"]]
    for row in rows:
        name = row["name"] + (f" ({', '.join(row['aliases'])})" if row["aliases"] else "")
        table.append(
            [row["kind"], name, row["distribution"] or "-", row["version"] or "-", row["plugin"]]
        )
    widths = [max(len(line[column]) for line in table) for column in range(5)]
    for line in table:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())
    for failure in failures:
        click.echo(
            f"failed   {failure['plugin']} ({failure['distribution'] or 'runtime'}): "
            f"{failure['error']}",
            err=True,
        )
