"""Size and load time of a legacy pickled router versus its safe-format conversion.

Trains RoRF's forest (RandomForestClassifier, 100 trees, depth 20,
max_features=1.0) on wordllama embeddings of the MMLU battles with RoRF's
labels, pickles it as a legacy ``classifier.pkl``, converts it with
:func:`rorf_core.legacy.convert_legacy_router`, and prints both sizes, their
ratio and the median load time of each.

    python benchmarks/bench_router_size.py [--data PATH] [--rows N]

The data defaults to ``$RORF_SHARED_DATA/mmlu_gpt4_mixtral.parquet``, or
``../shared/data`` beside the repository when the variable is unset.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

MODEL_A = "gpt-4-1106-preview"
MODEL_B = "mixtral-8x7b-instruct-v0.1"
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = (
    Path(os.environ.get("RORF_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
    / "mmlu_gpt4_mixtral.parquet"
)
LOAD_REPEATS = 5


def load_battles(path: Path, rows: int | None) -> tuple[list[str], np.ndarray]:
    """Return the prompts and RoRF labels of the first ``rows`` battles."""
    import pyarrow.parquet as pq

    from rorf_core.labels import get_label_scheme

    table = pq.read_table(path).to_pydict()
    count = len(table["Input"]) if rows is None else rows
    prompts = table["Input"][:count]
    labels = get_label_scheme("rorf")(
        np.asarray(table[f"{MODEL_A}/score"][:count], dtype=float),
        np.asarray(table[f"{MODEL_B}/score"][:count], dtype=float),
    )
    return prompts, labels


def median_seconds(action: Callable[[], Any], repeats: int = LOAD_REPEATS) -> float:
    """Return the median wall time of ``repeats`` calls of ``action``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def directory_bytes(path: Path) -> int:
    return sum(file.stat().st_size for file in path.iterdir() if file.is_file())


def load_safe_forest(directory: Path) -> Any:
    """Read and check the converted router's forest, as Router.from_pretrained does."""
    from rorf_core import format as router_format
    from rorf_core.forest.sklearn_forest import RandomForestScorer

    metadata, arrays = router_format.read_router_dir(directory)
    scorer = metadata["scorer"]
    return RandomForestScorer.from_state(scorer["params"], scorer["state"], arrays)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="MMLU battles parquet"
    )
    parser.add_argument("--rows", type=int, help="use only the first ROWS battles")
    args = parser.parse_args()

    from rorf_wordllama.embedder import WordLlamaEmbedder
    from sklearn import __version__ as sklearn_version
    from sklearn.ensemble import RandomForestClassifier

    from rorf_core.legacy import PickleLoadWarning, convert_legacy_router
    from rorf_core.router import Router

    prompts, labels = load_battles(args.data, args.rows)
    start = time.perf_counter()
    embeddings = WordLlamaEmbedder().embed(prompts)
    embed_seconds = time.perf_counter() - start
    forest = RandomForestClassifier(
        n_estimators=100, max_depth=20, max_features=1.0, random_state=0, n_jobs=-1
    )
    start = time.perf_counter()
    forest.fit(embeddings, labels)
    fit_seconds = time.perf_counter() - start

    with tempfile.TemporaryDirectory(prefix="rorf-bench-") as temp:
        legacy = Path(temp) / "rorf-wordllama-gpt4-mixtral"
        legacy.mkdir()
        pickle_path = legacy / "classifier.pkl"
        pickle_path.write_bytes(pickle.dumps(forest))
        config = {"embedding_provider": "wordllama", "llms": [MODEL_A, MODEL_B]}
        (legacy / "config.json").write_text(json.dumps(config), encoding="utf-8")
        safe = Path(temp) / "safe"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PickleLoadWarning)
            convert_legacy_router(legacy, safe, allow_pickle=True)

        pickle_bytes = pickle_path.stat().st_size
        safe_bytes = directory_bytes(safe)
        pickle_load = median_seconds(lambda: pickle.loads(pickle_path.read_bytes()))
        forest_load = median_seconds(lambda: load_safe_forest(safe))
        router_load = median_seconds(lambda: Router.from_pretrained(safe))
        converted = Router.from_pretrained(safe)
        difference = float(
            np.max(
                np.abs(
                    converted.scorer.predict_proba(embeddings)
                    - forest.predict_proba(embeddings)
                )
            )
        )

    nodes = sum(tree.tree_.node_count for tree in forest.estimators_)
    print(
        f"python {platform.python_version()}, scikit-learn {sklearn_version}, "
        f"{os.cpu_count()} CPUs, {platform.machine()}"
    )
    print(f"battles: {len(prompts)} rows, labels {np.bincount(labels).tolist()}")
    print(f"embedding (wordllama l2_supercat, 256 dims): {embed_seconds:.1f} s")
    print(f"fit (100 trees, depth 20): {fit_seconds:.1f} s, {nodes:,} nodes")
    print(f"pickle classifier.pkl:   {pickle_bytes:>12,} bytes")
    print(f"converted router dir:    {safe_bytes:>12,} bytes")
    print(
        f"converted / pickle:      {safe_bytes / pickle_bytes:.3f} "
        f"(pickle is {pickle_bytes / safe_bytes:.1f}x larger)"
    )
    print(
        f"load, pickle.loads:               {1000 * pickle_load:8.1f} ms "
        f"(median of {LOAD_REPEATS})"
    )
    print(f"load, safe forest (read + check): {1000 * forest_load:8.1f} ms")
    print(f"load, Router.from_pretrained:     {1000 * router_load:8.1f} ms")
    print(
        f"largest probability difference on the {len(prompts)} embeddings: "
        f"{difference:.3g}"
    )
    if safe_bytes * 4 > pickle_bytes:
        print("target missed: the converted router is larger than 1/4 of the pickle")
        sys.exit(1)


if __name__ == "__main__":
    main()
