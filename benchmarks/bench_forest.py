"""Benchmark CompiledForest against scikit-learn on a RoRF forest.

Trains RoRF's forest (100 trees, max_depth 20, max_features 1.0) once on the
MMLU battles table embedded with wordllama, then compares, in one process
and on the same rows:

- single-prompt latency (p50, p99) against sklearn with n_jobs=-1 and 1,
- throughput on a batch of 10,000 rows against sklearn with n_jobs=-1,
- size on disk and load time of the safetensors arrays against a pickle,
- the start-up of a fresh process with a cold and a warm numba cache.

Run from the repository root::

    python benchmarks/bench_forest.py

Each section is a function ``(BenchContext) -> list[Result]`` listed in
``SECTIONS``; another benchmark can build a context with ``prepare`` and
append its own section. Training takes minutes on 2 cores; ``--forest-cache``
keeps the fitted forest between runs.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import pickle
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(
    os.environ.get("RORF_SHARED_DATA", REPO_ROOT.parent / "shared" / "data")
)
MMLU = DATA_DIR / "mmlu_gpt4_mixtral.parquet"
MODEL_A = "gpt-4-1106-preview"
MODEL_B = "mixtral-8x7b-instruct-v0.1"
RORF_FOREST = {"n_estimators": 100, "max_depth": 20, "max_features": 1.0}
BATCH_ROWS = 10_000


@dataclass
class BenchContext:
    """Everything the sections share: data, the fitted forest, its compiled form."""

    X: np.ndarray
    y: np.ndarray
    estimator: Any
    forest: Any
    workdir: Path
    texts: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    single_calls: int = 3_000
    sklearn_single_calls: int = 300
    batch_repeats: int = 5


@dataclass
class Result:
    """One measured comparison; ``ratio`` > 1 means CompiledForest is better."""

    section: str
    metric: str
    ours: str
    reference: str
    ratio: float | None = None
    target: float | None = None

    @property
    def met(self) -> str:
        if self.target is None or self.ratio is None:
            return ""
        return "yes" if self.ratio >= self.target else "NO"


# Data and training.


def load_wordllama() -> Any:
    import wordllama

    # wordllama 0.4.0.post1 looks for the tokenizer in "tokenizer/" but its
    # wheel ships "tokenizers/"; its cache_dir layout matches the package.
    return wordllama.WordLlama.load(
        cache_dir=Path(wordllama.__file__).parent, disable_download=True
    )


def load_mmlu(path: Path = MMLU) -> tuple[list[str], np.ndarray]:
    """Return the prompts and RoRF labels (A = gpt-4, B = mixtral) of the table."""
    import pandas as pd

    from rorf_core.labels import get_label_scheme

    table = pd.read_parquet(path)
    labels = get_label_scheme("rorf")(
        table[f"{MODEL_A}/score"].to_numpy(), table[f"{MODEL_B}/score"].to_numpy()
    )
    return table["Input"].tolist(), labels


def train_forest(X: np.ndarray, y: np.ndarray, cache: Path | None) -> Any:
    """Fit RoRF's RandomForestClassifier, or load it from ``cache`` if present."""
    from sklearn.ensemble import RandomForestClassifier

    if cache is not None and cache.is_file():
        with cache.open("rb") as handle:
            return pickle.load(handle)  # written by this script on an earlier run
    estimator = RandomForestClassifier(**RORF_FOREST, random_state=0, n_jobs=-1)
    estimator.fit(X, y)
    if cache is not None:
        with cache.open("wb") as handle:
            pickle.dump(estimator, handle)
    return estimator


def prepare(workdir: Path, forest_cache: Path | None = None) -> BenchContext:
    """Embed the MMLU prompts, fit the forest and compile it."""
    from rorf_core.forest.compiled import CompiledForest

    texts, y = load_mmlu()
    started = time.perf_counter()
    X = load_wordllama().embed(texts)
    embed_s = time.perf_counter() - started
    started = time.perf_counter()
    estimator = train_forest(X, y, forest_cache)
    fit_s = time.perf_counter() - started
    started = time.perf_counter()
    forest = CompiledForest.from_sklearn(estimator)
    compile_s = time.perf_counter() - started
    context = BenchContext(
        X=X, y=y, estimator=estimator, forest=forest, workdir=workdir, texts=texts
    )
    nodes = [member.tree_.node_count for member in estimator.estimators_]
    data = (
        f"data: {X.shape[0]} prompts embedded to {X.shape[1]} dims in {embed_s:.1f} s"
    )
    trees = (
        f"forest: {len(nodes)} trees, {statistics.mean(nodes):.0f} nodes per tree "
        f"on average, depth {forest.max_depth}; fitted (or loaded) in {fit_s:.1f} s, "
        f"converted in {compile_s * 1e3:.0f} ms"
    )
    context.notes += [data, trees]
    return context


