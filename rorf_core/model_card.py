"""The model card (``README.md``) pushed with a router to the hub.

The card is built from the router's ``router.json`` only: the two models,
the embedder, the scorer, the training data and metrics (``training``) and
the calibration table (``calibration``). Its YAML front matter is written by
``huggingface_hub.ModelCardData``, so the hub reads the library name, tags
and datasets from it.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["render_model_card", "card_metadata", "CALIBRATION_STEP"]

LIBRARY_NAME = "rorf"
BASE_TAGS = ("rorf", "llm-router", "random-forest")
#: The card lists every CALIBRATION_STEP percent; router.json has each percent.
CALIBRATION_STEP = 10
_TABLE_SUFFIXES = (".parquet", ".csv", ".json", ".jsonl", ".arrow", ".txt")


def _cell(value: Any) -> str:
    # A Markdown table cell: one line, pipes escaped, JSON for containers.
    if isinstance(value, float):
        text = "n/a" if math.isnan(value) else f"{value:.4g}"
    elif isinstance(value, (dict, list, tuple)):
        text = f"`{json.dumps(value, sort_keys=True)}`"
    elif value is None:
        text = "n/a"
    else:
        text = str(value)
    return text.replace("\n", " ").replace("|", "\\|")


def _table(header: tuple[str, ...], rows: Iterable[tuple[Any, ...]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return lines


def _hub_dataset(name: Any) -> str | None:
    # Only owner/name ids of hub datasets go in the front matter; local files
    # would make the hub link to datasets that do not exist.
    if not isinstance(name, str):
        return None
    parts = name.split("/")
    if len(parts) != 2 or not all(parts) or name.startswith((".", "~", "/")):
        return None
    if name.lower().endswith(_TABLE_SUFFIXES):
        return None
    return name


def _datasets(metadata: dict[str, Any]) -> list[str]:
    training = metadata.get("training") or {}
    config = training.get("config") or {}
    legacy = training.get("legacy_config") or {}
    names = [
        config.get("dataset"),
        config.get("eval_dataset"),
        legacy.get("dataset_path"),
        legacy.get("eval_dataset"),
    ]
    found = [_hub_dataset(name) for name in names]
    return list(dict.fromkeys(name for name in found if name))


def card_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """Return the YAML front matter fields of a router's model card."""
    embedder = metadata.get("embedder", {}).get("name")
    tags = list(BASE_TAGS) + ([embedder] if embedder else [])
    fields: dict[str, Any] = {"library_name": LIBRARY_NAME, "tags": tags}
    datasets = _datasets(metadata)
    if datasets:
        fields["datasets"] = datasets
    return fields


def _front_matter(metadata: dict[str, Any]) -> str:
    from huggingface_hub import ModelCardData

    return "---\n" + ModelCardData(**card_metadata(metadata)).to_yaml() + "\n---\n"


def _plugin_hint(embedder_name: str) -> str:
    from rorf_core import plugins

    try:
        entry = plugins.embedder_entries().get(embedder_name)
    except Exception as error:  # the card must not fail on a broken plugin
        logger.debug("could not list embedder plugins: %s", error)
        entry = None
    if entry is not None and entry.distribution and entry.distribution != "rorf-core":
        return f"pip install rorf-core {entry.distribution}"
    if entry is not None:
        return "pip install rorf-core"
    return f"pip install rorf-core  # plus the plugin that provides {embedder_name!r}"


def _threshold_at(calibration: dict[str, Any] | None, percent: int) -> float | None:
    for row in (calibration or {}).get("table", []):
        if row.get("percent") == percent:
            return float(row["threshold"])
    return None


def _usage(metadata: dict[str, Any], repo_id: str) -> list[str]:
    embedder = metadata["embedder"]["name"]
    threshold = _threshold_at(metadata.get("calibration"), 50)
    threshold_text = f"{threshold:.6f}" if threshold is not None else "0.5"
    comment = (
        "  # sends about half of the calls to model A"
        if threshold is not None
        else "  # calibrate with `rorf calibrate`"
    )
    return [
        "## Usage",
        "",
        "```bash",
        _plugin_hint(embedder),
        "```",
        "",
        "```python",
        "from rorf_core import Controller",
        "",
        f"controller = Controller(router={repo_id!r}, threshold={threshold_text})"
        + comment,
        'print(controller.route("Prove that the square root of 2 is irrational."))',
        "```",
        "",
    ]


