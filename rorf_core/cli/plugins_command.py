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
    click.echo(f"{'kind':<9} {'name':<16} {'distribution':<18} {'version':<9} plugin")
    for row in rows:
        name = row["name"] + (f" ({', '.join(row['aliases'])})" if row["aliases"] else "")
        click.echo(
            f"{row['kind']:<9} {name:<16} {row['distribution'] or '-':<18} "
            f"{row['version'] or '-':<9} {row['plugin']}"
        )
    for failure in failures:
        click.echo(
            f"failed   {failure['plugin']} ({failure['distribution'] or 'runtime'}): "
            f"{failure['error']}",
            err=True,
        )