# Timing helpers. Each comparison alternates the two sides, so that both
# see the same load on a shared machine.


def time_rounds(
    ours: Callable[[Any], Any],
    theirs: Callable[[Any], Any],
    ours_inputs: Sequence[Any],
    theirs_inputs: Sequence[Any],
    rounds: int = 10,
) -> tuple[np.ndarray, np.ndarray]:
    """Time one call per input, in rounds that alternate the two sides.

    Each side runs a stretch of its calls at a time, so that neither pays for
    the caches the other one filled, and the rounds spread both over the same
    stretch of (possibly changing) machine load. Returns wall times in seconds.
    """
    clock = time.perf_counter_ns
    times: tuple[list[int], list[int]] = ([], [])
    for round_index in range(rounds):
        for side, (function, inputs) in enumerate(
            ((ours, ours_inputs), (theirs, theirs_inputs))
        ):
            share = len(inputs) // rounds
            for value in inputs[round_index * share : (round_index + 1) * share]:
                started = clock()
                function(value)
                times[side].append(clock() - started)
    return np.array(times[0]) * 1e-9, np.array(times[1]) * 1e-9


def median_pair(
    ours: Callable[[], Any], theirs: Callable[[], Any], repeats: int
) -> tuple[float, float]:
    """Return median wall times of ``repeats`` alternating calls, after a warm-up."""
    ours()
    theirs()
    ours_s, theirs_s = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        ours()
        middle = time.perf_counter()
        theirs()
        ours_s.append(middle - started)
        theirs_s.append(time.perf_counter() - middle)
    return statistics.median(ours_s), statistics.median(theirs_s)


def cpu_time_per_call(
    function: Callable[[], Any], calls: int, repeats: int = 5
) -> float:
    """Return the least thread CPU time per call over ``repeats`` runs of ``calls``."""
    best = float("inf")
    for _ in range(repeats):
        started = time.thread_time()
        for _ in range(calls):
            function()
        best = min(best, (time.thread_time() - started) / calls)
    return best


