"""Compare forest backends on routing quality and training time.

Embeds the MMLU battles table (GPT-4 as model A, Mixtral as model B) once
with wordllama. For each of several seeded 80/20 splits, every backend is
trained on the same rows with RoRF's labels (0: A better, 1: tie at 0, 2: tie
above 0, 3: B better) and scores the held-out rows with ``p0 + p1``, the
probability that A is needed. The script reports, as mean ± std over the
splits:

- APGR, the mean performance gap recovered over the routing curve
  (``rorf_core.evaluation``),
- training wall time and process CPU time of ``scorer.fit``,
- prediction time for the whole held-out batch and for one row (median of
  ``--single-rows`` calls).

Run from the repository root with rorf-core, rorf-wordllama and
rorf-lightgbm installed::

    python benchmarks/bench_backends.py

Each backend is ``name -> scorer params`` in ``BACKENDS``; scorers come from
the registry, so a plugin backend only needs to be installed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import attrs
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(
    os.environ.get("RORF_SHARED_DATA", REPO_ROOT.parent / "shared" / "data")
)
MMLU = DATA_DIR / "mmlu_gpt4_mixtral.parquet"
MODEL_A = "gpt-4-1106-preview"
MODEL_B = "mixtral-8x7b-instruct-v0.1"

#: Registry name -> constructor parameters (``n_jobs`` comes from --n-jobs).
#: Empty means the scorer's defaults. For random-forest those are
#: scikit-learn's RandomForestClassifier with max_depth=20, n_estimators=100
#: and max_features=1.0.
BACKENDS: dict[str, dict[str, Any]] = {
    "random-forest": {},
    "lightgbm-rf": {},
}


@attrs.frozen(kw_only=True)
class SplitResult:
    """One backend's numbers on one split."""

    backend: str
    seed: int
    apgr: float
    fit_wall_s: float
    fit_cpu_s: float
    predict_batch_ms: float
    predict_one_ms: float


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, default=MMLU, help="battles table (.parquet)"
    )
    parser.add_argument("--splits", type=int, default=5, help="number of random splits")
    parser.add_argument(
        "--first-seed", type=int, default=0, help="seed of the first split"
    )
    parser.add_argument(
        "--eval-fraction", type=float, default=0.2, help="share of rows held out"
    )
    parser.add_argument(
        "--backends",
        default=",".join(BACKENDS),
        help="comma-separated registry names (default: %(default)s)",
    )
    parser.add_argument(
        "--n-jobs",
        type=int,
        default=-1,
        help="threads for each backend (-1: all cores)",
    )
    parser.add_argument(
        "--single-rows", type=int, default=200, help="one-row predictions to time"
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        help="use only the first N rows (quick check)",
    )
    parser.add_argument(
        "--json", type=Path, default=None, help="also write results here"
    )
    return parser.parse_args()


def embed_battles(data: Path, limit: int | None) -> tuple[Any, np.ndarray]:
    """Load the battles and embed their prompts with the wordllama plugin."""
    from rorf_core import get_embedder
    from rorf_core.data import load_battles

    battles = load_battles(str(data), MODEL_A, MODEL_B)
    if limit is not None:
        battles = battles.subset(np.arange(min(limit, len(battles))))
    # rorf-wordllama reads the weights and tokenizer shipped in the wordllama
    # wheel; WordLlama.load(disable_download=True) cannot find that tokenizer
    # in wordllama 0.4.0 (it looks in tokenizer/, the wheel has tokenizers/).
    embedder = get_embedder("wordllama")
    started = time.perf_counter()
    X = embedder.embed(battles.prompts)
    print(f"embedded {len(X)} prompts in {time.perf_counter() - started:.1f} s")
    return battles, X