def _router_section(metadata: dict[str, Any]) -> list[str]:
    embedder = metadata["embedder"]
    scorer = metadata["scorer"]
    rows = [
        ("model A", metadata["model_a"]),
        ("model B", metadata["model_b"]),
        ("embedder", f"{embedder.get('name')} ({embedder.get('model')})"),
        ("embedder options", embedder.get("options", {})),
        ("embedding dimension", embedder.get("dimension")),
        ("scorer", scorer.get("name")),
        ("scorer parameters", scorer.get("params", {})),
        ("label scheme", metadata.get("label_scheme")),
        ("decision rule", metadata.get("decision_rule")),
        ("text features", ", ".join(metadata.get("text_features") or []) or "none"),
        ("n-gram model", _lexical_summary(metadata.get("lexical"))),
        ("format", f"{metadata.get('format')} {metadata.get('format_version')}"),
    ]
    return ["## Router", "", *_table(("field", "value"), rows), ""]


def _lexical_summary(lexical: Any) -> str:
    if not isinstance(lexical, dict):
        return "none"
    return f"ridge on {lexical.get('ngrams')} hashed word n-grams, weight {lexical.get('weight')}"


def _training_section(metadata: dict[str, Any]) -> list[str]:
    training = metadata.get("training") or {}
    config = training.get("config") or {}
    legacy = training.get("legacy_config") or {}
    rows = [
        ("dataset", config.get("dataset") or legacy.get("dataset_path")),
        (
            "evaluation dataset",
            config.get("eval_dataset") or legacy.get("eval_dataset"),
        ),
        (
            "held-out fraction",
            None if config.get("eval_dataset") else config.get("eval_fraction"),
        ),
        ("training rows", training.get("train_rows")),
        ("evaluation rows", training.get("eval_rows")),
        ("dropped rows", training.get("dropped_rows")),
        ("seed", config.get("seed")),
        ("created", training.get("created")),
        ("converted from", training.get("legacy_name")),
        ("converted", training.get("converted")),
        ("pickled with scikit-learn", training.get("pickled_with_sklearn")),
        ("rorf-core version", training.get("rorf_core_version")),
    ]
    present = [(name, value) for name, value in rows if value is not None]
    if not present:
        return ["## Training data", "", "router.json records no training data.", ""]
    return ["## Training data", "", *_table(("field", "value"), present), ""]


def _flatten(values: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in values.items():
        if isinstance(value, dict):
            rows += _flatten(value, f"{prefix}{key}.")
        else:
            rows.append((f"{prefix}{key}", value))
    return rows


def _metrics_section(metadata: dict[str, Any]) -> list[str]:
    training = metadata.get("training") or {}
    metrics = training.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        return ["## Metrics", "", "router.json records no evaluation metrics.", ""]
    rows = training.get("eval_rows")
    intro = "Measured on the held-out rows" + (f" ({rows} rows)." if rows else ".")
    return [
        "## Metrics",
        "",
        intro,
        "",
        *_table(("metric", "value"), _flatten(metrics)),
        "",
    ]


def _calibration_section(metadata: dict[str, Any]) -> list[str]:
    calibration = metadata.get("calibration") or {}
    table = calibration.get("table") or []
    if not table:
        return [
            "## Calibration",
            "",
            "router.json has no calibration table; find a threshold with "
            "`rorf calibrate`.",
            "",
        ]
    source = calibration.get("dataset", "the held-out rows")
    count = calibration.get("rows")
    intro = (
        f"Thresholds that send a share of calls to model A, computed on {source}"
        + (f" ({count} rows)" if count else "")
        + ". A prompt goes to model A when its score is at least the threshold. "
        f"router.json lists every whole percent; this table every {CALIBRATION_STEP} "
        "percent."
    )
    rows = [
        (
            f"{row['percent']}%",
            f"{row['threshold']:.6f}",
            f"{100 * row['reached']:.1f}%",
        )
        for row in table
        if row.get("percent", -1) % CALIBRATION_STEP == 0
    ]
    header = ("calls to model A", "threshold", "reached share")
    return ["## Calibration", "", intro, "", *_table(header, rows), ""]


def render_model_card(metadata: dict[str, Any], *, repo_id: str) -> str:
    """Return the ``README.md`` text for a router with ``router.json`` ``metadata``."""
    model_a, model_b = metadata["model_a"], metadata["model_b"]
    embedder = metadata["embedder"]
    intro = (
        f"This RoRF router sends each prompt to **{model_a}** (model A) or "
        f"**{model_b}** (model B). It embeds the prompt with the "
        f"`{embedder['name']}` embedder ({embedder['model']}), scores the "
        "embedding with a random forest, and sends the prompt to model A when the "
        "score (the probability that model A is needed) is at least the threshold."
    )
    lines = [
        _front_matter(metadata),
        f"# RoRF router: {model_a} vs {model_b}",
        "",
        intro,
        "",
        *_usage(metadata, repo_id),
        *_router_section(metadata),
        *_training_section(metadata),
        *_metrics_section(metadata),
        *_calibration_section(metadata),
        "Loading this router reads JSON and safetensors only and runs no code "
        "from the repo.",
        "",
    ]
    return "\n".join(lines)