def format_seconds(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def format_bytes(count: int) -> str:
    return f"{count / 2**20:.2f} MiB"


# Sections.


def section_agreement(context: BenchContext) -> list[Result]:
    """Max |difference| from sklearn over every row, for both kernels."""
    from rorf_core.forest.compiled import CompiledForest

    expected = context.estimator.predict_proba(context.X)
    results = []
    for kernel in ("numba", "numpy"):
        forest = CompiledForest.from_arrays(context.forest.to_arrays(), kernel=kernel)
        difference = np.abs(forest.predict_proba(context.X) - expected).max()
        results.append(
            Result(
                "agreement", f"max |p - sklearn|, {kernel}", f"{difference:.1e}", "0"
            )
        )
    return results


def section_single_prompt(context: BenchContext) -> list[Result]:
    """Latency of one prompt (a (1, d) float32 row), p50 and p99."""
    from rorf_core.forest.compiled import CompiledForest

    order = np.random.default_rng(0).permutation(context.X.shape[0])
    rows = [context.X[index : index + 1] for index in order]
    calls = context.sklearn_single_calls
    numpy_forest = CompiledForest.from_arrays(
        context.forest.to_arrays(), kernel="numpy"
    )
    estimator = context.estimator
    results = []
    for n_jobs, target in ((-1, 300), (1, 100)):
        estimator.set_params(n_jobs=n_jobs)
        estimator.predict_proba(rows[0])  # starts joblib's workers
        context.forest.predict_proba(rows[0])
        ours, reference = time_rounds(
            context.forest.predict_proba,
            estimator.predict_proba,
            rows[: context.single_calls],
            rows[:calls],
        )
        section = f"single prompt vs n_jobs={n_jobs}"
        for quantile, goal in ((50, target), (99, None)):
            mine = float(np.percentile(ours, quantile))
            theirs = float(np.percentile(reference, quantile))
            results.append(
                Result(
                    section,
                    f"p{quantile} latency",
                    format_seconds(mine),
                    format_seconds(theirs),
                    theirs / mine,
                    goal,
                )
            )
        numpy_times, reference = time_rounds(
            numpy_forest.predict_proba,
            estimator.predict_proba,
            rows[calls : 2 * calls],
            rows[calls : 2 * calls],
        )
        mine = float(np.percentile(numpy_times, 50))
        theirs = float(np.percentile(reference, 50))
        results.append(
            Result(
                section,
                "p50 latency, numpy kernel",
                format_seconds(mine),
                format_seconds(theirs),
                theirs / mine,
            )
        )
    estimator.set_params(n_jobs=-1)
    return results


def section_call_overhead(context: BenchContext) -> list[Result]:
    """Thread CPU time of predict_proba for one row, and of its kernel alone."""
    from rorf_core.forest import compiled

    forest = context.forest
    row = np.ascontiguousarray(context.X[:1])
    out = np.empty((1, forest.n_classes))
    args = forest._kernel_args  # private: this measures the wrapper itself
    calls = 5_000
    kernel_s = cpu_time_per_call(lambda: compiled._predict_rows(row, *args, out), calls)
    full_s = cpu_time_per_call(lambda: forest.predict_proba(row), calls)
    return [
        Result("one row, CPU time", "kernel alone", format_seconds(kernel_s), ""),
        Result("one row, CPU time", "predict_proba", format_seconds(full_s), ""),
        Result(
            "one row, CPU time",
            "predict_proba overhead",
            format_seconds(full_s - kernel_s),
            "",
        ),
    ]


def section_batch(context: BenchContext) -> list[Result]:
    """Throughput on BATCH_ROWS rows against sklearn with n_jobs=-1."""
    from rorf_core.forest.compiled import CompiledForest

    order = np.random.default_rng(1).permutation(context.X.shape[0])[:BATCH_ROWS]
    batch = np.ascontiguousarray(context.X[order])
    context.estimator.set_params(n_jobs=-1)

    def reference_call() -> Any:
        return context.estimator.predict_proba(batch)

    ours, reference = median_pair(
        lambda: context.forest.predict_proba(batch),
        reference_call,
        context.batch_repeats,
    )
    numpy_forest = CompiledForest.from_arrays(
        context.forest.to_arrays(), kernel="numpy"
    )
    numpy_s, numpy_reference = median_pair(
        lambda: numpy_forest.predict_proba(batch), reference_call, 2
    )
    section = f"batch of {BATCH_ROWS} vs n_jobs=-1"
    return [
        Result(
            section,
            "rows per second",
            f"{BATCH_ROWS / ours:,.0f}",
            f"{BATCH_ROWS / reference:,.0f}",
            reference / ours,
            2,
        ),
        Result(
            section,
            "rows per second, numpy kernel",
            f"{BATCH_ROWS / numpy_s:,.0f}",
            f"{BATCH_ROWS / numpy_reference:,.0f}",
            numpy_reference / numpy_s,
        ),
    ]


def save_both(context: BenchContext) -> tuple[Path, Path]:
    """Write the safetensors file and the pickle once; return their paths."""
    from safetensors.numpy import save_file

    arrays_path = context.workdir / "forest.safetensors"
    pickle_path = context.workdir / "forest.pkl"
    if not arrays_path.is_file():
        save_file(context.forest.to_arrays(), str(arrays_path))
    if not pickle_path.is_file():
        with pickle_path.open("wb") as handle:
            pickle.dump(context.estimator, handle)
    return arrays_path, pickle_path


def section_storage(context: BenchContext) -> list[Result]:
    """Size on disk and in-process load time, safetensors against pickle."""
    from safetensors.numpy import load_file

    from rorf_core.forest.compiled import CompiledForest

    arrays_path, pickle_path = save_both(context)
    ours_size = arrays_path.stat().st_size
    pickle_size = pickle_path.stat().st_size

    def load_ours() -> Any:
        return CompiledForest.from_arrays(load_file(str(arrays_path)))

    def load_pickle() -> Any:
        with pickle_path.open("rb") as handle:
            return pickle.load(handle)

    ours_s, pickle_s = median_pair(load_ours, load_pickle, 5)
    return [
        Result(
            "storage",
            "size on disk",
            format_bytes(ours_size),
            format_bytes(pickle_size),
            pickle_size / ours_size,
            4,
        ),
        Result(
            "storage",
            "load in a warm process",
            format_seconds(ours_s),
            format_seconds(pickle_s),
            pickle_s / ours_s,
            1,
        ),
    ]


# A fresh interpreter that times its imports, the load and the first calls.
_CHILD = """
import json, sys, time
started = time.perf_counter()
import numpy as np
kind, path, rows_path = sys.argv[1:]
if kind == "compiled":
    from safetensors.numpy import load_file
    from rorf_core.forest.compiled import CompiledForest
else:
    import pickle
    import sklearn.ensemble
imported = time.perf_counter()
if kind == "compiled":
    model = CompiledForest.from_arrays(load_file(path))
else:
    with open(path, "rb") as handle:
        model = pickle.load(handle)
loaded = time.perf_counter()
rows = np.load(rows_path)
before_row = time.perf_counter()
model.predict_proba(rows[:1])
after_row = time.perf_counter()
model.predict_proba(rows)
after_batch = time.perf_counter()
print(json.dumps({
    "import": imported - started,
    "load": loaded - imported,
    "first_row": after_row - before_row,
    "first_batch": after_batch - after_row,
}))
"""


def run_child(kind: str, path: Path, rows_path: Path, env: dict[str, str]) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, kind, str(path), str(rows_path)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def section_fresh_process(context: BenchContext) -> list[Result]:
    """Time a new process: import, load, first row, first batch, numba cache cold
    and warm."""
    arrays_path, pickle_path = save_both(context)
    rows_path = context.workdir / "rows.npy"
    np.save(rows_path, np.ascontiguousarray(context.X[:1_000]))
    cache_dir = Path(tempfile.mkdtemp(prefix="numba-cache-", dir=context.workdir))
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir)}
    env.pop("RORF_FOREST_KERNEL", None)
    cold = run_child("compiled", arrays_path, rows_path, env)
    warm = run_child("compiled", arrays_path, rows_path, env)
    pickled = run_child("pickle", pickle_path, rows_path, env)

    def ready(timings: dict) -> float:
        return timings["import"] + timings["load"] + timings["first_row"]

    results = []
    for label, timings in (("cold numba cache", cold), ("warm numba cache", warm)):
        section = f"fresh process, {label}"
        for step in ("import", "load", "first_row", "first_batch"):
            results.append(
                Result(
                    section,
                    step.replace("_", " ")
                    + (" (1,000 rows)" if step == "first_batch" else ""),
                    format_seconds(timings[step]),
                    format_seconds(pickled[step]),
                )
            )
        results.append(
            Result(
                section,
                "start to first answer",
                format_seconds(ready(timings)),
                format_seconds(ready(pickled)),
                ready(pickled) / ready(timings),
            )
        )
    return results