def run_split(
    backend: str,
    params: dict[str, Any],
    X: np.ndarray,
    battles: Any,
    split: tuple[int, np.ndarray, np.ndarray],
    single_rows: int,
) -> SplitResult:
    """Fit one backend on ``train`` and evaluate it on ``held_out``."""
    from rorf_core.evaluation import routing_curve, routing_metrics
    from rorf_core.labels import get_decision_rule, get_label_scheme
    from rorf_core.plugins import get_scorer_class

    seed, train, held_out = split
    scheme = get_label_scheme("rorf")
    rule = get_decision_rule("p_a_needed")
    y = scheme(battles.scores_a[train], battles.scores_b[train])
    scorer = get_scorer_class(backend)(**params)

    wall, cpu = time.perf_counter(), time.process_time()
    scorer.fit(X[train], y)
    fit_wall, fit_cpu = time.perf_counter() - wall, time.process_time() - cpu

    started = time.perf_counter()
    proba = scorer.predict_proba(X[held_out])
    batch_ms = (time.perf_counter() - started) * 1e3
    one_ms = time_single_rows(scorer, X[held_out], single_rows)

    router_scores = rule(proba, scorer.classes_, scheme.labels)
    a, b = battles.scores_a[held_out], battles.scores_b[held_out]
    metrics = routing_metrics(routing_curve(router_scores, a, b), a, b)
    return SplitResult(
        backend=backend,
        seed=seed,
        apgr=metrics.apgr,
        fit_wall_s=fit_wall,
        fit_cpu_s=fit_cpu,
        predict_batch_ms=batch_ms,
        predict_one_ms=one_ms,
    )


def time_single_rows(scorer: Any, X: np.ndarray, count: int) -> float:
    """Return the median milliseconds of ``predict_proba`` on one row."""
    timings = []
    for row in X[: max(count, 1)]:
        started = time.perf_counter()
        scorer.predict_proba(row.reshape(1, -1))
        timings.append(time.perf_counter() - started)
    return statistics.median(timings) * 1e3


def mean_std(values: list[float], digits: int) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {std:.{digits}f}"


def format_table(results: list[SplitResult], backends: list[str]) -> str:
    columns = [
        ("APGR", "apgr", 4),
        ("fit wall (s)", "fit_wall_s", 1),
        ("fit CPU (s)", "fit_cpu_s", 1),
        ("predict batch (ms)", "predict_batch_ms", 1),
        ("predict 1 row (ms)", "predict_one_ms", 3),
    ]
    rows = [["backend", *(title for title, _, _ in columns)]]
    for backend in backends:
        mine = [result for result in results if result.backend == backend]
        rows.append(
            [backend]
            + [
                mean_std([getattr(r, key) for r in mine], digits)
                for _, key, digits in columns
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        " | ".join(cell.ljust(width) for cell, width in zip(row, widths))
        for row in rows
    ]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    return "\n".join(lines)


def machine_description() -> dict[str, Any]:
    import lightgbm
    import sklearn

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "lightgbm": lightgbm.__version__,
        "load_average": load,
    }


def main() -> None:
    from rorf_core.training import split_battles

    args = parse_args()
    backends = [name.strip() for name in args.backends.split(",") if name.strip()]
    battles, X = embed_battles(args.data, args.limit)
    position = {int(row): index for index, row in enumerate(battles.rows)}
    results: list[SplitResult] = []
    for seed in range(args.first_seed, args.first_seed + args.splits):
        train_battles, eval_battles = split_battles(battles, args.eval_fraction, seed)
        train = np.array([position[int(row)] for row in train_battles.rows])
        held_out = np.array([position[int(row)] for row in eval_battles.rows])
        for backend in backends:
            params = {**BACKENDS.get(backend, {}), "n_jobs": args.n_jobs}
            split = (seed, train, held_out)
            result = run_split(backend, params, X, battles, split, args.single_rows)
            print(
                f"split {seed} {backend}: APGR {result.apgr:.4f}, "
                f"fit {result.fit_wall_s:.1f} s wall / {result.fit_cpu_s:.1f} s CPU",
                flush=True,
            )
            results.append(result)
    machine = machine_description()
    print()
    print(
        f"{len(battles)} rows, {args.splits} splits of {1 - args.eval_fraction:.0%}/"
        f"{args.eval_fraction:.0%}, wordllama ({X.shape[1]} dims), n_jobs={args.n_jobs}"
    )
    print(f"machine: {json.dumps(machine)}")
    print(format_table(results, backends))
    if args.json is not None:
        payload = {
            "machine": machine,
            "rows": len(battles),
            "results": [attrs.asdict(result) for result in results],
        }
        args.json.write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
