"""Option parsing shared by several commands."""

from __future__ import annotations

import json
from typing import Any

import click


def parse_key_values(values: tuple[str, ...], option: str) -> dict[str, Any]:
    """Parse ``KEY=VALUE`` pairs; values are read as JSON when they parse, else text."""
    parsed: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint=option)
        try:
            parsed[key] = json.loads(raw)
        except json.JSONDecodeError:
            parsed[key] = raw
    return parsed


def cache_from_option(no_cache: bool) -> Any:
    """Return the embedding cache to use, or a disabled one."""
    from rorf_core.cache import EmbeddingCache

    return EmbeddingCache.disabled() if no_cache else EmbeddingCache()