def section_batch_sizes(context: BenchContext) -> list[Result]:
    """Wall time per row of each numba kernel by batch size (least of 5+ runs)."""
    from rorf_core.forest import compiled

    forest = context.forest
    args = forest._kernel_args
    kernels = {
        "rows": compiled._predict_rows,
        "blocks": compiled._predict_blocks_serial,
        "parallel": compiled._predict_blocks_parallel,
    }
    results = []
    for size in (1, 2, 4, 8, 16, 64, 256, 1024, 2048, 4096, BATCH_ROWS):
        cells = []
        for name, kernel in kernels.items():
            out = np.empty((size, forest.n_classes))
            best = float("inf")
            for repeat in range(max(5, 2_000 // size)):
                start = (repeat * size) % (context.X.shape[0] - size)
                rows = context.X[start : start + size]
                started = time.perf_counter()
                kernel(rows, *args, out)
                best = min(best, time.perf_counter() - started)
            cells.append(f"{name} {best / size * 1e6:.2f}")
        results.append(
            Result("batch-size sweep", f"{size} rows", ", ".join(cells), "us/row")
        )
    return results


def section_controller_route(context: BenchContext) -> list[Result]:
    """End-to-end Controller.route with the default embedder (wordllama).

    The router wraps the benchmark's forest and is saved and loaded in the
    safe format. The reference is what RoRF's Controller does per prompt:
    embed one prompt, then scikit-learn ``predict_proba`` with n_jobs=-1.
    The target is an absolute p50 under 1 ms, shown as ``1 ms / p50``.
    """
    from rorf_core import Controller, get_embedder
    from rorf_core.forest.sklearn_forest import RandomForestScorer
    from rorf_core.router import Router

    embedder = get_embedder("wordllama")
    router = Router(
        embedder=embedder,
        scorer=RandomForestScorer.from_estimator(context.estimator),
        model_a="gpt-4-1106-preview",
        model_b="mixtral-8x7b-instruct-v0.1",
        embedder_dimension=context.X.shape[1],
    )
    path = router.save_pretrained(context.workdir / "route-router")
    controller = Controller(router=str(path), threshold=0.5)
    prompts = [context.texts[i] for i in np.random.default_rng(1).permutation(len(context.texts))]
    controller.route(prompts[0])
    estimator = context.estimator
    estimator.set_params(n_jobs=-1)

    def reference(prompt: str) -> Any:
        return estimator.predict_proba(embedder.embed([prompt]))

    reference(prompts[0])
    ours, theirs = time_rounds(
        controller.route,
        reference,
        prompts[: context.single_calls],
        prompts[: context.sklearn_single_calls],
    )
    results = []
    for quantile in (50, 99):
        mine = float(np.percentile(ours, quantile))
        other = float(np.percentile(theirs, quantile))
        results.append(
            Result(
                "Controller.route, wordllama",
                f"p{quantile} latency",
                format_seconds(mine),
                format_seconds(other),
                other / mine,
            )
        )
    p50 = float(np.percentile(ours, 50))
    results.append(
        Result("Controller.route, wordllama", "1 ms / p50", format_seconds(p50), "1.0 ms", 1e-3 / p50, 1.0)
    )
    return results


SECTIONS: list[Callable[[BenchContext], list[Result]]] = [
    section_agreement,
    section_single_prompt,
    section_call_overhead,
    section_batch,
    section_storage,
    section_fresh_process,
    section_controller_route,
]


# Report.


def machine_lines() -> list[str]:
    import numba
    import sklearn

    from rorf_core.forest import compiled

    model = "unknown CPU"
    with open("/proc/cpuinfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet
        layer = "not started"
    load = " ".join(f"{value:.1f}" for value in os.getloadavg())
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    versions = (
        f"python {platform.python_version()}, numpy {np.__version__}, "
        f"scikit-learn {sklearn.__version__}, numba {numba.__version__} "
        f"({numba.get_num_threads()} threads, layer {layer}), "
        f"kernel switches at {compiled._BLOCK_MIN_ROWS} and "
        f"{compiled._PARALLEL_MIN_ROWS} rows"
    )
    return [f"machine: {model}, nproc {cpus}, load average {load}", versions]


def format_table(results: Sequence[Result]) -> str:
    header = ("section", "metric", "compiled", "sklearn", "ratio", "target", "met")
    rows = [header]
    for result in results:
        rows.append(
            (
                result.section,
                result.metric,
                result.ours,
                result.reference,
                "" if result.ratio is None else f"{result.ratio:,.1f}x",
                "" if result.target is None else f">= {result.target:g}x",
                result.met,
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = []
    for row in rows:
        lines.append(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
        )
    return "\n".join(lines)


def run(
    context: BenchContext,
    sections: Sequence[Callable[[BenchContext], list[Result]]] = SECTIONS,
) -> list[Result]:
    """Run ``sections`` in order and return their results."""
    results: list[Result] = []
    for section in sections:
        gc.collect()
        results += section(context)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--forest-cache",
        type=Path,
        help="pickle file that keeps the fitted forest between runs; only give "
        "a file that this script wrote, since it is unpickled",
    )
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="also time each numba kernel at batch sizes 1 to 1024",
    )
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-forest-") as workdir:
        context = prepare(Path(workdir), options.forest_cache)
        sections = SECTIONS + ([section_batch_sizes] if options.sweep else [])
        results = run(context, sections)
        print("CompiledForest against scikit-learn, RoRF forest on MMLU (wordllama)")
        for line in machine_lines() + context.notes:
            print(line)
        print()
        print(format_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
